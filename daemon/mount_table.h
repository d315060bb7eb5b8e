// The kernel's mount table as this process sees it (/proc/self/mountinfo), read in one
// place: the mount command refuses to stack on a live mount, the CLI finds the store
// behind a snapfs mount point, and `snapfs umount --abort` (and the tests' kill -9) finds
// a mount's FUSE connection to abort.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace snapfs::fuse {

struct MountEntry {
  std::string source;  // e.g. "snapfs:/var/lib/snapfs"
  std::string point;   // the mount point, absolute
  std::string type;    // e.g. "fuse.snapfs"
  // The kernel's device number of the mount ((major << 20) | minor): for a FUSE mount,
  // the name of its folder under /sys/fs/fuse/connections.
  uint64_t dev = 0;
};

// Every mount (/proc/self/mountinfo), in the kernel's order (a later entry for the same
// point is on top), with the octal escapes of blanks (\040) decoded.
std::vector<MountEntry> ReadMountTable();

// The FUSE connection (MountEntry::dev) of the snapfs mount on top at `point`; 0 if none.
uint64_t SnapfsConnection(const std::string& point);

// Aborts FUSE connection `dev` through the FUSE control file system (mounted first if
// need be, which needs root): the requests waiting on its daemon fail, and the daemon,
// dead or hung, lets go of the mount (docs/reliability.md, finding 32).
Status AbortConnection(uint64_t dev);

}  // namespace snapfs::fuse
