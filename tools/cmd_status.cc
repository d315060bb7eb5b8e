// snapfs status MOUNT|STORE [--json]: is it mounted, is the daemon alive and healthy.
//
// Health: "ok"; "degraded" with reasons (I/O errors seen, with the last one; hash
// mismatches; the packs' store unreachable (an object store down); the disk of the store
// nearly full, the metadata engine taking no more writes, the last GC failed, the last
// fsck through the daemon found problems or failed, metrics not listening); "dead" (a
// mount whose daemon is gone). A shared store's daemons have no control socket: their
// errors come from their sessions' health records (core/sessions.h), so `status` on any
// host sees every daemon's. Exit 0 ok, 1 degraded or dead, 2 bad arguments. An unmounted
// store that opens fine is "not mounted" and exits 0 (nothing is wrong with it).
//
// A live daemon answers the `status` control request itself (StatusJson, run in the
// daemon); this file also decides "dead" on the CLI side, where the daemon cannot.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "core/fs/inode.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/store.h"
#include "core/store_gauges.h"
#include "daemon/control.h"
#include "snapfs_version.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

namespace {

using nlohmann::json;

// The disk under the store counts as nearly full below either of these.
constexpr double kMinFreeFraction = 0.05;
constexpr uint64_t kMinFreeBytes = 1ull << 30;

json Counts(Store& store, std::vector<std::string>* reasons) {
  auto c = CountSnapshots(store);
  if (!c.ok()) {
    reasons->push_back("cannot count snapshots: " + c.status().ToString());
    return json::object();
  }
  return {{"snapshots", c->snapshots},
          {"pins", c->pins},
          {"hidden_entries", c->hidden_entries},
          {"purge_backlog", {{"folders", c->purge_folders}, {"entries_removed", c->purge_removed}}}};
}

// Whether the packs can be reached: an object store that is down stops every write that
// needs a new pack (shared stores: every commit of new data) and every read of a block
// not cached.
json Data(Store& store, std::vector<std::string>* reasons) {
  Status p = store.backend().Probe();
  if (p.ok()) return nullptr;
  reasons->push_back("the packs cannot be reached (" + store.backend().Describe() +
                     "): " + p.ToString());
  return p.ToString();
}

// "N I/O error(s) answered since start; the last, T: WHAT".
std::string IoErrorReason(uint64_t n, int64_t last_ns, const std::string& last) {
  std::string r = std::to_string(n) + " I/O error(s) answered since start";
  if (!last.empty()) r += "; the last, " + Rfc3339(last_ns) + ": " + last;
  return r;
}

json Disk(const std::string& dir, std::vector<std::string>* reasons) {
  struct statvfs sv;
  if (::statvfs(dir.c_str(), &sv) != 0) return nullptr;
  uint64_t free_b = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  uint64_t size = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
  double frac = size ? static_cast<double>(free_b) / static_cast<double>(size) : 0;
  if (size != 0 && (frac < kMinFreeFraction || free_b < kMinFreeBytes)) {  // 0: size unknown
    reasons->push_back("the disk of the store is nearly full: " + HumanBytes(free_b) + " free of " +
                       HumanBytes(size));
  }
  return {{"free_bytes", free_b}, {"size_bytes", size}, {"free_fraction", frac}};
}

void SetHealth(json* j, const std::vector<std::string>& reasons) {
  (*j)["health"] = reasons.empty() ? "ok" : "degraded";
  (*j)["reasons"] = reasons;
}

// What `status` prints for a mount whose daemon is gone.
json DeadJson(const std::string& store, const std::string& mp, const std::string& why) {
  return {{"schema", 1},      {"mounted", true},  {"store", store},
          {"mountpoint", mp}, {"health", "dead"}, {"reasons", {why}}};
}

}  // namespace

