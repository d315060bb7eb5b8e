#include "tools/cli_util.h"

#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <tuple>

#include "core/fs/filesystem.h"
#include "core/meta/postgres_engine.h"
#include "core/store.h"
#include "daemon/control.h"
#include "daemon/mount_table.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

namespace {

bool g_json = false;
bool g_offline = false;

// How a positional argument is named in help and errors: its option name in capitals,
// except "target", which is either of two things.
std::string Upper(std::string s) {
  if (s == "target") return "STORE|MOUNTPOINT";
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The positional arguments of `pos`, in order (the last may repeat: max_total_count is
// then "unlimited").
std::vector<std::string> PositionalNames(const po::positional_options_description& pos) {
  std::vector<std::string> out;
  unsigned n = pos.max_total_count();
  for (unsigned i = 0; i < n && i < 16; i++) {
    const std::string& name = pos.name_for_position(i);
    if (out.empty() || out.back() != name) out.push_back(name);
  }
  return out;
}

bool IsUnsignedValue(const boost::any& v) {
  const auto& t = v.type();
  return t == typeid(unsigned) || t == typeid(unsigned long) || t == typeid(unsigned long long) ||
         t == typeid(unsigned short) || t == typeid(std::vector<unsigned>);
}

void PrintHelp(std::ostream& out, const std::string& verb, const std::string& synopsis,
               const po::options_description& opts, const std::vector<std::string>& positional,
               const std::vector<std::string>& examples) {
  out << "usage: snapfs " << verb << " " << synopsis << "\n";
  if (!positional.empty()) {
    out << "\narguments:\n";
    for (const auto& name : positional) {
      const po::option_description* d = opts.find_nothrow(name, false);
      std::string text = d ? d->description() : "";
      std::string label = Upper(name);
      out << "  " << label << std::string(label.size() < 22 ? 22 - label.size() : 1, ' ') << text
          << "\n";
    }
  }
  // Options, without the positional ones (they are not --options to the user).
  po::options_description shown("options");
  shown.add_options()("help,h", "show this help");
  for (const auto& o : opts.options()) {
    if (std::find(positional.begin(), positional.end(), o->long_name()) != positional.end()) {
      continue;
    }
    shown.add(o);
  }
  out << "\n" << shown;
  if (!examples.empty()) {
    out << "\nexamples:\n";
    for (const auto& e : examples) out << "  " << e << "\n";
  }
  out << "\n" << kExitCodesHelp;
}

}  // namespace

const char* const kExitCodesHelp =
    "exit codes: 0 ok, 1 failure, 2 bad arguments, 3 fsck problems, 4 store busy/locked,\n"
    "            5 not found / not a store\n";

bool JsonOutput() { return g_json; }
bool OfflineAllowed() { return g_offline; }

std::string DumpJson(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void PrintJson(nlohmann::json j) {
  if (j.is_object()) j["schema"] = 1;
  std::cout << DumpJson(j, 2) << "\n";
}

std::optional<int> Parse(const std::string& verb, const std::string& synopsis, const Args& args,
                         const po::options_description& opts,
                         const po::positional_options_description& pos, po::variables_map* vm,
                         const std::vector<std::string>& examples) {
  std::vector<std::string> positional = PositionalNames(pos);
  // Errors of a verb that can print JSON are JSON as soon as --json is among the words.
  if (opts.find_nothrow("json", false) &&
      std::find(args.begin(), args.end(), "--json") != args.end()) {
    g_json = true;
  }
  auto usage_error = [&](const std::string& what) {
    if (g_json) {
      PrintJson({{"error", "usage"}, {"code", kExitUsage}, {"message", what}});
    }
    std::cerr << "snapfs " << verb << ": " << what << "\nusage: snapfs " << verb << " "
              << synopsis << "\n(see 'snapfs " << verb << " --help')\n";
    return kExitUsage;
  };
  po::options_description all;
  all.add_options()("help,h", "show this help");
  all.add(opts);
  try {
    po::parsed_options parsed = po::command_line_parser(args).options(all).positional(pos).run();
    po::store(parsed, *vm);
    if (vm->count("help")) {
      PrintHelp(std::cout, verb, synopsis, opts, positional, examples);
      return kExitOk;
    }
    // Boost reads "-5" into an unsigned as 4294967291.
    for (const auto& o : parsed.options) {
      if (o.string_key.empty() || !vm->count(o.string_key)) continue;
      if (!IsUnsignedValue((*vm)[o.string_key].value())) continue;
      for (const auto& v : o.value) {
        if (!v.empty() && v[0] == '-') {
          return usage_error("--" + o.string_key + " must be a number >= 0, got '" + v + "'");
        }
      }
    }
    po::notify(*vm);
  } catch (const po::required_option& e) {
    std::string name = e.get_option_name();
    if (name.starts_with("--")) name = name.substr(2);
    if (std::find(positional.begin(), positional.end(), name) != positional.end()) {
      return usage_error("missing argument " + Upper(name));
    }
    return usage_error(e.what());
  } catch (const po::too_many_positional_options_error&) {
    return usage_error("too many arguments");
  } catch (const po::invalid_option_value& e) {
    return usage_error(e.what());
  } catch (const po::error& e) {
    std::string what = e.what();
    // Boost names a positional argument with a bad value as "--name": say NAME.
    for (const auto& name : positional) {
      auto at = what.find("'--" + name + "'");
      if (at != std::string::npos) what.replace(at, name.size() + 4, Upper(name));
    }
    return usage_error(what);
  }
  if (vm->count("json") && (*vm)["json"].value().type() == typeid(bool)) {
    g_json = g_json || (*vm)["json"].as<bool>();
  }
  if (vm->count("offline") && (*vm)["offline"].value().type() == typeid(bool)) {
    g_offline = (*vm)["offline"].as<bool>();
  }
  return std::nullopt;
}

Result<uint64_t> ParseSize(const std::string& s) {
  if (s.empty()) return Status::InvalidArgument("empty size");
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);  // no sign, no blanks
  if (p == s.data() || ec != std::errc()) {
    return Status::InvalidArgument("not a size: '" + s + "' (use e.g. 65536, 64K, 1M, 2G)");
  }
  std::string unit(p, s.data() + s.size());
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
  if (n > UINT64_MAX / mult) return Status::InvalidArgument("size too large: " + s);
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

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kInvalidArgument:
      return kExitUsage;
    case Code::kBusy:
    case Code::kConflict:
      return kExitBusy;
    case Code::kNotFound:
      return kExitNotFound;
    default:
      return kExitFailure;
  }
}

std::string ErrorKind(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not_found";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kNotEmpty: return "not_empty";
    case Code::kIsDirectory: return "is_directory";
    case Code::kNotDirectory: return "not_directory";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kCorruption: return "corruption";
    case Code::kNoSpace: return "no_space";
    case Code::kBusy:
    case Code::kConflict: return "busy";
    case Code::kPermission:
    case Code::kAccess: return "permission";
    case Code::kNotSupported: return "not_supported";
    case Code::kReadOnly: return "read_only";
    default: return "io_error";
  }
}

