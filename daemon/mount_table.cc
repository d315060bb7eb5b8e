#include "daemon/mount_table.h"

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

}  // namespace snapfs::fuse
