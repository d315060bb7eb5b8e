// FUSE_HANDLE_KILLPRIV_V2 for libfuse 3.14, which cannot ask for it.
//
// Why: with the writeback cache, the kernel checks before every write(2) whether it must
// drop the file's privileges (file_remove_privs), and for that asks the daemon for
// `security.capability`: one GETXATTR round trip per write() call, ~100,000 for a 2 GB
// Flink checkpoint run written in 20 KiB pieces (docs/performance.md). The kernel stops
// asking once it has marked the inode S_NOSEC, which it only does on a superblock with
// SB_NOSEC, which FUSE sets only when the daemon negotiated FUSE_HANDLE_KILLPRIV_V2
// (fs/fuse/inode.c, process_init_reply). libfuse 3.14 knows the flag but never sends it.
//
// How: the session's I/O goes through libfuse's custom I/O hooks
// (fuse_session_custom_io), plain read(2)/writev(2) on the same /dev/fuse descriptor, plus:
//   - the INIT reply gets FUSE_HANDLE_KILLPRIV_V2 (and loses v1's FUSE_HANDLE_KILLPRIV)
//     when the kernel offered it;
//   - every request is looked at as it is read: the kernel marks WRITE, SETATTR and OPEN
//     requests whose caller lacks CAP_FSETID with FUSE_WRITE_KILL_SUIDGID,
//     FATTR_KILL_SUIDGID (also every chown) and FUSE_OPEN_KILL_SUIDGID, and with v2 it is
//     the daemon's job to drop S_ISUID, and S_ISGID of a group-executable file, then.
//     libfuse 3.14 passes none of these on, so the flag of the request being handled is
//     kept per thread: libfuse's workers read a request and handle it on the same thread.
//
// Thread-safety: the hooks run on libfuse's worker threads; their shared state is atomic.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include <atomic>
#include <cstdint>

#include "base/status.h"

namespace snapfs::fuse {

struct KillPrivState {
  std::atomic<uint64_t> init_unique{0};  // the INIT request's id, 0 before it came
  std::atomic<bool> offered{false};      // the kernel offered FUSE_HANDLE_KILLPRIV_V2
  std::atomic<bool> negotiated{false};   // our INIT reply asked for it
};

// Routes the session's I/O through the hooks. Call after fuse_session_mount, before the
// loop. The session's userdata must be a FuseContext (fuse_ops.h): its kill_priv holds
// the hooks' state.
Status InstallKillPrivV2(fuse_session* se);

// True if the request this thread is handling asks the daemon to drop set-user-ID and
// set-group-ID bits (only ever with v2 negotiated).
bool RequestKillsSuidGid();

}  // namespace snapfs::fuse