int Fail(const std::string& verb, const Status& s) {
  // These messages are whole sentences about the argument already.
  bool sentence = s.Is(Code::kInvalidArgument) || s.Is(Code::kNotFound) || s.Is(Code::kBusy);
  std::string text = sentence && !s.message().empty() ? s.message() : s.ToString();
  int code = ExitCodeFor(s);
  if (code == kExitOk) code = kExitFailure;  // a failure without a status still fails
  if (g_json) {
    PrintJson({{"error", ErrorKind(s)}, {"code", code}, {"message", text}});
  }
  std::cerr << "snapfs " << verb << ": " << text << "\n";
  return code;
}

int UsageError(const std::string& verb, const std::string& message) {
  if (g_json) PrintJson({{"error", "usage"}, {"code", kExitUsage}, {"message", message}});
  std::cerr << "snapfs " << verb << ": " << message << "\n(see 'snapfs " << verb
            << " --help')\n";
  return kExitUsage;
}

std::string Rfc3339(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) return std::to_string(ns);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string StoreOfMount(const std::string& mountpoint) {
  std::string found;
  for (const auto& m : fuse::ReadMountTable()) {
    if (m.point == mountpoint && m.type == "fuse.snapfs" && m.source.starts_with("snapfs:")) {
      found = m.source.substr(7);  // the last mount on top wins
    }
  }
  return found;
}

Status AbortFuseConnection(const std::string& mountpoint) {
  uint64_t dev = fuse::SnapfsConnection(mountpoint);
  if (dev == 0) return Status::NotFound(mountpoint + " is not a snapfs mount point");
  return fuse::AbortConnection(dev);
}

