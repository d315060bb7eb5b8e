// The libfuse3 low-level operations: FUSE requests -> core::Filesystem calls, Status ->
// errno, kernel lookup counts -> Filesystem::Ref/Unref. No logic of its own.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include "core/fs/filesystem.h"
#include "fuse/kill_priv.h"
#include "fuse/write_order.h"

namespace snapfs::fuse {

struct FuseContext {
  Filesystem* fs = nullptr;
  double timeout = 60.0;      // entry cache timeout (all changes come through us)
  // Attribute cache timeout; negative: the same as `timeout`. A shared store uses 0 for
  // files, so that an open checks the size another host left (close-to-open); its
  // folders and symlinks take `timeout` (AttrTimeoutFor in fuse_ops.cc).
  double attr_timeout = -1;
  // A shared store (other hosts change files too): pages are dropped at open.
  bool shared = false;
  bool writeback = true;      // negotiate the kernel writeback cache
  bool writeback_on = false;  // what init negotiated
  fuse_session* session = nullptr;  // set once mounted (notifications to the kernel)
  KillPrivState kill_priv;    // FUSE_HANDLE_KILLPRIV_V2 (kill_priv.h)
  WriteOrder write_order;     // each file's WRITEs in the kernel's order (write_order.h)
};

// The operations table; userdata of the session must be a FuseContext*.
const fuse_lowlevel_ops& Operations();

}  // namespace snapfs::fuse
