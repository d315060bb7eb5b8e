#include "fuse/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuse/errno_map.h"

namespace snapfs::fuse {

namespace {

FuseContext* Ctx(fuse_req_t req) { return static_cast<FuseContext*>(fuse_req_userdata(req)); }
Filesystem& Fs(fuse_req_t req) { return *Ctx(req)->fs; }

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

void ReplyErr(fuse_req_t req, const Status& s) { fuse_reply_err(req, ToErrno(s)); }

// The /.snapshots/ views change with snapshots, not through requests the kernel sees:
// it may cache them only briefly.
constexpr double kViewTimeout = 1.0;
double TimeoutFor(fuse_req_t req, uint64_t ino) {
  return ino >= kViewInoBase ? kViewTimeout : Ctx(req)->timeout;
}

// Replies with an entry and takes the lookup reference the kernel now holds.
void ReplyEntry(fuse_req_t req, const Attr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a.ino;
  e.generation = a.generation;
  e.attr = ToStat(a);
  e.attr_timeout = a.hidden ? 0 : TimeoutFor(req, a.ino);
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
  fuse_reply_attr(req, &st, TimeoutFor(req, r->ino));
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

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
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
  fuse_reply_err(req, ToErrno(Fs(req).Unlink(parent, name)));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ToErrno(Fs(req).Rmdir(parent, name)));
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  ReplyEntryResult(req, Fs(req).Symlink(link, parent, name, WhoAsks(req)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  fuse_reply_err(req, ToErrno(Fs(req).Rename(parent, name, newparent, newname, flags)));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ReplyEntryResult(req, Fs(req).Link(ino, newparent, newname));
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto r = Fs(req).Open(ino, CoreFlags(req, fi->flags));
  if (!r.ok()) return ReplyErr(req, r.status());
  fi->fh = *r;
  fi->keep_cache = 1;  // committed chunks never change; all writes come through this mount
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
  e.attr_timeout = e.entry_timeout = Ctx(req)->timeout;
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
  fuse_reply_buf(req, buf.get(), *r);
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info* fi) {
  auto r = Fs(req).Write(fi->fh, static_cast<uint64_t>(off), data, size);
  if (!r.ok()) return ReplyErr(req, r.status());
  fuse_reply_write(req, *r);
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fuse_reply_err(req, ToErrno(Fs(req).Flush(fi->fh)));
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fuse_reply_err(req, ToErrno(Fs(req).Release(fi->fh)));
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  fuse_reply_err(req, ToErrno(Fs(req).Fsync(fi->fh, datasync != 0)));
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto a = Fs(req).GetAttr(ino);
  if (!a.ok()) return ReplyErr(req, a.status());
  if (!S_ISDIR(a->mode)) return (void)fuse_reply_err(req, ENOTDIR);
  fi->fh = 0;
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  Filesystem& fs = Fs(req);
  Status s = fs.ReadDir(ino, static_cast<uint64_t>(off), [&](const DirEntry& e) {
    size_t n;
    if (plus) {
      fuse_entry_param p;
      std::memset(&p, 0, sizeof p);
      bool dot = e.name == "." || e.name == "..";
      if (!dot) {
        auto a = fs.GetAttr(e.ino);
        if (!a.ok()) return true;  // deleted meanwhile: skip it
        p.ino = e.ino;
        p.generation = a->generation;
        p.attr = ToStat(*a);
        p.attr_timeout = p.entry_timeout = TimeoutFor(req, e.ino);
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
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { fuse_reply_err(req, 0); }

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  // Namespace changes are in the metadata log; make it durable.
  fuse_reply_err(req, ToErrno(Fs(req).store().meta().SyncWal()));
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
  fuse_reply_err(req, ToErrno(Fs(req).SetXattr(ino, name, std::string_view(value, size), f)));
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = Fs(req).GetXattr(ino, name);
  if (!r.ok()) return ReplyErr(req, r.status());
  if (size == 0) return (void)fuse_reply_xattr(req, r->size());
  if (size < r->size()) return (void)fuse_reply_err(req, ERANGE);
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
  if (size < all.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, all.data(), all.size());
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  fuse_reply_err(req, ToErrno(Fs(req).RemoveXattr(ino, name)));
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  if (flags != 0) return (void)fuse_reply_err(req, EINVAL);
  auto r = Fs(req).CloneRange(fi_in->fh, static_cast<uint64_t>(off_in), fi_out->fh,
                              static_cast<uint64_t>(off_out), len);
  if (!r.ok()) return ReplyErr(req, r.status());
  fuse_reply_write(req, static_cast<size_t>(*r));
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  // Plain preallocation only: grow the size if needed (the space is not reserved: chunks
  // are allocated when written). Punching holes and the like are not supported.
  if (mode != 0) return (void)fuse_reply_err(req, EOPNOTSUPP);
  auto a = Fs(req).GetAttr(ino);
  if (!a.ok()) return ReplyErr(req, a.status());
  uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(length);
  if (end > a->size) {
    SetAttrRequest r;
    r.set_size = true;
    r.size = end;
    auto s = Fs(req).SetAttr(ino, r);
    if (!s.ok()) return ReplyErr(req, s.status());
  }
  fuse_reply_err(req, 0);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops o;
  std::memset(&o, 0, sizeof o);
  o.init = OpInit;
  o.destroy = OpDestroy;
  o.lookup = OpLookup;
  o.forget = OpForget;
  o.forget_multi = OpForgetMulti;
  o.getattr = OpGetattr;
  o.setattr = OpSetattr;
  o.readlink = OpReadlink;
  o.mknod = OpMknod;
  o.mkdir = OpMkdir;
  o.unlink = OpUnlink;
  o.rmdir = OpRmdir;
  o.symlink = OpSymlink;
  o.rename = OpRename;
  o.link = OpLink;
  o.open = OpOpen;
  o.create = OpCreate;
  o.read = OpRead;
  o.write = OpWrite;
  o.flush = OpFlush;
  o.release = OpRelease;
  o.fsync = OpFsync;
  o.opendir = OpOpendir;
  o.readdir = OpReaddir;
  o.readdirplus = OpReaddirplus;
  o.releasedir = OpReleasedir;
  o.fsyncdir = OpFsyncdir;
  o.statfs = OpStatfs;
  o.setxattr = OpSetxattr;
  o.getxattr = OpGetxattr;
  o.listxattr = OpListxattr;
  o.removexattr = OpRemovexattr;
  o.copy_file_range = OpCopyFileRange;
  o.fallocate = OpFallocate;
  return o;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace snapfs::fuse