bool IsDeadMount(const std::string& mountpoint, const std::string& store) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0 && errno == ENOTCONN) return true;
  int pid = 0;
  return !store.empty() && !IsDatabaseLocation(store) && !StoreLockHeld(store, &pid);
}

bool ProcessRunning(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  auto rp = stat.rfind(')');
  return rp == std::string::npos || rp + 2 >= stat.size() || stat[rp + 2] != 'Z';
}

Target ResolveTarget(const std::string& arg) {
  Target t;
  if (IsDatabaseLocation(arg)) {  // a shared store: always opened here, as a session
    t.store = arg;
    return t;
  }
  // realpath fails on a dead FUSE mount (ENOTCONN): fall back to the lexical path.
  char* abs = realpath(arg.c_str(), nullptr);
  std::string path = abs ? abs : LexicalAbsolute(arg);
  free(abs);
  std::string mounted = StoreOfMount(path);
  t.store = mounted.empty() ? path : mounted;
  if (IsDatabaseLocation(t.store)) {
    if (IsDeadMount(path, t.store)) t.dead_mount = path;
    return t;
  }
  int pid = 0;
  if (StoreLockHeld(t.store, &pid)) {
    t.daemon_pid = pid > 0 ? pid : -1;
  } else if (!mounted.empty()) {
    t.dead_mount = path;
  }
  return t;
}

Status CheckNotDead(const Target& t) {
  if (t.dead_mount.empty() || g_offline) return Status::OK();
  return Status::IOError("the snapfs mount at " + t.dead_mount +
                         " is dead (its daemon is gone; the store " + t.store +
                         " is not in use): run 'snapfs umount " + t.dead_mount +
                         "' and mount it again, or pass --offline to open the store directly");
}

// A daemon that did not answer because it is exiting (killed a moment ago, or
// unmounted): true once its store lock is free, waiting a few seconds for that. The store
// is then opened directly, as an unmounted one is.
// Not when a mount of the store is still listed: reading the store behind a dead mount
// needs --offline (CheckNotDead).
bool DaemonLetGo(const Target& t) {
  if (IsDatabaseLocation(t.store) || g_offline) return false;
  for (const auto& [mp, store] : SnapfsMounts()) {
    if (store == t.store) return false;
  }
  for (int i = 0; i < 150; i++) {
    if (!StoreLockHeld(t.store)) return true;
    usleep(20000);
  }
  return false;
}

Result<nlohmann::json> AskStore(const Target& t, const std::string& request,
                                const std::function<Result<std::string>(Store&)>& direct) {
  RETURN_IF_ERROR(CheckNotDead(t));
  Result<std::string> text = Status::NotFound();
  if (t.daemon_pid != 0) {
    text = fuse::CallDaemon(t.store, request);
  }
  if (t.daemon_pid == 0 || (!text.ok() && DaemonLetGo(t))) {
    OpenOptions oo;  // `snapfs status` of a shared store shows the verb, not its arguments
    oo.session_what = "snapfs " + request.substr(0, request.find(' '));
    auto store = Store::Open(t.store, std::move(oo));
    if (!store.ok()) return store.status();
    text = direct(**store);
  }
  if (!text.ok()) return text.status();
  auto j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::IOError("bad answer from the daemon");
  if (j.is_object() && j.contains("error")) return StatusFromJson(j);
  return j;
}

nlohmann::json ErrorJson(const Status& s) {
  return {{"error", s.ToString()}, {"code", static_cast<int>(s.code())}, {"message", s.message()}};
}

Status StatusFromJson(const nlohmann::json& j) {
  std::string text = j.value("error", std::string("unknown error"));
  if (!j.contains("code") || !j["code"].is_number_integer()) return Status::IOError(text);
  std::string m = j.value("message", text);
  switch (static_cast<Code>(j["code"].get<int>())) {
    case Code::kNotFound:
      return Status::NotFound(m);
    case Code::kAlreadyExists:
      return Status::AlreadyExists(m);
    case Code::kNotEmpty:
      return Status::NotEmpty(m);
    case Code::kIsDirectory:
      return Status::IsDirectory(m);
    case Code::kNotDirectory:
      return Status::NotDirectory(m);
    case Code::kInvalidArgument:
      return Status::InvalidArgument(m);
    case Code::kNameTooLong:
      return Status::NameTooLong(m);
    case Code::kCrossDevice:
      return Status::CrossDevice(m);
    case Code::kCorruption:
      return Status::Corruption(m);
    case Code::kNoSpace:
      return Status::NoSpace(m);
    case Code::kBusy:
      return Status::Busy(m);
    case Code::kPermission:
      return Status::Permission(m);
    case Code::kAccess:
      return Status::Access(m);
    case Code::kNotSupported:
      return Status::NotSupported(m);
    case Code::kFileTooBig:
      return Status::FileTooBig(m);
    case Code::kNoData:
      return Status::NoData(m);
    case Code::kRange:
      return Status::Range(m);
    case Code::kTooManyLinks:
      return Status::TooManyLinks(m);
    case Code::kBadHandle:
      return Status::BadHandle(m);
    case Code::kLoop:
      return Status::Loop(m);
    case Code::kReadOnly:
      return Status::ReadOnly(m);
    case Code::kConflict:
      return Status::Conflict(m);
    default:
      return Status::IOError(m);
  }
}

