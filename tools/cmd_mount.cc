// snapfs mount STORE MOUNTPOINT [-f] [-o opts] [--threads N]
// Daemonises by default and returns once the mount is live, or prints why it failed.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/algorithm/string.hpp>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "base/log.h"
#include "core/meta/postgres_engine.h"
#include "core/store.h"
#include "daemon/metrics_server.h"
#include "daemon/mount.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

namespace {

// Reports readiness from the daemon to the waiting parent: "OK\n" or the error text.
void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

int CmdMount(const Args& args) {
  po::options_description opts("options");
  std::string store, mountpoint;
  std::vector<std::string> fuse_opts;
  unsigned threads = 16, gc_interval = 600, purge_batch = 1000;
  std::string metrics = "127.0.0.1:9567", log_level = "info", log_dest;
  std::string cache_dir, cache_size = "4G", state_dir;
  double session_timeout = 60, entry_timeout = 1;
  unsigned db_connections = 16;
  opts.add_options()("store", po::value(&store)->required(),
                     "the store folder, or a database store's postgresql:// URL")(
      "mountpoint", po::value(&mountpoint)->required(), "an empty folder to mount on")(
      "foreground,f", po::bool_switch(), "stay in the foreground, log to stderr")(
      "options,o", po::value(&fuse_opts)->composing(),
      "FUSE mount options, comma-separated (e.g. allow_other)")(
      "threads", po::value(&threads)->default_value(threads), "worker threads at most")(
      "debug,d", po::bool_switch(), "trace every FUSE request (implies -f)")(
      "no-writeback", po::bool_switch(), "do not use the kernel writeback cache")(
      "gc-interval", po::value(&gc_interval)->default_value(gc_interval),
      "seconds between automatic GC runs while mounted (0: never, only snapfs gc)")(
      "purge-batch", po::value(&purge_batch)->default_value(purge_batch),
      "entries per transaction of the background purge of removed snapshots (0: no "
      "background purge; snapfs gc purges)")(
      "metrics", po::value(&metrics)->default_value(metrics),
      "serve Prometheus metrics on http://ADDR:PORT/metrics, or 'off'")(
      "log-level", po::value(&log_level)->default_value(log_level),
      "trace, debug, info, warn or error")(
      "log", po::value(&log_dest),
      "FILE, syslog or stderr (default: STORE/daemon.log, rotated at 10 MiB, 3 kept; "
      "stderr with -f)")(
      "cache-dir", po::value(&cache_dir),
      "S3 stores: folder caching fetched pack blocks (default: STORE/cache)")(
      "cache-size", po::value(&cache_size)->default_value(cache_size),
      "S3 stores: size bound of that cache, least recently used blocks go first (0: none)")(
      "state-dir", po::value(&state_dir),
      "database stores: this host's folder for spooled packs, cache and log (default: "
      "/var/lib/snapfs/pg-<hash of the URL>)")(
      "session-timeout", po::value(&session_timeout)->default_value(session_timeout),
      "database stores: seconds without a heartbeat after which other hosts clean up "
      "after this daemon")(
      "entry-timeout", po::value(&entry_timeout)->default_value(entry_timeout),
      "database stores: seconds the kernel caches names (a rename or unlink on another "
      "host is seen after at most this)")(
      "db-connections", po::value(&db_connections)->default_value(db_connections),
      "database stores: connections to PostgreSQL this daemon keeps open at most "
      "(every host's count adds up against the server's max_connections)");
  po::positional_options_description pos;
  pos.add("store", 1).add("mountpoint", 1);
  po::variables_map vm;
  if (auto rc = Parse("mount", "STORE MOUNTPOINT [options]", args, opts, pos, &vm,
                      {"snapfs mount /var/lib/snapfs /mnt/ckpt",
                       "snapfs mount /var/lib/snapfs /mnt/ckpt -o allow_other --metrics off",
                       "snapfs mount -f /var/lib/snapfs /mnt/ckpt --log-level debug  # systemd",
                       "snapfs mount /var/lib/snapfs /mnt/ckpt --cache-dir /var/cache/snapfs --cache-size 20G",
                       "snapfs mount postgresql://snapfs@db.internal/ckpt /mnt/ckpt  # every host",
                       "mount -t fuse.snapfs /var/lib/snapfs /mnt/ckpt -o allow_other"})) {
    return *rc;
  }
  if (threads == 0 || threads > 1024) {
    return Fail("mount", Status::InvalidArgument("--threads must be between 1 and 1024"));
  }
  auto usage = [](const Status& s) { return UsageError("mount", s.message()); };
  fuse::MountOptions mo;
  if (metrics != "off") {
    auto a = fuse::ParseListenAddress(metrics);
    if (!a.ok()) return usage(a.status());
    mo.metrics = metrics;
  } else {
    mo.metrics.clear();
  }
  auto level = log::ParseLevel(log_level);
  if (!level.ok()) return usage(level.status());
  mo.log.level = *level;
  for (const auto& a : args)
    mo.options_text += (mo.options_text.empty() ? "" : " ") + HideSecrets(a);
  mo.store = store;
  mo.threads = threads;
  mo.gc_interval_s = gc_interval;
  mo.purge_batch = purge_batch;
  mo.debug = vm["debug"].as<bool>();
  mo.writeback = !vm["no-writeback"].as<bool>();
  mo.control = HandleControl;
  auto cache_bytes = ParseSize(cache_size);
  if (!cache_bytes.ok()) return usage(cache_bytes.status());
  mo.cache_bytes = *cache_bytes;
  if (!cache_dir.empty()) {
    // The daemon runs in /: keep a relative path where it was meant.
    char* abs = realpath(cache_dir.c_str(), nullptr);
    if (abs == nullptr && cache_dir[0] != '/') {
      char* cwd = getcwd(nullptr, 0);
      mo.cache_dir = std::string(cwd ? cwd : "") + "/" + cache_dir;
      free(cwd);
    } else {
      mo.cache_dir = abs ? abs : cache_dir;
    }
    free(abs);
  }
  for (const auto& o : fuse_opts) {
    std::vector<std::string> parts;
    boost::split(parts, o, boost::is_any_of(","));
    for (auto& p : parts) {
      // Options of mount(8)/fstab that are not FUSE's concern.
      if (p.empty() || p == "defaults" || p == "_netdev" || p == "nofail" || p == "auto" ||
          p == "noauto" || p == "user" || p == "users" || p.starts_with("x-")) {
        continue;
      }
      mo.fuse_options.push_back(p);
    }
  }
  char* abs_mp = realpath(mountpoint.c_str(), nullptr);
  mo.mountpoint = abs_mp ? abs_mp : mountpoint;
  free(abs_mp);
  if (!(session_timeout >= 0.1 && session_timeout <= 86400)) {
    return usage(Status::InvalidArgument("--session-timeout must be between 0.1 and 86400 seconds"));
  }
  if (!(entry_timeout >= 0 && entry_timeout <= 3600)) {
    return usage(Status::InvalidArgument("--entry-timeout must be between 0 and 3600 seconds"));
  }
  mo.session_timeout_ms = static_cast<unsigned>(session_timeout * 1000);
  if (db_connections < 1 || db_connections > 1000) {
    return usage(Status::InvalidArgument("--db-connections must be between 1 and 1000"));
  }
  mo.db_max_connections = db_connections;
  mo.shared_entry_timeout = entry_timeout;
  const bool database = IsDatabaseLocation(store);
  // Where the daemon keeps files of its own: the store folder, or this host's state
  // folder of a database store (one log per mount point: several may share it).
  std::string own_dir = store, log_name = "daemon";
  if (database) {
    if (!state_dir.empty()) {
      char* abs = realpath(state_dir.c_str(), nullptr);
      if (abs == nullptr && state_dir[0] != '/') {
        char* cwd = getcwd(nullptr, 0);
        state_dir = std::string(cwd ? cwd : "") + "/" + state_dir;
        free(cwd);
      } else if (abs) {
        state_dir = abs;
      }
      free(abs);
    }
    auto url = kv::PostgresEngine::PublicUrl(store);
    if (!url.ok()) return Fail("mount", url.status());
    mo.state_dir = state_dir.empty() ? DefaultStateDir(*url) : state_dir;
    std::error_code ec;
    // A folder made here is owner-only (the log, the sessions' spools and caches).
    if (std::filesystem::create_directories(mo.state_dir, ec)) ::chmod(mo.state_dir.c_str(), 0700);
    if (ec) return Fail("mount", PosixError("create " + mo.state_dir, ec.value()));
    own_dir = mo.state_dir;
    log_name = "mount" + mo.mountpoint;
    std::replace(log_name.begin(), log_name.end(), '/', '-');
  } else if (!state_dir.empty()) {
    return usage(Status::InvalidArgument("--state-dir is for database stores"));
  }

  // Cheap checks first, so the common mistakes get a clear message without a fork.
  if (!database && ::access((store + "/snapfs.conf").c_str(), F_OK) != 0) {
    auto s = Store::Open(store);  // produces the precise reason
    return Fail("mount", s.ok() ? Status::InvalidArgument(store + " is not a store") : s.status());
  }
  // A config that is not ours, cut off or from a newer snapfs: refused here with the exit
  // code every other verb gives (the daemon would only say that it failed).
  if (!database) {
    auto config = StoreConfig::Load(store + "/snapfs.conf");
    if (!config.ok()) return Fail("mount", config.status());
  }
  // A daemon that just died (killed) releases its lock when its last thread has exited;
  // give a dead or zombie holder a moment rather than refuse.
  for (int i = 0, pid = 0; !database && i < 100 && StoreLockHeld(store, &pid) && !ProcessRunning(pid); i++) {
    usleep(20000);
  }
  if (int pid = 0; !database && StoreLockHeld(store, &pid)) {
    return Fail("mount",
                Status::Busy("store " + store + " is in use by pid " + std::to_string(pid)));
  }
  Status mp = fuse::CheckMountpoint(mo.mountpoint);
  if (!mp.ok()) return Fail("mount", mp);

  bool foreground = vm["foreground"].as<bool>() || mo.debug;
  if (log_dest.empty()) {
    char* abs_store = realpath(own_dir.c_str(), nullptr);
    log_dest = foreground ? "stderr"
                          : std::string(abs_store ? abs_store : own_dir) + "/" + log_name + ".log";
    free(abs_store);
  } else if (log_dest != "stderr" && log_dest != "syslog" && log_dest[0] != '/') {
    // The daemon changes to / once it runs: keep a relative log path where it was meant.
    char* cwd = getcwd(nullptr, 0);
    if (cwd) log_dest = std::string(cwd) + "/" + log_dest;
    free(cwd);
  }
  mo.log.dest = log_dest;
  if (foreground) {
    int rc = fuse::ServeMount(mo, [&](const Status& s) {
      if (!s.ok()) {
        Fail("mount", s);
      } else {
        std::cerr << "snapfs: " << (database ? std::string("the database store") : store) << " mounted on " << mo.mountpoint
                  << " (Ctrl-C or 'snapfs umount " << mo.mountpoint << "' to unmount)\n";
      }
    });
    return rc == 0 ? kExitOk : kExitFailure;
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Fail("mount", PosixError("pipe", errno));
  pid_t pid = ::fork();
  if (pid < 0) return Fail("mount", PosixError("fork", errno));
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    if (::fork() > 0) _exit(0);  // the daemon is not a session leader: no controlling tty
    int ready_fd = pipefd[1];
    int rc = fuse::ServeMount(mo, [&](const Status& s) {
      WriteAll(ready_fd, s.ok() ? std::string("OK\n") : s.ToString() + "\n");
      ::close(ready_fd);
      if (s.ok()) {
        // Detach from the terminal. The log has its own file (--log); what libraries
        // print to stderr lands in STORE/daemon.stderr.
        int null = ::open("/dev/null", O_RDWR);
        int log = ::open((own_dir + "/" + log_name + ".stderr").c_str(),
                         O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (null >= 0) {
          ::dup2(null, 0);
          ::dup2(null, 1);
        }
        if (log >= 0) ::dup2(log, 2);
        if (null > 2) ::close(null);
        if (log > 2) ::close(log);
        if (::chdir("/") != 0) {
        }
      }
    });
    _exit(rc);
  }
  ::close(pipefd[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);  // the intermediate child exits at once
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  if (msg == "OK\n") return kExitOk;
  if (msg.empty()) msg = "the daemon exited before the mount was ready\n";
  std::cerr << "snapfs mount: " << msg;
  return kExitFailure;
}

}  // namespace snapfs::cli
