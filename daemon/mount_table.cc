#include "daemon/mount_table.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

namespace snapfs::fuse {

namespace {

// /proc/mounts escapes blanks, tabs, newlines and backslashes as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && s.size() - i > 3) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

std::vector<MountEntry> ReadMountTable() {
  std::vector<MountEntry> out;
  // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
  std::ifstream f("/proc/self/mountinfo");
  for (std::string line; std::getline(f, line);) {
    std::istringstream ls(line);
    std::vector<std::string> t;
    for (std::string w; ls >> w;) t.push_back(w);
    size_t sep = 6;
    while (sep < t.size() && t[sep] != "-") sep++;
    if (t.size() < 5 || sep + 2 >= t.size()) continue;
    MountEntry e{Unescape(t[sep + 2]), Unescape(t[4]), t[sep + 1]};
    unsigned major = 0, minor = 0;
    if (std::sscanf(t[2].c_str(), "%u:%u", &major, &minor) == 2) {
      e.dev = (static_cast<uint64_t>(major) << 20) | minor;
    }
    out.push_back(std::move(e));
  }
  return out;
}

uint64_t SnapfsConnection(const std::string& point) {
  uint64_t dev = 0;
  for (const auto& m : ReadMountTable()) {
    if (m.point == point && m.type == "fuse.snapfs") dev = m.dev;  // the one on top
  }
  return dev;
}

Status AbortConnection(uint64_t dev) {
  const std::string ctl = "/sys/fs/fuse/connections";
  const std::string file = ctl + "/" + std::to_string(dev) + "/abort";
  if (::access(file.c_str(), F_OK) != 0) {
    // The control file system is not mounted yet (root may mount it; others are told how).
    (void)::mount("none", ctl.c_str(), "fusectl", 0, nullptr);
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    std::string m = "abort the FUSE connection: " + file + ": " + std::strerror(e);
    if (e == ENOENT) m += " (mount the FUSE control file system: mount -t fusectl none " + ctl + ")";
    return e == EACCES || e == EPERM ? Status::Permission(m) : Status::IOError(m);
  }
  ssize_t n = ::write(fd, "1", 1);
  int e = errno;
  ::close(fd);
  if (n != 1) {
    return Status::IOError("abort the FUSE connection: write " + file + ": " + std::strerror(e));
  }
  return Status::OK();
}

}  // namespace snapfs::fuse
