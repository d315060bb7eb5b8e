#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace snapfs {

namespace {
const char* CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kNotEmpty: return "directory not empty";
    case Code::kIsDirectory: return "is a directory";
    case Code::kNotDirectory: return "not a directory";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNameTooLong: return "name too long";
    case Code::kCrossDevice: return "cross-device link";
    case Code::kIOError: return "I/O error";
    case Code::kCorruption: return "corruption";
    case Code::kNoSpace: return "no space left on device";
    case Code::kBusy: return "busy";
    case Code::kPermission: return "operation not permitted";
    case Code::kAccess: return "permission denied";
    case Code::kNotSupported: return "not supported";
    case Code::kFileTooBig: return "file too big";
    case Code::kNoData: return "no data";
    case Code::kRange: return "out of range";
    case Code::kTooManyLinks: return "too many links";
    case Code::kBadHandle: return "bad handle";
    case Code::kLoop: return "too many levels of symbolic links";
    case Code::kReadOnly: return "read-only";
    case Code::kConflict: return "transaction conflict";
  }
  return "unknown";
}
}  // namespace

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  if (!msg_.empty()) {
    s = msg_ + ": " + s;
  }
  return s;
}

Status Status::WithContext(std::string_view ctx) const {
  if (ok()) return *this;
  std::string m(ctx);
  if (!msg_.empty()) m += ": " + msg_;
  return Status(code_, m);
}

Status PosixError(std::string_view context, int err) {
  std::string m(context);
  m += ": ";
  m += std::strerror(err);
  switch (err) {
    case ENOENT: return Status::NotFound(m);
    case EEXIST: return Status::AlreadyExists(m);
    case ENOTEMPTY: return Status::NotEmpty(m);
    case EISDIR: return Status::IsDirectory(m);
    case ENOTDIR: return Status::NotDirectory(m);
    case EINVAL: return Status::InvalidArgument(m);
    case ENAMETOOLONG: return Status::NameTooLong(m);
    case EXDEV: return Status::CrossDevice(m);
    case ENOSPC:
    case EDQUOT: return Status::NoSpace(m);
    case EBUSY:
    case EWOULDBLOCK: return Status::Busy(m);
    case EPERM: return Status::Permission(m);
    case EACCES: return Status::Access(m);
    case EROFS: return Status::ReadOnly(m);
    case EFBIG: return Status::FileTooBig(m);
    case ELOOP: return Status::Loop(m);
    default: return Status::IOError(m);
  }
}

}  // namespace snapfs
