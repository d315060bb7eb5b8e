// snapfs umount MOUNTPOINT: unmount and wait until the daemon has flushed and exited.
// --abort first aborts the mount's FUSE connection (fusectl), for a daemon that is dead or
// hung: what it had not committed is lost, as with kill -9 (docs/reliability.md, finding
// 32: a killed daemon the kernel keeps alive, and whoever was waiting on it, hang until
// then).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "core/meta/postgres_engine.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdUmount(const Args& args) {
  po::options_description opts("options");
  std::string mountpoint;
  unsigned wait_s = 120;
  opts.add_options()("mountpoint", po::value(&mountpoint)->required(),
                     "where the store is mounted")(
      "lazy,l", po::bool_switch(), "detach now even if busy; the daemon exits when unused")(
      "abort", po::bool_switch(),
      "the daemon is dead or hung: abort its FUSE connection first (what it had not "
      "committed is lost, as with kill -9), then detach")(
      "wait", po::value(&wait_s)->default_value(wait_s),
      "seconds to wait for the daemon to finish");
  po::positional_options_description pos;
  pos.add("mountpoint", 1);
  po::variables_map vm;
  if (auto rc = Parse("umount", "MOUNTPOINT [--lazy|--abort]", args, opts, pos, &vm)) return *rc;
  const bool abort = vm["abort"].as<bool>();

  char* abs = realpath(mountpoint.c_str(), nullptr);
  std::string mp = abs ? abs : mountpoint;
  free(abs);
  std::string store = StoreOfMount(mp);
  if (store.empty()) {
    return Fail("umount", Status::NotFound(mp + " is not a snapfs mount point"));
  }
  int daemon = 0;
  bool held = false;
  if (IsDatabaseLocation(store)) {
    // A shared store has no lock file: its daemon is the session of this host that
    // mounted this mount point.
    if (auto e = kv::PostgresEngine::Open(store); e.ok()) {
      if (auto ss = ListSessions(**e); ss.ok()) {
        for (const auto& x : *ss) {
          if (x.value.host == HostName() && x.value.what == MountWhat(mp)) {
            daemon = static_cast<int>(x.value.pid);
          }
        }
      }
    }
    held = daemon > 0;
  } else {
    held = StoreLockHeld(store, &daemon);
  }

  if (abort) {
    if (Status s = AbortFuseConnection(mp); !s.ok()) return Fail("umount", s);
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (vm["lazy"].as<bool>() || abort)
      execlp("fusermount3", "fusermount3", "-u", "-z", mp.c_str(), nullptr);
    else
      execlp("fusermount3", "fusermount3", "-u", mp.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return Fail("umount", Status::NotFound("fusermount3 not found (install fuse3)"));
    }
    return Fail("umount", Status::Busy("could not unmount " + mp + " (see above; is it in use?)"));
  }
  // The daemon flushes and releases the store after the unmount: wait until its lock is
  // free (the lock, not the pid: a dead or zombie process holds no lock); a shared
  // store's daemon has no lock: wait until its process is gone.
  auto busy = [&] {
    return IsDatabaseLocation(store) ? ProcessRunning(daemon) : StoreLockHeld(store);
  };
  if (held) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
    while (busy()) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "snapfs umount: unmounted, but daemon pid " << daemon
                  << " is still flushing after " << wait_s << " s\n";
        return kExitFailure;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return kExitOk;
}

}  // namespace snapfs::cli
