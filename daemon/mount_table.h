// The kernel's mount table as this process sees it (/proc/self/mounts), read in one
// place: the mount command refuses to stack on a live mount, the CLI finds the store
// behind a snapfs mount point.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace snapfs::fuse {

struct MountEntry {
  std::string source;  // e.g. "snapfs:/var/lib/snapfs"
  std::string point;   // the mount point, absolute
  std::string type;    // e.g. "fuse.snapfs"
  // The kernel's device number of the mount ((major << 20) | minor): for a FUSE mount,
  // the name of its folder under /sys/fs/fuse/connections.
  uint64_t dev = 0;
};

// Every mount (/proc/self/mountinfo), in the kernel's order (a later entry for the same point is on top), with
// the octal escapes of blanks (\040) decoded.
std::vector<MountEntry> ReadMountTable();

}  // namespace snapfs::fuse