// ---- paths inside a store ----

std::string LexicalAbsolute(const std::string& path) {
  std::string abs = path;
  if (abs.empty() || abs[0] != '/') {
    std::string cwd = "/";
    if (char* c = getcwd(nullptr, 0)) {
      cwd = c;
      free(c);
    }
    abs = cwd + "/" + abs;
  }
  std::vector<std::string> parts;
  std::istringstream in(abs);
  for (std::string part; std::getline(in, part, '/');) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::vector<std::pair<std::string, std::string>> SnapfsMounts() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : fuse::ReadMountTable()) {
    if (m.type != "fuse.snapfs" || !m.source.starts_with("snapfs:")) continue;
    std::erase_if(out, [&](const auto& e) { return e.first == m.point; });  // the top one wins
    out.emplace_back(m.point, m.source.substr(7));
  }
  return out;
}

namespace {

// `path` relative to `base` if `base` is `path` or a folder above it.
std::optional<std::string> RelativeTo(const std::string& path, const std::string& base) {
  if (base == "/") return path == "/" ? std::string() : path.substr(1);
  if (path == base) return std::string();
  if (path.size() > base.size() && path.starts_with(base) && path[base.size()] == '/') {
    return path.substr(base.size() + 1);
  }
  return std::nullopt;
}

// `abs` with symlinks resolved in its longest existing prefix; the rest kept as is.
std::string RealPrefix(const std::string& abs) {
  std::string head = abs, tail;
  while (true) {
    if (char* r = realpath(head.c_str(), nullptr)) {
      std::string out = r;
      free(r);
      if (!tail.empty()) out += (out == "/" ? "" : "/") + tail;
      return out;
    }
    size_t slash = head.rfind('/');
    if (slash == std::string::npos || head == "/") return abs;
    std::string name = head.substr(slash + 1);
    tail = tail.empty() ? name : name + "/" + tail;
    head = slash == 0 ? "/" : head.substr(0, slash);
  }
}

// The longest live snapfs mount holding `abs`: (mount point, store, rel).
std::optional<std::tuple<std::string, std::string, std::string>> MountHolding(
    const std::string& abs, const std::vector<std::pair<std::string, std::string>>& mounts) {
  std::optional<std::tuple<std::string, std::string, std::string>> best;
  for (const auto& [mp, store] : mounts) {
    auto rel = RelativeTo(abs, mp);
    if (rel && (!best || mp.size() > std::get<0>(*best).size())) best = {mp, store, *rel};
  }
  return best;
}

// The nearest folder at or above `abs` holding a snapfs.conf, and `abs` relative to it.
std::optional<std::pair<std::string, std::string>> StoreHolding(const std::string& abs) {
  std::string dir = abs;
  while (true) {
    if (::access((dir == "/" ? std::string("/snapfs.conf") : dir + "/snapfs.conf").c_str(), F_OK) ==
        0) {
      return std::make_pair(dir, *RelativeTo(abs, dir));
    }
    if (dir == "/") return std::nullopt;
    size_t slash = dir.rfind('/');
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
}

Target TargetOfStore(const std::string& store) {
  Target t;
  t.store = store;
  if (IsDatabaseLocation(store)) return t;
  int pid = 0;
  if (StoreLockHeld(store, &pid)) t.daemon_pid = pid > 0 ? pid : -1;
  return t;
}

}  // namespace

namespace {

// "<snapshot path>/<view path>" (below /.snapshots/) -> the live path, relative to the
// mount root, of what it shows: the snapshot folder itself, one of its own files, or a
// file it references (its path when the marker was committed). "" if no snapshot holds
// it. Only for messages: asks the store for the snapshot's files, shortest prefix first.
std::string LivePathOfViewPath(const Target& t, const std::string& rest) {
  if (!CheckNotDead(t).ok()) return "";
  FsClient c(t);
  for (size_t slash = rest.find('/');; slash = rest.find('/', slash + 1)) {
    std::string snap = slash == std::string::npos ? rest : rest.substr(0, slash);
    auto j = c.Ask("snap-files", {{"path", snap}, {"label", snap}});
    if (j.ok()) {
      if (slash == std::string::npos) return snap;  // the snapshot folder itself
      std::string inner = rest.substr(slash + 1);
      for (const auto& r : (*j)["references"]) {
        if (r["view_path"].is_string() && r["view_path"].get<std::string>() == inner) {
          return r["ref"].get<std::string>();
        }
      }
      return snap + "/" + inner;  // the snapshot's own file (or a folder in its view)
    }
    if (slash == std::string::npos) return "";
  }
}

}  // namespace

Result<PathTarget> ResolvePathArg(const std::string& arg) {
  if (arg.empty()) return Status::InvalidArgument("empty path");
  PathTarget pt;
  pt.arg = arg;
  // A shared store named by its database: the whole namespace, opened here (a host that
  // mounts nothing can still list, measure and clean up the snapshots).
  if (IsDatabaseLocation(arg)) {
    pt.target.store = arg;
    return pt;
  }
  std::string abs = LexicalAbsolute(arg);
  auto mounts = SnapfsMounts();
  auto in_mount = MountHolding(abs, mounts);
  if (!in_mount) in_mount = MountHolding(RealPrefix(abs), mounts);
  if (in_mount) {
    auto& [mp, store, rel] = *in_mount;
    pt.target = TargetOfStore(store);
    pt.rel = rel;
    // A mount whose daemon is gone (ENOTCONN): the store is free, but the user expects
    // the daemon; only --offline opens it directly. (A shared store is always opened
    // here; its mount is dead only if it answers ENOTCONN.)
    if (IsDatabaseLocation(store) ? IsDeadMount(mp, store) : pt.target.daemon_pid == 0) {
      pt.target.dead_mount = mp;
    }
    RETURN_IF_ERROR(CheckNotDead(pt.target));
    pt.mountpoint = pt.target.daemon_pid != 0 || IsDatabaseLocation(store) ? mp : "";
  } else {
    auto in_store = StoreHolding(abs);
    if (!in_store) {
      std::string real = RealPrefix(abs);
      if (real != abs) in_store = StoreHolding(real);
    }
    if (!in_store) {
      return Status::NotFound(
          arg +
          " is neither inside a snapfs mount nor inside a store folder (no snapfs.conf "
          "in it or any folder above it)");
    }
    std::string store = in_store->first;
    if (char* r = realpath(store.c_str(), nullptr)) {
      store = r;
      free(r);
    }
    pt.target = TargetOfStore(store);
    pt.rel = in_store->second;
    if (pt.target.daemon_pid != 0) {
      for (const auto& [mp, s] : mounts) {
        if (s == store) pt.mountpoint = mp;
      }
    }
  }
  if (pt.rel == kViewsName || pt.rel.starts_with(std::string(kViewsName) + "/")) {
    std::string rest = pt.rel.size() > std::strlen(kViewsName) + 1
                           ? pt.rel.substr(std::strlen(kViewsName) + 1)
                           : "";
    std::string live = rest.empty() ? "" : LivePathOfViewPath(pt.target, rest);
    std::string where = pt.mountpoint.empty() ? live : pt.mountpoint + "/" + live;
    return Status::InvalidArgument(arg + " is inside the read-only snapshot views (" + kViewsName +
                                   "); name the live path instead" +
                                   (live.empty() ? std::string() : " (" + where + ")"));
  }
  return pt;
}

OpenedFs::OpenedFs() = default;
OpenedFs::OpenedFs(OpenedFs&&) noexcept = default;
OpenedFs& OpenedFs::operator=(OpenedFs&&) noexcept = default;
OpenedFs::~OpenedFs() {
  fs.reset();  // flushes and closes before the store goes
  store.reset();
}

Result<OpenedFs> OpenFsDirect(const std::string& store_dir, const std::string& what) {
  OpenedFs o;
  OpenOptions oo;
  oo.session_what = what;
  ASSIGN_OR_RETURN(o.store, Store::Open(store_dir, std::move(oo)));
  ASSIGN_OR_RETURN(o.fs, Filesystem::Open(o.store.get()));
  return o;
}

Result<nlohmann::json> AskFs(const Target& t, const std::string& verb, const nlohmann::json& req) {
  FsClient c(t);
  return c.Ask(verb, req);
}

Result<Filesystem*> FsClient::DirectFs(const std::string& what) {
  if (mounted()) return Status::InvalidArgument("the store is mounted: ask its daemon");
  if (!opened_) {
    ASSIGN_OR_RETURN(auto o, OpenFsDirect(t_.store, what));
    opened_.emplace(std::move(o));
  }
  return opened_->fs.get();
}

Result<nlohmann::json> FsClient::Ask(const std::string& verb, const nlohmann::json& req) {
  if (!mounted()) {
    ASSIGN_OR_RETURN(Filesystem * fs, DirectFs("snapfs " + verb));
    return HandleSnapRequest(*fs, verb, req);
  }
  ASSIGN_OR_RETURN(std::string text, fuse::CallDaemon(t_.store, verb + " " + DumpJson(req)));
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::IOError("bad answer from the daemon");
  if (j.is_object() && j.contains("error")) return StatusFromJson(j);
  return j;
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); i++) w[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < w.size(); i++) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size() && i < w.size(); i++) {
      std::string pad(w[i] - r[i].size(), ' ');
      bool last = i + 1 == r.size();
      if (i) out += "  ";
      if (i < right.size() && right[i])
        out += pad + r[i];
      else
        out += last ? r[i] : r[i] + pad;
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

// ---- formatting and parsing ----

Result<int64_t> ParseDuration(const std::string& s) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad duration '" + s + "': " + why +
                                   " (use e.g. 30s, 15m, 1h, 2d or 0)");
  };
  if (s == "0") return int64_t{0};
  if (s.empty()) return bad("empty");
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (p == s.data()) return bad("it must start with a number");
  if (ec == std::errc::result_out_of_range) return bad("too large");
  std::string unit(p, s.data() + s.size());
  int64_t mult = 0;
  if (unit == "s")
    mult = 1;
  else if (unit == "m")
    mult = 60;
  else if (unit == "h")
    mult = 3600;
  else if (unit == "d")
    mult = 86400;
  else if (unit.empty())
    return bad("missing unit");
  else
    return bad("unknown unit '" + unit + "'");
  constexpr int64_t kMaxSeconds = INT64_MAX / 1'000'000'000;
  if (n > static_cast<uint64_t>(kMaxSeconds / mult)) return bad("too large");
  return static_cast<int64_t>(n) * mult * 1'000'000'000;
}

