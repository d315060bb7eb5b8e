#include "daemon/mount_table.h"

#include <fstream>
#include <sstream>

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
  std::ifstream f("/proc/self/mounts");
  for (std::string line; std::getline(f, line);) {
    std::istringstream ls(line);
    std::string dev, point, type;
    if (!(ls >> dev >> point >> type)) continue;
    out.push_back({Unescape(dev), Unescape(point), type});
  }
  return out;
}

}  // namespace snapfs::fuse
