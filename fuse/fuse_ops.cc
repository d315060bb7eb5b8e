#include "fuse/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "base/log.h"
#include "base/metrics.h"
#include "fuse/errno_map.h"

namespace snapfs::fuse {

namespace {

FuseContext* Ctx(fuse_req_t req) { return static_cast<FuseContext*>(fuse_req_userdata(req)); }
Filesystem& Fs(fuse_req_t req) { return *Ctx(req)->fs; }

// ---- instrumentation: every request is counted and timed by operation ----

enum OpId {
  kLookup,
  kForget,
  kForgetMulti,
  kGetattr,
  kSetattr,
  kReadlink,
  kMknod,
  kMkdir,
  kUnlink,
  kRmdir,
  kSymlink,
  kRename,
  kLink,
  kOpen,
  kCreate,
  kRead,
  kWrite,
  kFlush,
  kRelease,
  kFsync,
  kOpendir,
  kReaddir,
  kReaddirplus,
  kReleasedir,
  kFsyncdir,
  kStatfs,
  kSetxattr,
  kGetxattr,
  kListxattr,
  kRemovexattr,
  kCopyFileRange,
  kFallocate,
  kOpCount
};
constexpr const char* kOpNames[kOpCount] = {
    "lookup",    "forget",      "forget_multi",    "getattr",  "setattr", "readlink", "mknod",
    "mkdir",     "unlink",      "rmdir",           "symlink",  "rename",  "link",     "open",
    "create",    "read",        "write",           "flush",    "release", "fsync",    "opendir",
    "readdir",   "readdirplus", "releasedir",      "fsyncdir", "statfs",  "setxattr", "getxattr",
    "listxattr", "removexattr", "copy_file_range", "fallocate"};

struct FuseMetrics {
  struct PerOp {
    metrics::Counter* requests;
    metrics::Counter* errors;
    metrics::Histogram* latency;
  } op[kOpCount];
  metrics::Counter* read_bytes;
  metrics::Counter* written_bytes;
  metrics::Counter* fsyncs;
  metrics::Histogram* fsync_latency;