// Runs in the daemon: the answer to the `status` control request.
Result<std::string> StatusJson(Store& store, Filesystem& fs) {
  metrics::DaemonInfo info = metrics::GetDaemonInfo();
  std::vector<std::string> reasons;
  int64_t now = NowNs();
  json j = {{"schema", 1},
            {"mounted", true},
            {"store", store.dir()},
            {"data", store.backend().Describe()},
            {"mountpoint", info.mountpoint},
            {"pid", static_cast<int>(::getpid())},
            {"version", SNAPFS_VERSION},
            {"started", Rfc3339(info.start_ns)},
            {"uptime_seconds", (now - info.start_ns) / 1000000000}};
  uint64_t io = metrics::IoErrors().value(), bad = metrics::HashMismatches().value();
  auto last = metrics::LastIoError();
  if (io) {
    reasons.push_back(IoErrorReason(io, last ? last->when_ns : 0, last ? last->what : ""));
  }
  if (bad) reasons.push_back(std::to_string(bad) + " chunk(s) read with a hash mismatch");
  j["io_errors"] = io;
  j["hash_mismatches"] = bad;
  j["last_io_error"] = last ? json{{"time", Rfc3339(last->when_ns)}, {"what", last->what}}
                            : json(nullptr);
  j["data_error"] = Data(store, &reasons);
  j["disk"] = Disk(store.dir(), &reasons);
  if (Status h = store.meta().engine().Health(); !h.ok()) {
    reasons.push_back("metadata engine: " + h.message());
    j["metadata_error"] = h.message();
  } else {
    j["metadata_error"] = nullptr;
  }
  if (auto gc = metrics::LastGcRun()) {
    j["last_gc"] = {{"time", Rfc3339(gc->when_ns)},
                    {"duration_seconds", gc->duration_s},
                    {"freed_bytes", gc->bytes_freed},
                    {"error", gc->error.empty() ? json(nullptr) : json(gc->error)}};
    if (!gc->error.empty()) reasons.push_back("the last GC failed: " + gc->error);
  } else {
    j["last_gc"] = nullptr;
  }
  j["gc_failures"] = metrics::GcFailures();
  if (auto f = metrics::LastFsckRun()) {
    j["last_fsck"] = {{"time", Rfc3339(f->when_ns)},
                      {"verified", f->verified},
                      {"problems", f->problems},
                      {"error", f->error.empty() ? json(nullptr) : json(f->error)}};
    if (!f->error.empty()) {
      reasons.push_back("the last fsck (" + Rfc3339(f->when_ns) + ") failed: " + f->error);
    } else if (f->problems) {
      reasons.push_back("the last fsck (" + Rfc3339(f->when_ns) + ") found " +
                        std::to_string(f->problems) + " problem(s): snapfs fsck " +
                        info.mountpoint + (f->verified ? " --verify" : "") + " names them");
    }
  } else {
    j["last_fsck"] = nullptr;
  }
  if (info.metrics_address.empty()) {
    j["metrics"] = {{"address", nullptr}, {"listening", false}, {"error", nullptr}};
  } else {
    j["metrics"] = {{"address", info.metrics_address},
                    {"listening", info.metrics_listening},
                    {"error", info.metrics_listening ? json(nullptr) : json(info.metrics_error)}};
    if (!info.metrics_listening) {
      reasons.push_back("metrics not listening on " + info.metrics_address + ": " +
                        info.metrics_error);
    }
  }
  j.update(Counts(store, &reasons));
  SetHealth(&j, reasons);
  return DumpJson(j, 2) + "\n";
}

// Runs in the daemon: a `gc` control request, counted and logged as a GC run.
Result<std::string> RecordedGc(bool dry_run, const std::function<Result<std::string>()>& run) {
  auto t0 = std::chrono::steady_clock::now();
  Result<std::string> r = run();
  if (dry_run) return r;
  metrics::GcRun g;
  g.when_ns = NowNs();
  g.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.ok()) {
    auto j = json::parse(*r, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("bytes_freed") && j["bytes_freed"].is_number()) {
      g.bytes_freed = j["bytes_freed"].get<uint64_t>();
    }
    SNAPFS_LOG_INFO("gc (snapfs gc): freed " + std::to_string(g.bytes_freed) + " bytes in " +
                    std::to_string(g.duration_s) + " s");
  } else {
    g.error = r.status().ToString();
    SNAPFS_LOG_ERROR("gc (snapfs gc) failed: " + g.error);
  }
  metrics::RecordGcRun(g);
  return r;
}

// Runs in the daemon: an `fsck` control request, remembered for `status` (degraded while
// the last one found problems or failed).
Result<std::string> RecordedFsck(bool verify, const std::function<Result<std::string>()>& run) {
  Result<std::string> r = run();
  metrics::FsckRun f;
  f.when_ns = NowNs();
  f.verified = verify;
  if (r.ok()) {
    auto j = json::parse(*r, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("problems") && j["problems"].is_array()) {
      f.problems = j["problems"].size();
    }
    if (f.problems) SNAPFS_LOG_ERROR("fsck: " + std::to_string(f.problems) + " problem(s) found");
  } else {
    f.error = r.status().ToString();
    SNAPFS_LOG_ERROR("fsck failed: " + f.error);
  }
  metrics::RecordFsckRun(f);
  return r;
}

