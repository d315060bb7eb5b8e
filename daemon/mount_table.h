// The kernel's mount table as this process sees it (/proc/self/mounts), read in one
// place: the mount command refuses to stack on a live mount, the CLI finds the store
// behind a snapfs mount point.
#pragma once

#include <string>
#include <vector>

namespace snapfs::fuse {

struct MountEntry {
  std::string source;  // e.g. "snapfs:/var/lib/snapfs"
  std::string point;   // the mount point, absolute
  std::string type;    // e.g. "fuse.snapfs"
};

// Every mount, in the kernel's order (a later entry for the same point is on top), with
// the octal escapes of blanks (\040) decoded.
std::vector<MountEntry> ReadMountTable();

}  // namespace snapfs::fuse
