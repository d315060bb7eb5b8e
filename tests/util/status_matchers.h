// Status assertions for tests: EXPECT_OK / ASSERT_OK on a Status or Result, EXPECT_CODE /
// ASSERT_CODE for an expected error code, and MUST to unwrap a Result (or check a Status)
// in a helper, failing the current test with the expression and the status.
//
// Thread-safety: the macros may be used from any thread GoogleTest allows assertions on.
#pragma once

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "base/status.h"

namespace snapfs::test {

// ---- Status assertions --------------------------------------------------------------

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

template <typename T>
::testing::AssertionResult IsOkPred(const char* expr, const T& v) {
  const Status& s = StatusOf(v);
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << " failed: " << s.ToString();
}

template <typename T>
::testing::AssertionResult HasCodePred(const char* expr, const char* code_expr, const T& v,
                                       Code code) {
  const Status& s = StatusOf(v);
  if (s.code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expr << ": expected " << code_expr << ", got "
                                       << (s.ok() ? std::string("OK") : s.ToString());
}

#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::snapfs::test::IsOkPred, expr)
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::snapfs::test::IsOkPred, expr)
#define EXPECT_CODE(expr, code) EXPECT_PRED_FORMAT2(::snapfs::test::HasCodePred, expr, code)
#define ASSERT_CODE(expr, code) ASSERT_PRED_FORMAT2(::snapfs::test::HasCodePred, expr, code)

// Unwraps a Result or checks a Status; on failure throws, which GoogleTest reports as a
// failure of the current test (with the expression and the status).
inline void MustImpl(const Status& s, const char* expr, const char* file, int line) {
  if (!s.ok()) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr +
                             " failed: " + s.ToString());
  }
}
template <typename T>
T MustImpl(Result<T> r, const char* expr, const char* file, int line) {
  MustImpl(r.status(), expr, file, line);
  return std::move(r).value();
}
#define MUST(expr) ::snapfs::test::MustImpl((expr), #expr, __FILE__, __LINE__)

}  // namespace snapfs::test
