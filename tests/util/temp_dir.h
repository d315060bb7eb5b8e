// A fresh folder under /tmp for one test, removed with everything in it when the object
// dies. mkdtemp names it, so tests can run in parallel (ctest -j).
//
// Thread-safety: immutable after construction.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace snapfs::test {

class TempDir {
 public:
  // /tmp/<prefix>-XXXXXX; throws (failing the test) if it cannot be made.
  explicit TempDir(const std::string& prefix = "snapfs-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl + " failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace snapfs::test
