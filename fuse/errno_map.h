// Status -> errno: the one place where core codes become POSIX error numbers.
#pragma once

#include "base/status.h"

namespace snapfs::fuse {

int ToErrno(const Status& s);

}  // namespace snapfs::fuse