namespace {

void PrintHuman(const json& j) {
  auto str = [&](const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
  };
  printf("store        %s\n", str("store").c_str());
  if (!str("data").empty()) printf("data         %s\n", str("data").c_str());
  if (!j.value("mounted", false)) {
    printf("mounted      no\n");
  } else if (j.contains("pid")) {
    printf("mounted      on %s (daemon pid %d, up %s, since %s)\n", str("mountpoint").c_str(),
           j["pid"].get<int>(), HumanAge(j["uptime_seconds"].get<int64_t>() * 1000000000).c_str(),
           str("started").c_str());
  } else {
    printf("mounted      on %s\n", str("mountpoint").c_str());
  }
  std::string health = str("health");
  printf("health       %s\n", health.c_str());
  for (const auto& r : j["reasons"]) printf("             - %s\n", r.get<std::string>().c_str());
  if (j.contains("warnings")) {
    for (const auto& w : j["warnings"]) {
      printf("warning      %s\n", w.get<std::string>().c_str());
    }
  }
  if (health == "dead") {
    printf("             run 'snapfs umount %s', then mount again\n", str("mountpoint").c_str());
    return;
  }
  if (j.contains("version")) printf("version      %s\n", str("version").c_str());
  if (j.contains("sessions")) {
    printf("sessions     %zu (not counting this command's own)\n", j["sessions"].size());
    for (const auto& x : j["sessions"]) {
      printf("             %llu: %s on %s, pid %u, since %s%s\n",
             static_cast<unsigned long long>(x["id"].get<uint64_t>()),
             x["what"].get<std::string>().c_str(), x["host"].get<std::string>().c_str(),
             x["pid"].get<unsigned>(), x["started"].get<std::string>().c_str(),
             x["overdue"].get<bool>() ? " (MISSED ITS HEARTBEATS)" : "");
    }
  }
  if (j.contains("metrics")) {
    const json& m = j["metrics"];
    if (m["address"].is_null())
      printf("metrics      off\n");
    else if (m["listening"].get<bool>())
      printf("metrics      http://%s/metrics\n", m["address"].get<std::string>().c_str());
    else
      printf("metrics      NOT listening on %s\n", m["address"].get<std::string>().c_str());
  }
  if (j.contains("last_gc")) {
    const json& g = j["last_gc"];
    if (g.is_null()) {
      printf("last gc      none since the daemon started\n");
    } else if (!g["error"].is_null()) {
      printf("last gc      %s, FAILED: %s\n", g["time"].get<std::string>().c_str(),
             g["error"].get<std::string>().c_str());
    } else {
      printf("last gc      %s, freed %s in %.1f s\n", g["time"].get<std::string>().c_str(),
             HumanBytes(g["freed_bytes"].get<uint64_t>()).c_str(),
             g["duration_seconds"].get<double>());
    }
  }
  if (j.contains("last_fsck") && !j["last_fsck"].is_null()) {
    const json& f = j["last_fsck"];
    if (!f["error"].is_null()) {
      printf("last fsck    %s, FAILED: %s\n", f["time"].get<std::string>().c_str(),
             f["error"].get<std::string>().c_str());
    } else {
      printf("last fsck    %s%s, %llu problem(s)\n", f["time"].get<std::string>().c_str(),
             f["verified"].get<bool>() ? " (--verify)" : "",
             static_cast<unsigned long long>(f["problems"].get<uint64_t>()));
    }
  }
  if (j.contains("snapshots")) {
    printf("snapshots    %llu (%llu pins, %llu hidden entries)\n",
           static_cast<unsigned long long>(j["snapshots"].get<uint64_t>()),
           static_cast<unsigned long long>(j["pins"].get<uint64_t>()),
           static_cast<unsigned long long>(j["hidden_entries"].get<uint64_t>()));
  }
  if (j.contains("purge_backlog") && j["purge_backlog"]["folders"].get<uint64_t>() > 0) {
    printf("purging      %llu removed folder(s) in the background (%llu entries dropped so far)\n",
           static_cast<unsigned long long>(j["purge_backlog"]["folders"].get<uint64_t>()),
           static_cast<unsigned long long>(j["purge_backlog"]["entries_removed"].get<uint64_t>()));
  }
  if (j.contains("io_errors")) {
    printf("io errors    %llu (%llu hash mismatches)\n",
           static_cast<unsigned long long>(j["io_errors"].get<uint64_t>()),
           static_cast<unsigned long long>(j["hash_mismatches"].get<uint64_t>()));
  }
  if (j.contains("disk") && j["disk"].is_object()) {
    printf("disk         %s free of %s (%.0f%%)\n",
           HumanBytes(j["disk"]["free_bytes"].get<uint64_t>()).c_str(),
           HumanBytes(j["disk"]["size_bytes"].get<uint64_t>()).c_str(),
           100 * j["disk"]["free_fraction"].get<double>());
  }
}

// A shared (database) store: opened here as one more session; what every host's
// sessions are doing comes from the database. `mp`: the mount point asked about, if any.
Result<json> SharedStatus(const std::string& store, const std::string& mp) {
  if (!mp.empty() && IsDeadMount(mp, store)) {
    return DeadJson(store, mp, "the daemon is gone (the mount point answers ENOTCONN)");
  }
  OpenOptions oo;
  oo.session_what = "snapfs status";
  oo.cache_bytes = 0;
  oo.check_data = false;  // an object store that is down is a reason below, not an error
  auto st = Store::Open(store, std::move(oo));
  if (!st.ok()) return st.status();
  std::vector<std::string> reasons;
  json j = {{"schema", 1},
            {"mounted", !mp.empty()},
            {"store", (*st)->dir()},
            {"mountpoint", mp.empty() ? json(nullptr) : json(mp)},
            {"data", (*st)->backend().Describe()}};
  j["data_error"] = Data(**st, &reasons);
  auto sessions = ListSessions((*st)->meta().engine());
  if (!sessions.ok()) return sessions.status();
  auto health = ListSessionHealth((*st)->meta().engine());
  if (!health.ok()) return health.status();
  const std::string host = HostName();
  const int64_t now = WallMs();
  json list = json::array();
  bool found = mp.empty();
  for (const auto& x : *sessions) {
    if (x.id == (*st)->session_id()) continue;  // this status command itself
    list.push_back({{"id", x.id},
                    {"host", x.value.host},
                    {"pid", x.value.pid},
                    {"what", x.value.what},
                    {"started", Rfc3339(x.value.started_ms * 1000000)},
                    {"last_heartbeat_seconds_ago", static_cast<double>(now - x.value.beat_ms) / 1000},
                    {"timeout_seconds", static_cast<double>(x.value.timeout_ms) / 1000},
                    {"overdue", x.overdue}});
    const SessionHealth h = health->count(x.id) ? health->at(x.id) : SessionHealth{};
    list.back()["io_errors"] = h.io_errors;
    list.back()["hash_mismatches"] = h.hash_mismatches;
    list.back()["last_io_error"] =
        h.last_error.empty() ? json(nullptr)
                             : json{{"time", Rfc3339(h.last_error_ms * 1000000)}, {"what", h.last_error}};
    // The mount asked about, or (asked about the store) every session.
    const bool asked = mp.empty() || (x.value.host == host && x.value.what == MountWhat(mp));
    if (asked && (h.io_errors || h.hash_mismatches)) {
      std::string who = mp.empty() ? "session " + std::to_string(x.id) + " (" + x.value.what +
                                         " on " + x.value.host + "): "
                                   : "";
      if (h.io_errors) {
        reasons.push_back(who + IoErrorReason(h.io_errors, h.last_error_ms * 1000000, h.last_error));
      }
      if (h.hash_mismatches) {
        reasons.push_back(who + std::to_string(h.hash_mismatches) +
                          " chunk(s) read with a hash mismatch");
      }
    }
    if (x.overdue) {
      reasons.push_back("session " + std::to_string(x.id) + " (" + x.value.what + " on " +
                        x.value.host + ", pid " + std::to_string(x.value.pid) +
                        ") missed its heartbeats (by this host's clock); a daemon will clean "
                        "up after it");
    }
    if (!mp.empty() && x.value.host == host && x.value.what == MountWhat(mp) && !x.overdue) {
      found = true;
      j["pid"] = static_cast<int>(x.value.pid);
      j["started"] = Rfc3339(x.value.started_ms * 1000000);
      j["uptime_seconds"] = (now - x.value.started_ms) / 1000;
    }
  }
  j["sessions"] = list;
  if (!found) reasons.push_back("no live session of this host mounts " + mp);
  j.update(Counts(**st, &reasons));
  SetHealth(&j, reasons);
  return j;
}

// The answer for `arg`, and whether it is healthy.
Result<json> StatusOf(const std::string& arg) {
  if (IsDatabaseLocation(arg)) return SharedStatus(arg, "");
  std::string abs = LexicalAbsolute(arg);
  std::string store, mp;
  for (const auto& [m, s] : SnapfsMounts()) {
    if (m == abs) {
      mp = m;
      store = s;
    }
  }
  if (IsDatabaseLocation(store)) return SharedStatus(store, mp);
  if (store.empty()) {
    char* real = realpath(abs.c_str(), nullptr);
    std::string r = real ? real : abs;
    free(real);
    if (::access((r + "/snapfs.conf").c_str(), F_OK) != 0) {
      struct stat st;
      if (::stat(abs.c_str(), &st) != 0 && errno == ENOENT) {
        return Status::NotFound(arg + ": no such file or folder");
      }
      return Status::NotFound(arg + " is neither a snapfs mount point nor a store");
    }
    store = r;
    for (const auto& [m, s] : SnapfsMounts()) {
      if (s == store) mp = m;
    }
  }
  int pid = 0;
  bool held = StoreLockHeld(store, &pid);
  if (!mp.empty()) {
    struct stat st;
    if (::stat(mp.c_str(), &st) != 0 && errno == ENOTCONN) {
      return DeadJson(store, mp, "the daemon is gone (the mount point answers ENOTCONN)");
    }
    if (!held) return DeadJson(store, mp, "no daemon holds the store (it has exited)");
  }
  if (held) {
    auto text = fuse::CallDaemon(store, "status");
    if (!text.ok()) {
      std::string who = "pid " + std::to_string(pid);
      json j = {{"schema", 1},
                {"mounted", !mp.empty()},
                {"store", store},
                {"mountpoint", mp},
                {"health", mp.empty() ? "busy" : "dead"},
                {"reasons",
                 {"the store is held by " + who + ", which does not answer (" +
                  text.status().ToString() + ")"}}};
      return j;
    }
    auto j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::IOError("bad answer from the daemon");
    if (j.is_object() && j.contains("error")) return StatusFromJson(j);
    return j;
  }
  // Not mounted: healthy if it opens and its packs can be reached.
  OpenOptions oo;
  oo.check_data = false;
  auto st = Store::Open(store, std::move(oo));
  if (!st.ok()) return st.status();
  std::vector<std::string> reasons;
  json j = {{"schema", 1}, {"mounted", false}, {"store", store}, {"mountpoint", nullptr}};
  j["data"] = (*st)->backend().Describe();
  std::vector<std::string> unreachable;
  j["data_error"] = Data(**st, &unreachable);
  j["disk"] = Disk(store, &reasons);
  j.update(Counts(**st, &reasons));
  // Nothing runs, so the disk is a warning only; packs that cannot be reached would fail
  // the next mount.
  j["health"] = unreachable.empty() ? "ok" : "degraded";
  j["reasons"] = unreachable;
  j["warnings"] = reasons;
  return j;
}

}  // namespace

int CmdStatus(const Args& args) {
  po::options_description opts("options");
  std::string target;
  opts.add_options()("target", po::value(&target)->required(), "a mount point or a store folder")(
      "json", po::bool_switch(), "print JSON (\"schema\": 1)");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("status", "MOUNTPOINT|STORE [--json]", args, opts, pos, &vm,
                      {"snapfs status /mnt/ckpt", "snapfs status /mnt/ckpt --json | jq .health"})) {
    return *rc;
  }
  bool as_json = vm["json"].as<bool>();
  auto j = StatusOf(target);
  if (!j.ok()) {
    return Fail("status", j.status());  // JSON on stdout with --json
  }
  if (as_json)
    PrintJson(*j);
  else
    PrintHuman(*j);
  return (*j)["health"] == "ok" ? kExitOk : kExitFailure;
}

}  // namespace snapfs::cli
