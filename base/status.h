// Status and Result<T>: how every layer border reports failure.
//
// Codes carry POSIX meaning so the FUSE layer can map them to errno in one place
// (fuse/errno_map), but no errno value appears in core. OS errors enter the core
// through PosixError() only.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace snapfs {

enum class Code {
  kOk = 0,
  kNotFound,         // ENOENT
  kAlreadyExists,    // EEXIST
  kNotEmpty,         // ENOTEMPTY
  kIsDirectory,      // EISDIR
  kNotDirectory,     // ENOTDIR
  kInvalidArgument,  // EINVAL
  kNameTooLong,      // ENAMETOOLONG
  kCrossDevice,      // EXDEV
  kIOError,          // EIO
  kCorruption,       // EIO, and reported as corruption by fsck
  kNoSpace,          // ENOSPC
  kBusy,             // EBUSY
  kPermission,       // EPERM
  kAccess,           // EACCES
  kNotSupported,     // EOPNOTSUPP
  kFileTooBig,       // EFBIG
  kNoData,           // ENODATA (missing xattr)
  kRange,            // ERANGE (xattr buffer too small)
  kTooManyLinks,     // EMLINK
  kBadHandle,        // EBADF
  kLoop,             // ELOOP
  kReadOnly,         // EROFS
  // A transaction lost a race with another one (core/meta/kv.h): retry the whole
  // transaction. Never leaves the core: kv::RunTxn retries, then reports kBusy.
  kConflict,         // EAGAIN if it ever escaped
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK; costs nothing.
  static Status OK() { return Status(); }
  static Status NotFound(std::string_view m = {}) { return Status(Code::kNotFound, m); }
  static Status AlreadyExists(std::string_view m = {}) { return Status(Code::kAlreadyExists, m); }
  static Status NotEmpty(std::string_view m = {}) { return Status(Code::kNotEmpty, m); }
  static Status IsDirectory(std::string_view m = {}) { return Status(Code::kIsDirectory, m); }
  static Status NotDirectory(std::string_view m = {}) { return Status(Code::kNotDirectory, m); }
  static Status InvalidArgument(std::string_view m = {}) {
    return Status(Code::kInvalidArgument, m);
  }
  static Status NameTooLong(std::string_view m = {}) { return Status(Code::kNameTooLong, m); }
  static Status CrossDevice(std::string_view m = {}) { return Status(Code::kCrossDevice, m); }
  static Status IOError(std::string_view m = {}) { return Status(Code::kIOError, m); }
  static Status Corruption(std::string_view m = {}) { return Status(Code::kCorruption, m); }
  static Status NoSpace(std::string_view m = {}) { return Status(Code::kNoSpace, m); }
  static Status Busy(std::string_view m = {}) { return Status(Code::kBusy, m); }
  static Status Permission(std::string_view m = {}) { return Status(Code::kPermission, m); }
  static Status Access(std::string_view m = {}) { return Status(Code::kAccess, m); }
  static Status NotSupported(std::string_view m = {}) { return Status(Code::kNotSupported, m); }
  static Status FileTooBig(std::string_view m = {}) { return Status(Code::kFileTooBig, m); }
  static Status NoData(std::string_view m = {}) { return Status(Code::kNoData, m); }
  static Status Range(std::string_view m = {}) { return Status(Code::kRange, m); }
  static Status TooManyLinks(std::string_view m = {}) { return Status(Code::kTooManyLinks, m); }
  static Status BadHandle(std::string_view m = {}) { return Status(Code::kBadHandle, m); }
  static Status Loop(std::string_view m = {}) { return Status(Code::kLoop, m); }
  static Status ReadOnly(std::string_view m = {}) { return Status(Code::kReadOnly, m); }
  static Status Conflict(std::string_view m = {}) { return Status(Code::kConflict, m); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  bool Is(Code c) const { return code_ == c; }
  std::string ToString() const;

  // Prefixes the message with context ("open pack 12: ...").
  Status WithContext(std::string_view ctx) const;

 private:
  Status(Code c, std::string_view m) : code_(c), msg_(m) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

// The one door for OS errors into the core: maps an errno value to a Status.
Status PosixError(std::string_view context, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace snapfs

#define SNAPFS_CONCAT_INNER(a, b) a##b
#define SNAPFS_CONCAT(a, b) SNAPFS_CONCAT_INNER(a, b)

// Returns early from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)            \
  do {                                   \
    ::snapfs::Status _st = (expr);       \
    if (!_st.ok()) return _st;           \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, FnReturningResult())`
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(SNAPFS_CONCAT(_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
