#include "tools/cli_util.h"

#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/store.h"
#include "fuse/control.h"

namespace snapfs::cli {

std::optional<int> Parse(const std::string& verb, const std::string& synopsis, const Args& args,
                         const po::options_description& opts,
                         const po::positional_options_description& pos, po::variables_map* vm) {
  po::options_description all;
  all.add_options()("help,h", "show this help");
  all.add(opts);
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), *vm);
    if (vm->count("help")) {
      std::cout << "usage: snapfs " << verb << " " << synopsis << "\n\n" << all << "\n";
      return kExitOk;
    }
    po::notify(*vm);
  } catch (const po::error& e) {
    std::cerr << "snapfs " << verb << ": " << e.what() << "\nusage: snapfs " << verb << " "
              << synopsis << "\n(see 'snapfs " << verb << " --help')\n";
    return kExitUsage;
  }
  return std::nullopt;
}

Result<uint64_t> ParseSize(const std::string& s) {
  if (s.empty()) return Status::InvalidArgument("empty size");
  size_t pos = 0;
  uint64_t n = 0;
  try {
    n = std::stoull(s, &pos);
  } catch (...) {
    return Status::InvalidArgument("not a size: " + s);
  }
  std::string unit = s.substr(pos);
  uint64_t mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    mult = 1ull << 10;
  else if (unit == "M" || unit == "MiB")
    mult = 1ull << 20;
  else if (unit == "G" || unit == "GiB")
    mult = 1ull << 30;
  else
    return Status::InvalidArgument("unknown size unit in " + s + " (use K, M or G)");
  return n * mult;
}

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  char buf[32];
  if (u == 0)
    snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else
    snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

int Fail(const std::string& verb, const Status& s) {
  std::cerr << "snapfs " << verb << ": " << s.ToString() << "\n";
  return kExitFailure;
}

namespace {
// /proc/mounts escapes spaces and such as \040.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}
}  // namespace

std::string StoreOfMount(const std::string& mountpoint) {
  std::ifstream f("/proc/self/mounts");
  std::string line, found;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string dev, mp, type;
    ls >> dev >> mp >> type;
    if (Unescape(mp) == mountpoint && type == "fuse.snapfs" && dev.starts_with("snapfs:")) {
      found = Unescape(dev.substr(7));  // the last mount on top wins
    }
  }
  return found;
}

Target ResolveTarget(const std::string& arg) {
  Target t;
  char* abs = realpath(arg.c_str(), nullptr);
  std::string path = abs ? abs : arg;
  free(abs);
  std::string mounted = StoreOfMount(path);
  t.store = mounted.empty() ? path : mounted;
  int pid = 0;
  if (StoreLockHeld(t.store, &pid)) t.daemon_pid = pid > 0 ? pid : -1;
  return t;
}

Result<nlohmann::json> AskStore(const Target& t, const std::string& request,
                                const std::function<Result<std::string>(Store&)>& direct) {
  Result<std::string> text = Status::NotFound();
  if (t.daemon_pid != 0) {
    text = fuse::CallDaemon(t.store, request);
  } else {
    auto store = Store::Open(t.store);
    if (!store.ok()) return store.status();
    text = direct(**store);
  }
  if (!text.ok()) return text.status();
  auto j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::IOError("bad answer from the daemon");
  if (j.contains("error")) return Status::IOError(j["error"].get<std::string>());
  return j;
}

}  // namespace snapfs::cli
