#include "fuse/mount.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/filesystem.h"
#include "core/gc.h"
#include "core/store.h"
#include "fuse/control.h"
#include "fuse/fuse_ops.h"

namespace snapfs::fuse {

namespace {

// The type and source of the mount at exactly `mp` (the top one), from /proc/self/mounts
// (which escapes blanks as \040); false if `mp` is no mount point.
bool MountAt(const std::string& mp, std::string* type, std::string* source) {
  auto unescape = [](const std::string& s) {
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
  };
  std::ifstream f("/proc/self/mounts");
  bool found = false;
  for (std::string line; std::getline(f, line);) {
    std::istringstream ls(line);
    std::string dev, point, t;
    ls >> dev >> point >> t;
    if (unescape(point) == mp) {
      found = true;
      *type = t;
      *source = unescape(dev);
    }
  }
  return found;
}

}  // namespace

Status CheckMountpoint(const std::string& mp) {
  // A live FUSE mount (snapfs or another) looks like an empty folder when its file
  // system is empty; mounting over it would stack two mounts and `umount` would then
  // remove only the top one.
  if (std::string type, source; MountAt(mp, &type, &source) && type.starts_with("fuse")) {
    return Status::Busy(mp + " is already a mount point (" + type + " " + source +
                        "): unmount it first");
  }
  struct stat st;
  if (::stat(mp.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::Busy(mp + " is a dead mount (daemon gone): run 'snapfs umount " + mp + "'");
    }
    return PosixError("mount point " + mp, errno);
  }
  if (!S_ISDIR(st.st_mode)) return Status::NotDirectory("mount point " + mp + " is not a folder");
  auto empty_or = DirIsEmpty(mp);
  if (!empty_or.ok()) return empty_or.status().WithContext("mount point");
  bool empty = *empty_or;
  if (!empty) return Status::NotEmpty("mount point " + mp + " is not empty");
  if (::access("/dev/fuse", F_OK) != 0) {
    return PosixError("/dev/fuse (is the fuse kernel module loaded?)", errno);
  }
  // libfuse opens /dev/fuse itself before it hands the mount to fusermount3, so a user
  // needs access to it (Debian's default mode is 0666).
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return PosixError("/dev/fuse is not accessible to this user (a non-root mount needs it "
                      "readable and writable, usually mode 0666)", errno);
  }
  return Status::OK();
}

int ServeMount(const MountOptions& opts, const std::function<void(const Status&)>& ready) {
  char* abs_store = realpath(opts.store.c_str(), nullptr);
  std::string store_path = abs_store ? abs_store : opts.store;
  free(abs_store);

  auto store = Store::Open(store_path);
  if (!store.ok()) {
    ready(store.status());
    return 1;
  }
  auto fs = Filesystem::Open(store->get());
  if (!fs.ok()) {
    ready(fs.status());
    return 1;
  }
  // References in markers name files by absolute path: remember every place the store
  // was mounted so they resolve after the mount moves.
  if (char* abs_mp = realpath(opts.mountpoint.c_str(), nullptr)) {
    Status ms = (*fs)->RecordMountPoint(abs_mp);
    free(abs_mp);
    if (!ms.ok()) {
      ready(ms);
      return 1;
    }
  }
  ControlServer control;
  if (opts.control) {
    Store* st = store->get();
    Filesystem* f = fs->get();
    Status cs = control.Start(
        store_path, [&opts, st, f](const std::string& req) { return opts.control(*st, *f, req); });
    if (!cs.ok()) {
      ready(cs);
      return 1;
    }
  }
  FuseContext ctx;
  ctx.fs = fs->get();
  ctx.timeout = opts.timeout;
  ctx.writeback = opts.writeback;

  std::string o = "default_permissions,fsname=snapfs:" + store_path + ",subtype=snapfs";
  for (const auto& x : opts.fuse_options) o += "," + x;
  std::vector<std::string> argv_s = {"snapfs", "-o", o};
  if (opts.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_session* se = fuse_session_new(&args, &Operations(), sizeof(fuse_lowlevel_ops), &ctx);
  if (!se) {
    ready(Status::InvalidArgument("FUSE rejected the mount options: " + o));
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    ready(Status::IOError("cannot install signal handlers"));
    return 1;
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    ready(Status::IOError("mounting " + opts.mountpoint + " failed (see the message above)"));
    return 1;
  }
  // Changes the daemon makes for the CLI (snapfs rm, ...) reach the kernel's caches.
  (*fs)->SetEntryInvalidator([se](uint64_t parent, std::string_view name) {
    std::string n(name);
    (void)fuse_lowlevel_notify_inval_entry(se, parent, n.c_str(), n.size());
  });
  ready(Status::OK());

  // Space freed by deletes and snapshot removals comes back without anyone asking.
  std::mutex gc_mu;
  std::condition_variable gc_cv;
  bool stopping = false;
  std::thread gc_thread;
  if (opts.gc_interval_s > 0) {
    gc_thread = std::thread([&, st = store->get()] {
      std::unique_lock l(gc_mu);
      while (!gc_cv.wait_for(l, std::chrono::seconds(opts.gc_interval_s), [&] { return stopping; })) {
        l.unlock();
        auto r = RunGc(*st);
        if (!r.ok()) fprintf(stderr, "snapfs: automatic gc: %s\n", r.status().ToString().c_str());
        l.lock();
      }
    });
  }

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, opts.threads);
  fuse_loop_cfg_set_idle_threads(cfg, std::min(opts.threads, 10u));
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);

  if (gc_thread.joinable()) {
    {
      std::lock_guard l(gc_mu);
      stopping = true;
    }
    gc_cv.notify_all();
    gc_thread.join();
  }
  (*fs)->SetEntryInvalidator(nullptr);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  control.Stop();
  Status fl = (*fs)->FlushAll();
  if (!fl.ok()) fprintf(stderr, "snapfs: flush at unmount: %s\n", fl.ToString().c_str());
  fs->reset();
  store->reset();
  return rc == 0 && fl.ok() ? 0 : 1;
}

}  // namespace snapfs::fuse
