// The libfuse3 low-level operations: FUSE requests -> core::Filesystem calls, Status ->
// errno, kernel lookup counts -> Filesystem::Ref/Unref. No logic of its own.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include "core/fs/filesystem.h"

namespace snapfs::fuse {

struct FuseContext {
  Filesystem* fs = nullptr;
  double timeout = 60.0;      // attr and entry cache timeouts (all changes come through us)
  bool writeback = true;      // negotiate the kernel writeback cache
  bool writeback_on = false;  // what init negotiated
};

// The operations table; userdata of the session must be a FuseContext*.
const fuse_lowlevel_ops& Operations();

}  // namespace snapfs::fuse