std::string HumanAge(int64_t ns) {
  if (ns < 0) ns = 0;
  int64_t s = ns / 1'000'000'000;
  char buf[48];
  if (s < 60)
    snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600)
    snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
             static_cast<long long>(s % 60));
  else if (s < 86400)
    snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
             static_cast<long long>(s % 3600 / 60));
  else
    snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
             static_cast<long long>(s % 86400 / 3600));
  return buf;
}

std::string LocalTime(int64_t ns, bool iso) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm;
  if (!localtime_r(&secs, &tm)) return std::to_string(ns);
  char buf[64];
  strftime(buf, sizeof buf, iso ? "%Y-%m-%dT%H:%M:%S%z" : "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

Progress::Progress() : enabled_(::isatty(2) == 1) {}

void Progress::Show(const std::string& line, bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && shown_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  shown_ = true;
  std::cerr << "\r\033[K" << line << std::flush;
}

void Progress::Done() {
  if (!enabled_ || !shown_) return;
  std::cerr << "\r\033[K" << std::flush;
  shown_ = false;
}

std::string HideSecrets(const std::string& arg) {
  if (!IsDatabaseLocation(arg) && arg.find("password=") == std::string::npos) return arg;
  return kv::PostgresEngine::HidePassword(arg);
}

void HideSecretsInArgv(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string shown = HideSecrets(argv[i]);
    size_t len = std::strlen(argv[i]);
    if (shown == argv[i]) continue;
    shown.resize(std::min(shown.size(), len));
    std::memcpy(argv[i], shown.data(), shown.size());
    std::memset(argv[i] + shown.size(), 0, len - shown.size());
  }
}

}  // namespace snapfs::cli