  FuseMetrics() {
    metrics::Registry& r = metrics::Global();
    for (int i = 0; i < kOpCount; i++) {
      metrics::Labels l = {{"op", kOpNames[i]}};
      op[i].requests = r.GetCounter("snapfs_fuse_requests_total", "FUSE requests answered", l);
      op[i].errors = r.GetCounter("snapfs_fuse_request_errors_total",
                                  "FUSE requests answered with an error", l);
      op[i].latency =
          r.GetHistogram("snapfs_fuse_request_duration_seconds",
                         "Time from a FUSE request to its reply", metrics::LatencyBuckets(), l);
    }
    read_bytes = r.GetCounter("snapfs_read_bytes_total", "Bytes returned by FUSE reads");
    written_bytes = r.GetCounter("snapfs_written_bytes_total", "Bytes accepted by FUSE writes");
    fsyncs = r.GetCounter("snapfs_fsync_total", "fsync and fdatasync calls on files");
    fsync_latency = r.GetHistogram("snapfs_fsync_duration_seconds",
                                   "Time an fsync of a file took (data and metadata durable)",
                                   metrics::LatencyBuckets());
  }
};

FuseMetrics& M() {
  static FuseMetrics* m = new FuseMetrics;  // never destroyed: worker threads may outlive exit
  return *m;
}

// What the request on this thread is about, for the counters and error messages.
thread_local int t_op = -1;
thread_local uint64_t t_ino = 0;
thread_local const char* t_name = nullptr;

template <typename... A>
void NoteRequest(A... a) {
  t_ino = 0;
  t_name = nullptr;
  if constexpr (sizeof...(A) >= 1) {
    auto args = std::make_tuple(a...);
    if constexpr (std::is_same_v<std::tuple_element_t<0, decltype(args)>, fuse_ino_t>) {
      t_ino = std::get<0>(args);
      if constexpr (sizeof...(A) >= 2) {
        if constexpr (std::is_same_v<std::tuple_element_t<1, decltype(args)>, const char*>) {
          t_name = std::get<1>(args);
        }
      }
    }
  }
}

template <OpId K, auto F>
struct Instrumented;
template <OpId K, typename... A, void (*F)(fuse_req_t, A...)>
struct Instrumented<K, F> {
  static void Call(fuse_req_t req, A... a) {
    auto start = std::chrono::steady_clock::now();
    t_op = K;
    NoteRequest(a...);
    F(req, a...);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    FuseMetrics& m = M();
    m.op[K].requests->Inc();
    m.op[K].latency->Observe(s);
    if constexpr (K == kFsync) {
      m.fsyncs->Inc();
      m.fsync_latency->Observe(s);
    }
    t_op = -1;
  }
};

void ReplyErrno(fuse_req_t req, int e) {
  if (e != 0 && t_op >= 0) M().op[t_op].errors->Inc();
  if (e == EIO) metrics::IoErrors().Inc();
  fuse_reply_err(req, e);
}

// The file an error is about, as well as we know it without a search: the path of a
// folder, or of a name in one; else the inode number.
std::string WhatFile(fuse_req_t req) {
  if (t_ino == 0) return "?";
  auto dir = Fs(req).PathOf(t_ino);
  if (dir.ok()) {
    std::string p = "/" + *dir;
    if (t_name) p += (p == "/" ? "" : "/") + std::string(t_name);
    return p;
  }
  return "inode " + std::to_string(t_ino);
}

void ReplyErr(fuse_req_t req, const Status& s) {
  int e = ToErrno(s);
  if (e == EIO) {
    std::string what = std::string(t_op >= 0 ? kOpNames[t_op] : "request") + " of " +
                       WhatFile(req) + ": I/O error: " + s.ToString();
    SNAPFS_LOG_ERROR(what);
    metrics::NoteIoError(std::move(what));
  }
  ReplyErrno(req, e);
}

Caller WhoAsks(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{static_cast<uint32_t>(c->uid), static_cast<uint32_t>(c->gid)};
}

timespec ToTimespec(int64_t ns) {
  timespec t;
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    t.tv_sec--;
  }
  return t;
}

int64_t FromTimespec(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

struct stat ToStat(const Attr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = a.rdev;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = 128 * 1024;
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

// The /.snapshots/ views change with snapshots, not through requests the kernel sees:
// it may cache them only briefly.
constexpr double kViewTimeout = 1.0;
double TimeoutFor(fuse_req_t req, uint64_t ino) {
  return ino >= kViewInoBase ? kViewTimeout : Ctx(req)->timeout;
}
// A shared mount's files get attr_timeout (0): every open must see the size the last
// close on any host committed (close-to-open). Its folders and symlinks get the entry
// timeout instead: their attributes are what the kernel's permission checks of every
// path walk and every create or unlink in them ask for (four GETATTRs, each a database
// read, per create in a folder), and a change made on another host is seen within it,
// as a rename or unlink there is. This host's own changes to a folder void the
// kernel's copy at once (the kernel drops a parent's attributes when it changes it).
double AttrTimeoutFor(fuse_req_t req, uint64_t ino, uint32_t mode) {
  if (ino >= kViewInoBase) return kViewTimeout;
  const FuseContext* c = Ctx(req);
  if (c->attr_timeout < 0 || (c->shared && !S_ISREG(mode))) return c->timeout;
  return c->attr_timeout;
}

// Replies with an entry and takes the lookup reference the kernel now holds.
void ReplyEntry(fuse_req_t req, const Attr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a.ino;
  e.generation = a.generation;
  e.attr = ToStat(a);
  e.attr_timeout = a.hidden ? 0 : AttrTimeoutFor(req, a.ino, a.mode);
  e.entry_timeout = a.hidden ? 0 : TimeoutFor(req, a.ino);
  Fs(req).Ref(a.ino);
  if (fuse_reply_entry(req, &e) != 0) Fs(req).Unref(a.ino);  // interrupted: no ref taken
}

void ReplyEntryResult(fuse_req_t req, const Result<Attr>& r) {
  if (!r.ok()) return ReplyErr(req, r.status());
  ReplyEntry(req, *r);
}

void ReplyAttr(fuse_req_t req, const Result<Attr>& r) {
  if (!r.ok()) return ReplyErr(req, r.status());
  struct stat st = ToStat(*r);
  double timeout = AttrTimeoutFor(req, r->ino, r->mode);
  if (r->cache_left_s >= 0) timeout = std::min(timeout, r->cache_left_s);
  fuse_reply_attr(req, &st, timeout);
}

// With the writeback cache the kernel reads pages of files opened write-only and handles
// O_APPEND itself, so the core must see read-write handles without O_APPEND.
int CoreFlags(fuse_req_t req, int flags) {
  if (Ctx(req)->writeback_on) {
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags;
}

// ---- operations ----

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  conn->max_write = 1 << 20;
  if (ctx->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    ctx->writeback_on = true;
  }
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // Committed file data never changes behind the kernel's back: keep its page cache.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

void OpDestroy(void* userdata) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  (void)ctx->fs->FlushAll();
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto r = Fs(req).Lookup(parent, name);
  if (!r.ok() && r.status().Is(Code::kNotFound)) {
    // A negative entry the kernel may cache as long as positive ones.
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.entry_timeout = TimeoutFor(req, parent);
    fuse_reply_entry(req, &e);
    return;
  }
  ReplyEntryResult(req, r);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req).Unref(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; i++) Fs(req).Unref(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ReplyAttr(req, Fs(req).GetAttr(ino));
}

// Whether the caller of `req` is in group `gid` (or is root, taken as having CAP_FSETID).
bool CallerInGroup(fuse_req_t req, uint32_t gid) {
  const fuse_ctx* c = fuse_req_ctx(req);
  if (c->uid == 0 || c->gid == gid) return true;
  gid_t groups[64];
  int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < std::min(n, 64); i++) {
    if (groups[i] == gid) return true;
  }
  return false;
}

// With FUSE_HANDLE_KILLPRIV_V2 (kill_priv.h) dropping privileges is ours when the kernel
// says so (a write, an O_TRUNC open or a truncate by a caller without CAP_FSETID, every
// chown): S_ISUID always, S_ISGID if the group may execute the file or the caller is not
// in its group (setattr_should_drop_sgid, as on ext4), and security.capability; on
// every non-folder (a chown of a fifo or device drops its set-id bits too: pjdfstest
// chown/00.t).
// `invalidate`: the kernel caches the mode and learns nothing from the reply (a write or
// an open), so its attributes are invalidated.
Status DropPrivileges(fuse_req_t req, fuse_ino_t ino, bool invalidate) {
  auto a = Fs(req).GetAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISDIR(a->mode)) return Status::OK();  // a chown of any other type drops them too
  uint32_t drop = S_ISUID;
  if ((a->mode & S_ISGID) && ((a->mode & S_IXGRP) || !CallerInGroup(req, a->gid))) {
    drop |= S_ISGID;
  }
  bool changed = false;
  if (a->mode & drop) {
    SetAttrRequest r;
    r.set_mode = true;
    r.mode = a->mode & ~drop;
    RETURN_IF_ERROR(Fs(req).SetAttr(ino, r).status());
    changed = true;
  }
  if (S_ISREG(a->mode)) {  // file capabilities belong to executables
    Status s = Fs(req).RemoveXattr(ino, "security.capability");
    if (s.ok()) changed = true;
    else if (!s.Is(Code::kNoData)) return s;
  }
  if (changed && invalidate && Ctx(req)->session) {
    (void)fuse_lowlevel_notify_inval_inode(Ctx(req)->session, ino, -1, 0);  // attributes only
  }
  return Status::OK();
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  if (RequestKillsSuidGid()) {
    // Before the change itself (the kernel's order on a local file system); a chmod in the
    // same request sets the mode anyway.
    if (Status s = DropPrivileges(req, ino, false); !s.ok()) return ReplyErr(req, s);
  }
  SetAttrRequest r;
  r.set_mode = to_set & FUSE_SET_ATTR_MODE;
  r.set_uid = to_set & FUSE_SET_ATTR_UID;
  r.set_gid = to_set & FUSE_SET_ATTR_GID;
  r.set_size = to_set & FUSE_SET_ATTR_SIZE;
  r.set_atime = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW);
  r.set_mtime = to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
  r.atime_now = to_set & FUSE_SET_ATTR_ATIME_NOW;
  r.mtime_now = to_set & FUSE_SET_ATTR_MTIME_NOW;
  r.set_ctime = to_set & FUSE_SET_ATTR_CTIME;
  r.mode = attr->st_mode;
  r.uid = attr->st_uid;
  r.gid = attr->st_gid;
  r.size = static_cast<uint64_t>(attr->st_size);
  r.atime_ns = FromTimespec(attr->st_atim);
  r.mtime_ns = FromTimespec(attr->st_mtim);
  r.ctime_ns = FromTimespec(attr->st_ctim);
  ReplyAttr(req, Fs(req).SetAttr(ino, r));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto r = Fs(req).Readlink(ino);
  if (!r.ok()) return ReplyErr(req, r.status());
  fuse_reply_readlink(req, r->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntryResult(req, Fs(req).Mknod(parent, name, mode, rdev, WhoAsks(req)));
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntryResult(req, Fs(req).Mkdir(parent, name, mode, WhoAsks(req)));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyErr(req, Fs(req).Unlink(parent, name));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyErr(req, Fs(req).Rmdir(parent, name));
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  ReplyEntryResult(req, Fs(req).Symlink(link, parent, name, WhoAsks(req)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  ReplyErr(req, Fs(req).Rename(parent, name, newparent, newname, flags));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ReplyEntryResult(req, Fs(req).Link(ino, newparent, newname));
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_TRUNC) && RequestKillsSuidGid()) {
    if (Status s = DropPrivileges(req, ino, true); !s.ok()) return ReplyErr(req, s);
  }
  auto r = Fs(req).Open(ino, CoreFlags(req, fi->flags));
  if (!r.ok()) return ReplyErr(req, r.status());
  fi->fh = *r;
  // Committed chunks never change and, in a folder store, all writes come through this
  // mount. In a shared store another host may have rewritten the file since.
  fi->keep_cache = Ctx(req)->shared ? 0 : 1;
  fi->noflush = 0;
  if (fuse_reply_open(req, fi) != 0) (void)Fs(req).Release(*r);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  auto r = Fs(req).Create(parent, name, mode, CoreFlags(req, fi->flags), WhoAsks(req));
  if (!r.ok()) return ReplyErr(req, r.status());
  fi->fh = r->second;
  fi->keep_cache = 1;
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = r->first.ino;
  e.generation = r->first.generation;
  e.attr = ToStat(r->first);
  e.attr_timeout = AttrTimeoutFor(req, e.ino, r->first.mode);
  e.entry_timeout = Ctx(req)->timeout;
  Fs(req).Ref(e.ino);
  if (fuse_reply_create(req, &e, fi) != 0) {
    Fs(req).Unref(e.ino);
    (void)Fs(req).Release(r->second);
  }
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  std::unique_ptr<char[]> buf(new char[size]);  // filled by Read; no need to zero it
  auto r = Fs(req).Read(fi->fh, static_cast<uint64_t>(off), size, buf.get());
  if (!r.ok()) return ReplyErr(req, r.status());
  M().read_bytes->Inc(*r);
  fuse_reply_buf(req, buf.get(), *r);
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info* fi) {
  WriteOrder::Turn turn(&Ctx(req)->write_order, ino, CurrentWriteUnique());
  if (RequestKillsSuidGid()) {
    if (Status s = DropPrivileges(req, ino, true); !s.ok()) return ReplyErr(req, s);
  }
  auto r = Fs(req).Write(fi->fh, static_cast<uint64_t>(off), data, size);
  if (!r.ok()) return ReplyErr(req, r.status());
  M().written_bytes->Inc(*r);
  fuse_reply_write(req, *r);
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ReplyErr(req, Fs(req).Flush(fi->fh));
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ReplyErr(req, Fs(req).Release(fi->fh));
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  ReplyErr(req, Fs(req).Fsync(fi->fh, datasync != 0));
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto a = Fs(req).GetAttr(ino);
  if (!a.ok()) return ReplyErr(req, a.status());
  if (!S_ISDIR(a->mode)) return (void)ReplyErrno(req, ENOTDIR);
  fi->fh = 0;
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  Filesystem& fs = Fs(req);
  Status entry_error;  // an entry whose inode could not be read (not: deleted meanwhile)
  Status s = fs.ReadDir(ino, static_cast<uint64_t>(off), [&](const DirEntry& e) {
    size_t n;
    if (plus) {
      fuse_entry_param p;
      std::memset(&p, 0, sizeof p);
      bool dot = e.name == "." || e.name == "..";
      if (!dot) {
        auto a = fs.GetAttr(e.ino);
        if (!a.ok() && a.status().Is(Code::kNotFound)) return true;  // deleted meanwhile
        if (!a.ok()) {
          // Fail the listing (now, or with the next call, which starts at this entry)
          // instead of leaving the name out as if it did not exist.
          entry_error = a.status();
          return false;
        }
        p.ino = e.ino;
        p.generation = a->generation;
        p.attr = ToStat(*a);
        p.attr_timeout = AttrTimeoutFor(req, e.ino, a->mode);
        p.entry_timeout = TimeoutFor(req, e.ino);
      } else {
        p.attr.st_ino = e.ino;
        p.attr.st_mode = e.mode;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p,
                                 static_cast<off_t>(e.cookie));
      if (n > size - used) return false;
      if (!dot) fs.Ref(e.ino);  // the kernel holds a lookup reference for each entry
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = e.ino;
      st.st_mode = e.mode;
      n = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(), &st,
                            static_cast<off_t>(e.cookie));
      if (n > size - used) return false;
    }
    used += n;
    return true;
  });
  if (!s.ok()) return ReplyErr(req, s);
  if (!entry_error.ok() && used == 0) return ReplyErr(req, entry_error);
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { ReplyErrno(req, 0); }

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  // Namespace changes are in the metadata log; make it durable.
  ReplyErr(req, Fs(req).store().meta().SyncWal());
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  auto r = Fs(req).StatFs();
  if (!r.ok()) return ReplyErr(req, r.status());
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = st.f_frsize = r->block_size;
  st.f_blocks = r->blocks;
  st.f_bfree = r->blocks_free;
  st.f_bavail = r->blocks_avail;
  st.f_files = r->files;
  st.f_ffree = st.f_favail = r->files_free;
  st.f_namemax = r->name_max;
  fuse_reply_statfs(req, &st);
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  int f = 0;
  if (flags & XATTR_CREATE) f |= kXattrCreate;
  if (flags & XATTR_REPLACE) f |= kXattrReplace;
  ReplyErr(req, Fs(req).SetXattr(ino, name, std::string_view(value, size), f));
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = Fs(req).GetXattr(ino, name);
  if (!r.ok() && r.status().Is(Code::kNoData) && std::strcmp(name, "security.selinux") == 0) {
    // snapfs does not label files for SELinux (a FUSE mount is labeled as a whole, by
    // policy or the context= option). "Not supported" rather than "absent" lets tools
    // stop asking: `ls -l` asks for every file otherwise, one round trip each, while
    // coreutils remembers ENOTSUP per device. A label set explicitly is stored and
    // returned like any xattr.
    return (void)ReplyErrno(req, EOPNOTSUPP);
  }
  if (!r.ok()) return ReplyErr(req, r.status());
  if (size == 0) return (void)fuse_reply_xattr(req, r->size());
  if (size < r->size()) return (void)ReplyErrno(req, ERANGE);
  fuse_reply_buf(req, r->data(), r->size());
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto r = Fs(req).ListXattr(ino);
  if (!r.ok()) return ReplyErr(req, r.status());
  std::string all;
  for (const auto& n : *r) {
    all += n;
    all.push_back('\0');
  }
  if (size == 0) return (void)fuse_reply_xattr(req, all.size());
  if (size < all.size()) return (void)ReplyErrno(req, ERANGE);
  fuse_reply_buf(req, all.data(), all.size());
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  ReplyErr(req, Fs(req).RemoveXattr(ino, name));
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  if (flags != 0) return (void)ReplyErrno(req, EINVAL);
  auto r = Fs(req).CloneRange(fi_in->fh, static_cast<uint64_t>(off_in), fi_out->fh,
                              static_cast<uint64_t>(off_out), len);
  if (!r.ok()) return ReplyErr(req, r.status());
  fuse_reply_write(req, static_cast<size_t>(*r));
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  // Plain preallocation only (the space is not reserved: chunks are allocated when
  // written); punching holes and the like are not supported.
  if (mode != 0) return (void)ReplyErrno(req, EOPNOTSUPP);
  if (offset < 0 || length <= 0) return (void)ReplyErrno(req, EINVAL);
  SetAttrRequest r;
  r.set_size = true;
  r.grow_only = true;
  r.size = static_cast<uint64_t>(offset) + static_cast<uint64_t>(length);
  auto s = Fs(req).SetAttr(ino, r);
  if (!s.ok()) return ReplyErr(req, s.status());
  ReplyErrno(req, 0);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops o;
  std::memset(&o, 0, sizeof o);
  o.init = OpInit;
  o.destroy = OpDestroy;
  o.lookup = Instrumented<kLookup, OpLookup>::Call;
  o.forget = Instrumented<kForget, OpForget>::Call;
  o.forget_multi = Instrumented<kForgetMulti, OpForgetMulti>::Call;
  o.getattr = Instrumented<kGetattr, OpGetattr>::Call;
  o.setattr = Instrumented<kSetattr, OpSetattr>::Call;
  o.readlink = Instrumented<kReadlink, OpReadlink>::Call;
  o.mknod = Instrumented<kMknod, OpMknod>::Call;
  o.mkdir = Instrumented<kMkdir, OpMkdir>::Call;
  o.unlink = Instrumented<kUnlink, OpUnlink>::Call;
  o.rmdir = Instrumented<kRmdir, OpRmdir>::Call;
  o.symlink = Instrumented<kSymlink, OpSymlink>::Call;
  o.rename = Instrumented<kRename, OpRename>::Call;
  o.link = Instrumented<kLink, OpLink>::Call;
  o.open = Instrumented<kOpen, OpOpen>::Call;
  o.create = Instrumented<kCreate, OpCreate>::Call;
  o.read = Instrumented<kRead, OpRead>::Call;
  o.write = Instrumented<kWrite, OpWrite>::Call;
  o.flush = Instrumented<kFlush, OpFlush>::Call;
  o.release = Instrumented<kRelease, OpRelease>::Call;
  o.fsync = Instrumented<kFsync, OpFsync>::Call;
  o.opendir = Instrumented<kOpendir, OpOpendir>::Call;
  o.readdir = Instrumented<kReaddir, OpReaddir>::Call;
  o.readdirplus = Instrumented<kReaddirplus, OpReaddirplus>::Call;
  o.releasedir = Instrumented<kReleasedir, OpReleasedir>::Call;
  o.fsyncdir = Instrumented<kFsyncdir, OpFsyncdir>::Call;
  o.statfs = Instrumented<kStatfs, OpStatfs>::Call;
  o.setxattr = Instrumented<kSetxattr, OpSetxattr>::Call;
  o.getxattr = Instrumented<kGetxattr, OpGetxattr>::Call;
  o.listxattr = Instrumented<kListxattr, OpListxattr>::Call;
  o.removexattr = Instrumented<kRemovexattr, OpRemovexattr>::Call;
  o.copy_file_range = Instrumented<kCopyFileRange, OpCopyFileRange>::Call;
  o.fallocate = Instrumented<kFallocate, OpFallocate>::Call;
  return o;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  (void)M();  // the request metrics are exported from the start, as zeros
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace snapfs::fuse
