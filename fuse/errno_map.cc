#include "fuse/errno_map.h"

#include <cerrno>

namespace snapfs::fuse {

int ToErrno(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kAlreadyExists:
      return EEXIST;
    case Code::kNotEmpty:
      return ENOTEMPTY;
    case Code::kIsDirectory:
      return EISDIR;
    case Code::kNotDirectory:
      return ENOTDIR;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kNameTooLong:
      return ENAMETOOLONG;
    case Code::kCrossDevice:
      return EXDEV;
    case Code::kIOError:
      return EIO;
    case Code::kCorruption:
      return EIO;
    case Code::kNoSpace:
      return ENOSPC;
    case Code::kBusy:
      return EBUSY;
    case Code::kPermission:
      return EPERM;
    case Code::kAccess:
      return EACCES;
    case Code::kNotSupported:
      return EOPNOTSUPP;
    case Code::kFileTooBig:
      return EFBIG;
    case Code::kNoData:
      return ENODATA;
    case Code::kRange:
      return ERANGE;
    case Code::kTooManyLinks:
      return EMLINK;
    case Code::kBadHandle:
      return EBADF;
    case Code::kLoop:
      return ELOOP;
    case Code::kReadOnly:
      return EROFS;
    case Code::kConflict:
      return EAGAIN;
  }
  return EIO;
}

}  // namespace snapfs::fuse
