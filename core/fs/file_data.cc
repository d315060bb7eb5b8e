// FileData: open files and handles, the write buffer, reads and writes. Committing the
// buffer (flush, truncate, clone) is in file_commit.cc.
#include "core/fs/file_data.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/fs/namespace.h"

namespace snapfs {

FileData::FileData(Store* store, Namespace* ns)
    : meta_(store->meta()), chunks_(store->chunks()), chunker_(store->config().chunker), ns_(ns) {}

void OpenFile::AddDirty(uint64_t off, const char* data, size_t n, BufferPool* pool) {
  if (n == 0) return;
  const uint64_t end = off + n;
  auto it = dirty.upper_bound(off);
  if (it != dirty.begin()) {
    auto p = std::prev(it);
    if (p->first + p->second.size() >= off) it = p;
  }
  if (it == dirty.end() || it->first > end) {  // touches nothing: a range of its own
    // A large one (a WRITE the kernel sent ahead of the one before it) in a pooled
    // buffer: it is merged into its neighbour soon and given back. One that continues the
    // bytes in flight starts the stream's next range: a buffer it can grow in.
    std::string r;
    if (pool && n >= BufferPool::kMinSize) {
      auto f = inflight.lower_bound(off);
      const bool continues = f != inflight.begin() &&
                             std::prev(f)->first + std::prev(f)->second.size() == off;
      r = pool->Take(continues ? std::max(n, BufferPool::kCapacity) : n);
    }
    r.append(data, n);
    dirty.emplace(off, std::move(r));
    dirty_bytes += n;
    return;
  }
  // Every range from `it` up to `last` overlaps or touches [off, end) (ranges are disjoint
  // and not adjacent, so only the first can start before `off`): their union with the
  // write is contiguous and becomes one range, the new bytes over the old.
  auto last = it;
  const uint64_t ns = std::min(off, it->first);
  uint64_t ne = end;
  for (; last != dirty.end() && last->first <= end; ++last) {
    ne = std::max<uint64_t>(ne, last->first + last->second.size());
    dirty_bytes -= last->second.size();
  }
  std::string merged;
  auto j = it;
  if (it->first == ns) {
    // The first range starts the union: it grows in place (a stream of appends), keeping
    // its bytes before the write.
    merged = std::move(it->second);
    ++j;
    if (ns + merged.size() > end) {  // the write lies inside it: nothing else to merge
      std::memcpy(merged.data() + (off - ns), data, n);
    } else {
      merged.resize(off - ns);  // never grows here: no fill
    }
  }
  if (merged.size() < ne - ns && merged.capacity() < ne - ns) {
    // Grow once, into a pooled buffer when large (no reallocation at every doubling, no
    // page faults on fresh memory).
    // Geometric, as append's own growth: a stream of small writes (no writeback cache)
    // must not reallocate at every write.
    const size_t want = std::max<uint64_t>(ne - ns, 2 * merged.capacity());
    std::string b;
    if (pool && ne - ns >= BufferPool::kMinSize) {
      b = pool->Take(std::max(want, BufferPool::kCapacity));
    }
    b.reserve(want);
    b.append(merged);
    if (pool) pool->Give(std::move(merged));
    merged = std::move(b);
  }
  // Then the write, and the old bytes past it. `merged` holds [ns, off) here, or all of
  // the union when the write lay inside the first range.
  uint64_t at = ns + merged.size();
  if (at == off) {
    merged.append(data, n);
    at = end;
  }
  for (; j != last; ++j) {  // each starts at or before `end`
    const uint64_t js = j->first, je = js + j->second.size();
    if (je > at) {
      merged.append(j->second, at - js, je - at);
      at = je;
    }
    if (pool) pool->Give(std::move(j->second));
  }
  dirty.erase(it, last);
  dirty_bytes += merged.size();
  dirty.emplace(ns, std::move(merged));
}

void OpenFile::AddUnder(uint64_t off, std::string&& bytes, BufferPool* pool) {
  if (bytes.empty()) return;
  const uint64_t end = off + bytes.size();
  // The gaps of [off, end) between the buffered ranges, found before any is added (each
  // AddDirty may merge ranges).
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  uint64_t at = off;
  auto it = dirty.upper_bound(off);
  if (it != dirty.begin() && std::prev(it)->first + std::prev(it)->second.size() > off) --it;
  for (; it != dirty.end() && it->first < end; ++it) {
    if (it->first > at) gaps.emplace_back(at, it->first);
    at = std::max<uint64_t>(at, it->first + it->second.size());
  }
  if (at < end) gaps.emplace_back(at, end);
  if (gaps.size() == 1 && gaps[0] == std::make_pair(off, end)) {
    // Nothing newer overlaps it (the common case: a flight's held-back tail, with the
    // writes since then starting where it ends): it becomes a range of its own, beside
    // its neighbours, without a copy of them.
    dirty_bytes += bytes.size();
    dirty.emplace(off, std::move(bytes));
    return;
  }
  for (auto [from, to] : gaps) AddDirty(from, bytes.data() + (from - off), to - from, pool);
  if (pool) pool->Give(std::move(bytes));
}

namespace {
// The file's lock as condition_variable_any wants it (BasicLockable); the caller holds it
// exclusively around the wait.
struct ExclusiveLockable {
  SharedMutex* mu;
  void lock() NO_THREAD_SAFETY_ANALYSIS { mu->Lock(); }
  void unlock() NO_THREAD_SAFETY_ANALYSIS { mu->Unlock(); }
};
}  // namespace

void OpenFile::WaitFlight() {
  ExclusiveLockable l{&mu};
  while (flushing) flight_done.wait(l);
}

Status OpenFile::EnsureLoaded(MetaStore& meta) {
  if (loaded) return Status::OK();
  std::string v;
  RETURN_IF_ERROR(meta.Get(Cf::kInodes, keys::Ino(ino), &v));
  ASSIGN_OR_RETURN(auto node, Inode::Decode(ino, v));
  size = committed_size = node.size;
  mtime_ns = node.mtime_ns;
  loaded = true;
  return Status::OK();
}

// ---- handles ----

std::shared_ptr<OpenFile> FileData::FindOpenFile(uint64_t ino) {
  MutexLock l(&files_mu_);
  auto it = open_files_.find(ino);
  if (it == open_files_.end()) return nullptr;
  return it->second.lock();
}

std::shared_ptr<OpenFile> FileData::OpenFileFor(uint64_t ino) {
  MutexLock l(&files_mu_);
  auto& w = open_files_[ino];
  if (auto f = w.lock()) return f;
  auto f = std::shared_ptr<OpenFile>(new OpenFile(ino), [this](OpenFile* p) {
    {
      MutexLock l(&files_mu_);
      auto it = open_files_.find(p->ino);
      if (it != open_files_.end() && it->second.expired()) open_files_.erase(it);
    }
    delete p;
  });
  w = f;
  return f;
}

Result<FileData::Handle> FileData::GetHandle(FileHandle fh) {
  MutexLock l(&files_mu_);
  auto it = handles_.find(fh);
  if (it == handles_.end()) return Status::BadHandle();
  return it->second;
}

Result<FileHandle> FileData::Open(const Inode& node, int flags, MarkerAt marker) {
  int acc = flags & O_ACCMODE;
  if (node.is_dir()) {
    if (acc != O_RDONLY) return Status::IsDirectory();
  } else if (!node.is_reg()) {
    return Status::NotSupported("open of a special file");
  }
  auto f = OpenFileFor(node.ino);
  {
    WriterMutexLock l(&f->mu);
    if (node.is_reg()) RETURN_IF_ERROR(f->EnsureLoaded(meta_));
  }
  if ((flags & O_TRUNC) && acc != O_RDONLY && node.is_reg()) {
    WriterMutexLock l(&f->mu);
    if (f->size != 0 || !f->dirty.empty()) {
      RETURN_IF_ERROR(FlushLocked(f.get(), true, false));
      RETURN_IF_ERROR(TruncateLocked(f.get(), 0, NowNs()));
    }
  }
  // A reference first: the inode must not be purged while the handle exists.
  ns_->Ref(node.ino, 1, /*open=*/true);
  MutexLock l(&files_mu_);
  if (marker.parent == 0 && acc != O_RDONLY && node.is_reg()) {
    if (auto it = failed_markers_.find(node.ino); it != failed_markers_.end()) {
      marker = std::move(it->second);
      failed_markers_.erase(it);
    }
  }
  return AddHandleLocked(node.ino, flags, std::move(f), std::move(marker));
}

FileHandle FileData::OpenCreated(uint64_t ino, int64_t mtime_ns, int flags) {
  auto f = OpenFileFor(ino);
  {
    WriterMutexLock l(&f->mu);
    if (!f->loaded) {
      f->size = f->committed_size = 0;
      f->mtime_ns = mtime_ns;
      f->no_extents = true;
      f->loaded = true;
    }
  }
  ns_->Ref(ino, 1, /*open=*/true);
  MutexLock l(&files_mu_);
  return AddHandleLocked(ino, flags, std::move(f), MarkerAt{});
}

FileHandle FileData::AddHandleLocked(uint64_t ino, int flags, std::shared_ptr<OpenFile> f,
                                     MarkerAt marker) {
  FileHandle fh = next_fh_++;
  if ((flags & O_ACCMODE) != O_RDONLY) f->writers++;
  handles_[fh] = Handle{ino, flags, std::move(f), std::move(marker)};
  return fh;
}

bool FileData::OpenForWriting(uint64_t ino) {
  auto f = FindOpenFile(ino);
  return f && f->writers.load() > 0;
}

void FileData::SetMarker(FileHandle fh, uint64_t parent, std::string_view name) {
  MutexLock l(&files_mu_);
  auto it = handles_.find(fh);
  if (it == handles_.end()) return;
  it->second.marker = MarkerAt{parent, std::string(name)};
}

Result<FileData::Flushed> FileData::Release(FileHandle fh) {
  Handle h;
  {
    MutexLock l(&files_mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Status::BadHandle();
    h = std::move(it->second);
    handles_.erase(it);
  }
  if ((h.flags & O_ACCMODE) != O_RDONLY) h.file->writers--;
  Flushed r{h.ino, std::move(h.marker), Status::OK()};
  {
    WriterMutexLock l(&h.file->mu);
    r.status = FlushLocked(h.file.get(), true, false);
  }
  if (!r.status.ok() && r.marker.parent) {
    MutexLock l(&files_mu_);
    failed_markers_[h.ino] = r.marker;
  }
  return r;
}

Result<FileData::Flushed> FileData::Flush(FileHandle fh) {
  ASSIGN_OR_RETURN(auto h, GetHandle(fh));
  WriterMutexLock l(&h.file->mu);
  RETURN_IF_ERROR(FlushLocked(h.file.get(), true, false));
  return Flushed{h.ino, std::move(h.marker), Status::OK()};
}

Status FileData::Fsync(FileHandle fh, bool datasync) {
  ASSIGN_OR_RETURN(auto h, GetHandle(fh));
  WriterMutexLock l(&h.file->mu);
  return FlushLocked(h.file.get(), true, true);
}

Status FileData::FlushAll() {
  std::vector<std::shared_ptr<OpenFile>> files;
  {
    MutexLock l(&files_mu_);
    for (auto& [ino, w] : open_files_)
      if (auto f = w.lock()) files.push_back(f);
  }
  Status first;
  for (auto& f : files) {
    WriterMutexLock l(&f->mu);
    Status s = FlushLocked(f.get(), true, false);
    if (first.ok() && !s.ok()) first = s;
  }
  Status s = meta_.SyncWal();
  return first.ok() ? s : first;
}

// ---- reading ----

Status FileData::ReadLocked(OpenFile* f, uint64_t offset, size_t n, char* buf, size_t* got) {
  if (!f->loaded) return Status::BadHandle("file state not loaded");
  *got = 0;
  if (offset >= f->size) return Status::OK();
  n = static_cast<size_t>(std::min<uint64_t>(n, f->size - offset));
  uint64_t end = offset + n;
  // Committed data exists only below committed_size (a truncate may have grown the file).
  if (offset < f->committed_size) {
    size_t cn = static_cast<size_t>(std::min<uint64_t>(end, f->committed_size) - offset);
    Status s = ReadCommitted(f->ino, offset, cn, buf);
    // While this file's flight commits, an extent this read found may be replaced, and
    // its chunk then collected, before the read gets to it: the bytes it held are the
    // flight's (overlaid below), and a second look finds the flight's extents instead.
    for (int i = 0; i < 3 && s.Is(Code::kNotFound) && f->flushing; i++) {
      s = ReadCommitted(f->ino, offset, cn, buf);
    }
    RETURN_IF_ERROR(s);
    if (cn < n) std::memset(buf + cn, 0, n - cn);
  } else {
    std::memset(buf, 0, n);
  }
  // Buffered bytes over them: a flight's, then the newer ones.
  for (const auto* ranges : {&f->inflight, &f->dirty}) {
    auto it = ranges->upper_bound(offset);
    if (it != ranges->begin()) --it;
    for (; it != ranges->end() && it->first < end; ++it) {
      uint64_t rs = it->first, re = rs + it->second.size();
      uint64_t from = std::max(offset, rs), to = std::min(end, re);
      if (from < to) std::memcpy(buf + (from - offset), it->second.data() + (from - rs), to - from);
    }
  }
  *got = n;
  return Status::OK();
}

Result<size_t> FileData::Read(FileHandle fh, uint64_t offset, size_t n, char* buf) {
  ASSIGN_OR_RETURN(auto h, GetHandle(fh));
  if ((h.flags & O_ACCMODE) == O_WRONLY) return Status::BadHandle("not open for reading");
  ReaderMutexLock l(&h.file->mu);  // Open loaded the file: reads change nothing
  size_t got = 0;
  RETURN_IF_ERROR(ReadLocked(h.file.get(), offset, n, buf, &got));
  return got;
}

// ---- writing ----

Result<size_t> FileData::Write(FileHandle fh, uint64_t offset, const char* data, size_t n) {
  ASSIGN_OR_RETURN(auto h, GetHandle(fh));
  if ((h.flags & O_ACCMODE) == O_RDONLY) return Status::BadHandle("not open for writing");
  if (n == 0) return size_t{0};  // POSIX: no other effect, even past EOF
  OpenFile* f = h.file.get();
  WriterMutexLock l(&f->mu);
  RETURN_IF_ERROR(f->EnsureLoaded(meta_));
  if (h.flags & O_APPEND) offset = f->size;
  if (offset + n > kMaxFileSize || offset + n < offset) return Status::FileTooBig();
  f->AddDirty(offset, data, n, &pool_);
  f->size = std::max<uint64_t>(f->size, offset + n);
  f->mtime_ns = NowNs();
  f->attr_dirty = true;
  if (f->dirty_bytes < f->flush_at) return n;
  constexpr size_t kBound = 2 * OpenFile::kFlushThreshold;
  // The threshold flush runs in the background (a flight), so that this WRITE and the
  // next ones are taken while the last bytes are chunked, hashed, written to the pack
  // and committed. A writer faster than that waits here, which bounds the buffer at
  // kBound plus one flight.
  if (f->flushing && f->dirty_bytes >= kBound) f->WaitFlight();
  if (f->flushing) return n;
  if (!f->flight_failed && f->held_back < kBound / 2) {
    StartFlight(f, h.file);
    return n;
  }
  // In this thread: the last flight failed (its error must reach a WRITE: ENOSPC, EIO),
  // or it kept much buffered. Held-back tails and islands waiting for a gap to fill
  // normally resolve within the kernel's window of in-flight writes; if they don't (a
  // sparse writer), commit all rather than keep buffering.
  RETURN_IF_ERROR(FlushLocked(f, /*all=*/false, /*sync=*/false));
  if (f->dirty_bytes >= kBound) RETURN_IF_ERROR(FlushLocked(f, /*all=*/true, /*sync=*/false));
  return n;
}

// ---- attributes ----

Status FileData::SetAttr(const Inode& node, const SetAttrRequest& req, int64_t now) {
  std::shared_ptr<OpenFile> f;
  if (node.is_reg()) f = req.set_size ? OpenFileFor(node.ino) : FindOpenFile(node.ino);
  if (f) {
    WriterMutexLock l(&f->mu);
    return SetAttrLocked(f.get(), node, req, now);
  }
  if (req.set_size) {
    if (node.is_dir()) return Status::IsDirectory();
    return Status::InvalidArgument("truncate of a special file");
  }
  if (!req.ChangesMetadata()) return Status::OK();
  return ns_->ChangeAttrs(node.ino, req, now).status();
}

Status FileData::SetAttrLocked(OpenFile* f, const Inode& node, const SetAttrRequest& req,
                               int64_t now) {
  // A flight commits the mtime of its writes: an explicit one set meanwhile would be
  // overwritten by it.
  f->WaitFlight();
  if (req.set_size) {
    // A truncate works on committed data. Other changes leave the buffer alone (the
    // kernel's writeback cache sets times in the middle of streamed writes, and a
    // flush there would cut a chunk at an arbitrary point).
    RETURN_IF_ERROR(FlushLocked(f, /*all=*/true, /*sync=*/false));
    if (req.size > kMaxFileSize) return Status::FileTooBig();
    RETURN_IF_ERROR(f->EnsureLoaded(meta_));
    if (!req.grow_only || req.size > f->size) RETURN_IF_ERROR(TruncateLocked(f, req.size, now));
  }
  if (!req.ChangesMetadata()) return Status::OK();
  ASSIGN_OR_RETURN(Inode n, ns_->ChangeAttrs(node.ino, req, now));
  // The buffer's pending mtime must not overwrite an explicit one at the next flush.
  if (f->loaded && req.set_mtime) f->mtime_ns = n.mtime_ns;
  return Status::OK();
}

Result<std::string> FileData::ReadFile(uint64_t ino, uint64_t limit) {
  if (auto f = FindOpenFile(ino)) {
    WriterMutexLock l(&f->mu);
    RETURN_IF_ERROR(FlushLocked(f.get(), true, false));
  }
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(ino));
  if (!node.is_reg()) return Status::InvalidArgument("not a regular file");
  std::string bytes(std::min(node.size, limit), '\0');
  RETURN_IF_ERROR(ReadCommitted(ino, 0, bytes.size(), bytes.data()));
  return bytes;
}

Result<std::string> FileData::GetCapabilityXattr(
    uint64_t ino, const std::function<Result<std::string>()>& read) {
  std::shared_ptr<OpenFile> open = FindOpenFile(ino);
  if (!open) return read();
  const uint64_t gen = open->xattr_gen.load();
  if (open->caps_absent_at.load() == gen + 1) return Status::NoData();
  auto v = read();
  // Remembered for the generation read before asking: a change meanwhile voids it.
  if (v.status().Is(Code::kNoData)) open->caps_absent_at.store(gen + 1);
  return v;
}

void FileData::XattrsChanged(uint64_t ino) {
  if (auto f = FindOpenFile(ino)) f->xattr_gen.fetch_add(1);
}

Attr FileData::ToAttr(const Inode& i) {
  Attr a;
  a.ino = i.ino;
  a.mode = i.mode;
  a.nlink = i.nlink;
  a.uid = i.uid;
  a.gid = i.gid;
  a.rdev = i.rdev;
  a.size = i.size;
  a.atime_ns = i.atime_ns;
  a.mtime_ns = i.mtime_ns;
  a.ctime_ns = i.ctime_ns;
  a.generation = std::max<uint32_t>(1, i.generation);
  uint64_t allocated = i.allocated;
  if (i.is_reg()) {
    if (auto f = FindOpenFile(i.ino)) {
      ReaderMutexLock l(&f->mu);
      if (f->loaded) {
        a.size = f->size;
        if (f->attr_dirty) a.mtime_ns = a.ctime_ns = f->mtime_ns;
        allocated += f->dirty_bytes + f->inflight_bytes;
      }
    }
  } else if (i.is_symlink()) {
    a.size = i.target.size();
  }
  a.blocks = (allocated + 511) / 512;
  return a;
}

}  // namespace snapfs
