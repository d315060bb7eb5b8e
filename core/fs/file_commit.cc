// FileData: committing buffered bytes. A flush re-chunks the buffered regions and
// commits chunks, extents (with their refcounts) and the inode in one transaction;
// truncate and clone do the same for their changes. Reads of committed data are here
// too, as they find extents the same way (docs/write-path.md).
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <span>
#include <vector>

#include "base/coding.h"
#include "base/log.h"
#include "core/chunks/chunk_store.h"
#include "core/fs/extent_map.h"
#include "core/fs/file_data.h"
#include "core/fs/namespace.h"
#include "core/meta/kv.h"

namespace snapfs {

namespace {

struct Extent {
  uint64_t offset = 0;
  ExtentValue v;
  uint64_t end() const { return offset + v.length; }
};

// An iterator over the extents of `ino` that start before `end`. Every extent scan is
// bounded: a file rewritten in place leaves the keys of the extents it replaced deleted
// in the engine (RocksDB keeps them until a compaction), and an unbounded scan that found
// no live key where it stopped caring went on over every deleted key after it, to the
// end of the file's range and into the next file's (docs/reliability.md, finding 25).
std::unique_ptr<kv::Iterator> ExtentsBefore(MetaStore& meta, uint64_t ino, uint64_t end) {
  return meta.NewBoundedIterator(Cf::kExtents, keys::Extent(ino, end));
}
// The same, to the end of the file: one iterator (one snapshot; with a remote engine,
// one connection) serves every lookup of a flush.
std::unique_ptr<kv::Iterator> AllExtents(MetaStore& meta, uint64_t ino) {
  return meta.NewBoundedIterator(Cf::kExtents, keys::Ino(ino + 1));
}

// The extent covering `off` (offset <= off < end), if any; `it` (bounded to the file's
// extents, or tighter) is left on it. An extent is one chunk, at most the store's max
// chunk size long, so the one covering `off` starts after off - max_len: a forward scan
// of that window finds it (the metadata engine interface has forward iterators only).
// An unreadable window is an error, never "no extent": that would read as a hole of
// zeros.
Result<bool> ExtentCovering(kv::Iterator* it, uint64_t ino, uint64_t off, uint32_t max_len,
                            Extent* out) {
  uint64_t from = off >= max_len ? off - max_len + 1 : 0;
  for (it->Seek(keys::Extent(ino, from)); it->Valid(); it->Next()) {
    uint64_t at = GetBE64(it->key().data() + 8);
    if (at > off) return false;
    ASSIGN_OR_RETURN(auto v, ExtentValue::Decode(it->value()));
    if (at + v.length > off) {
      out->offset = at;
      out->v = v;
      return true;
    }
  }
  RETURN_IF_ERROR(it->status().WithContext("scan extents"));
  return false;
}

// The inode update of a commit that sets the size (truncate, clone): extents added or
// dropped change `allocated` by `allocated_delta`; mtime and ctime become `now`.
std::function<void(Inode*)> Resized(uint64_t size, int64_t allocated_delta, int64_t now) {
  return [=](Inode* node) {
    node->size = size;
    node->allocated =
        static_cast<uint64_t>(static_cast<int64_t>(node->allocated) + allocated_delta);
    node->mtime_ns = node->ctime_ns = now;
  };
}

// The bytes of a region to chunk: one buffer, or adjacent buffered ranges read as one
// without being copied together (after a flight, its held-back tail and the writes made
// meanwhile are two ranges: assembling them copied the newer one whole, up to 16 MiB per
// flight). A chunk that spans two pieces is copied into a small buffer of its own.
class RegionBytes {
 public:
  void Add(std::string_view piece) {
    if (piece.empty()) return;
    pieces_.push_back({size_, piece});
    size_ += piece.size();
  }
  size_t size() const { return size_; }

  // [pos, pos + n) as one span (pos + n <= size()). Calls must not go back in `pos`.
  std::span<const uint8_t> Span(size_t pos, size_t n) {
    while (pieces_[at_].start + pieces_[at_].bytes.size() <= pos) at_++;
    const Piece& p = pieces_[at_];
    if (pos + n <= p.start + p.bytes.size()) return AsSpan(p.bytes.substr(pos - p.start, n));
    stitches_.push_back(Copy(pos, n));
    return AsSpan(stitches_.back());
  }
  // A copy of [pos, pos + n).
  std::string Copy(size_t pos, size_t n) const {
    std::string out;
    out.reserve(n);
    for (const Piece& p : pieces_) {
      const size_t pe = p.start + p.bytes.size();
      if (pe <= pos || out.size() == n) continue;
      const size_t from = std::max(pos, p.start) - p.start;
      out.append(p.bytes.substr(from, n - out.size()));
    }
    return out;
  }

 private:
  struct Piece {
    size_t start;
    std::string_view bytes;
  };
  static std::span<const uint8_t> AsSpan(std::string_view v) {
    return {reinterpret_cast<const uint8_t*>(v.data()), v.size()};
  }
  std::vector<Piece> pieces_;
  size_t size_ = 0;
  size_t at_ = 0;                    // the piece the last Span started in
  std::deque<std::string> stitches_;  // chunks that span pieces (a deque: they never move)
};

}  // namespace

Status FileData::ReadCommitted(uint64_t ino, uint64_t offset, size_t n, char* buf) {
  std::memset(buf, 0, n);  // holes read as zeros
  uint64_t end = offset + n;
  auto it = ExtentsBefore(meta_, ino, end);
  Extent e;
  ASSIGN_OR_RETURN(bool covered,
                   ExtentCovering(it.get(), ino, offset, chunker_.params().max_size, &e));
  if (!covered) it->Seek(keys::Extent(ino, offset));  // else: start at the covering extent
  return extent_map::CopyExtents(it.get(), chunks_, offset, n, buf);
}

Status FileData::CommitData(uint64_t ino, ChunkTxn* txn, bool sync,
                            const std::function<void(Inode*)>& update) {
  struct ReleaseOnExit {
    ChunkStore& c;
    ChunkTxn* t;
    ~ReleaseOnExit() { c.Release(t); }
  } release{chunks_, txn};
  // Pack bytes become durable before the metadata that points at them.
  if (txn->wrote_pack) RETURN_IF_ERROR(chunks_.Sync(*txn));
  // The namespace's mutex keeps this process's namespace transactions from conflicting
  // with the inode update needlessly; correctness is the transaction's: the inode and
  // every chunk entry it read are conflict-checked.
  MutexLock l(ns_->mu());
  std::string v;
  Status s = txn->kv->Get(Cf::kInodes, keys::Ino(ino), &v);
  if (s.Is(Code::kNotFound)) return Status::NotFound();
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(auto node, Inode::Decode(ino, v));
  update(&node);
  txn->kv->Put(Cf::kInodes, keys::Ino(ino), node.Encode());
  if (sync) meta_.CountLogSync();
  RETURN_IF_ERROR(txn->kv->Commit(sync));
  ns_->attr_cache().Committed(node);
  return Status::OK();
}

// Re-chunks the buffered regions of `f` and commits them. With `all` false (a threshold
// flush), bytes after a region's last content-defined cut stay buffered, and so do
// islands that start after a gap, so that cut points never depend on when (or in which
// order, with the kernel's writeback cache) data arrived.
Status FileData::FlushLocked(OpenFile* f, bool all, bool sync) {
  // A flight's bytes are neither buffered nor committed until it ends.
  f->WaitFlight();
  // A data commit conflicts when another transaction changed what it read (GC deleted a
  // chunk it deduplicated against, ...). A failed attempt leaves the buffer as it was, so
  // the flush simply runs again.
  return kv::RetryOnConflict([&] {
    f->mu.AssertHeld();
    return FlushOnce(f, all, sync);
  });
}

FileData::FlushFrom FileData::FromFile(const OpenFile& f) {
  f.mu.AssertHeld();
  return FlushFrom{f.ino, f.size, f.committed_size, f.mtime_ns, f.attr_dirty, f.no_extents};
}

Status FileData::FlushOnce(OpenFile* f, bool all, bool sync) {
  if (!f->loaded || (f->dirty.empty() && !f->attr_dirty)) {
    if (sync) RETURN_IF_ERROR(meta_.SyncWal());
    return Status::OK();
  }
  Committed out;
  Status st = CommitRanges(FromFile(*f), f->dirty, all, sync, &out);
  if (st.ok()) {
    for (auto& [off, bytes] : f->dirty) pool_.Give(std::move(bytes));  // committed: reusable
    f->dirty = std::move(out.keep);
    f->committed_size = out.committed_size;
    if (out.any) f->no_extents = false;
    f->flight_failed = false;
  }
  // Else nothing was committed and the buffer is as it was.
  f->dirty_bytes = 0;
  for (auto& [o, bytes] : f->dirty) f->dirty_bytes += bytes.size();
  f->held_back = f->dirty_bytes;
  f->attr_dirty = !f->dirty.empty() || !st.ok();
  // The next threshold flush waits until this much more has been written.
  f->flush_at = f->dirty_bytes + OpenFile::kFlushThreshold;
  return st;
}

void FileData::StartFlight(OpenFile* f, std::shared_ptr<OpenFile> owner) {
  f->inflight = std::move(f->dirty);
  f->dirty.clear();
  f->inflight_bytes = f->dirty_bytes;
  f->dirty_bytes = 0;
  f->flushing = true;
  flusher_.Submit([this, owner = std::move(owner), from = FromFile(*f)] { RunFlight(owner, from); });
}

// The flight's ranges, read without the file's lock (OpenFile::inflight says why that is
// safe).
static const std::map<uint64_t, std::string>& FlightRanges(const OpenFile& f) {
  return f.inflight;
}

void FileData::RunFlight(const std::shared_ptr<OpenFile>& f, const FlushFrom& from) {
  Committed out;
  Status st = kv::RetryOnConflict([&] {
    out = Committed{};
    return CommitRanges(from, FlightRanges(*f), /*all=*/false, /*sync=*/false, &out);
  });
  WriterMutexLock l(&f->mu);
  std::map<uint64_t, std::string> back;
  if (st.ok()) {
    f->committed_size = out.committed_size;
    if (out.any) f->no_extents = false;
    for (auto& [off, bytes] : f->inflight) pool_.Give(std::move(bytes));
    back = std::move(out.keep);
  } else {
    // Nothing committed: every byte goes back, under what was written meanwhile. The
    // next threshold flush then runs in a writer's thread and reports the error.
    SNAPFS_LOG_DEBUG("background flush of inode " + std::to_string(f->ino) + ": " +
                     st.ToString());
    back = std::move(f->inflight);
  }
  f->inflight.clear();
  f->inflight_bytes = 0;
  size_t kept = 0;
  for (auto& [off, bytes] : back) {
    kept += bytes.size();
    f->AddUnder(off, std::move(bytes), &pool_);
  }
  f->held_back = kept;
  f->attr_dirty = !f->dirty.empty() || !st.ok();
  f->flight_failed = !st.ok();
  // Counted from what the flight kept, not from the buffer: the writes made meanwhile
  // are due already (the next WRITE starts the next flight if they reach it).
  f->flush_at = kept + OpenFile::kFlushThreshold;
  f->flushing = false;
  f->flight_done.notify_all();
}

Status FileData::CommitRanges(const FlushFrom& from, const std::map<uint64_t, std::string>& ranges,
                              bool all, bool sync, Committed* out) {
  ChunkTxn txn(meta_.engine());
  int64_t allocated_delta = 0;
  // No iterator (its snapshot and seeks) for a file with no extents yet.
  std::unique_ptr<kv::Iterator> it;
  if (!from.no_extents) it = AllExtents(meta_, from.ino);
  std::map<uint64_t, std::string>& keep = out->keep;  // what stays buffered
  // Regions that had to be assembled (committed bytes around buffered ones), in pooled
  // buffers given back at the end; the others are chunked where they are buffered.
  std::vector<std::string> assembled;
  struct GiveBack {
    BufferPool& pool;
    std::vector<std::string>& bufs;
    ~GiveBack() {
      for (auto& b : bufs) pool.Give(std::move(b));
    }
  } give_back{pool_, assembled};

  Status st = [&]() -> Status {
    auto d = ranges.begin();
    while (d != ranges.end()) {
      // Expand the dirty range to the chunks it touches, and to the chunk it continues if
      // that one was cut by EOF rather than by content.
      uint64_t s = d->first, e = d->first + d->second.size();
      Extent x;
      bool anchored = s == 0;  // starts where a content-defined cut can be
      // The extent covering s, else the one ending exactly at s.
      const uint32_t max_len = chunker_.params().max_size;
      bool found = false;
      if (it) {
        ASSIGN_OR_RETURN(found, ExtentCovering(it.get(), from.ino, s, max_len, &x));
        if (!found && s > 0) {
          ASSIGN_OR_RETURN(found, ExtentCovering(it.get(), from.ino, s - 1, max_len, &x));
        }
      }
      if (found) {
        anchored = true;
        if (x.end() > s || !x.v.stable) s = x.offset;
      }
      auto end_of = [&](uint64_t end) -> Result<uint64_t> {
        if (!it) return end;
        Extent y;
        ASSIGN_OR_RETURN(bool covered, ExtentCovering(it.get(), from.ino, end - 1, max_len, &y));
        return covered && y.end() > end ? y.end() : end;
      };
      ASSIGN_OR_RETURN(e, end_of(e));
      auto last = std::next(d);
      while (last != ranges.end() && last->first <= e) {
        uint64_t le = last->first + last->second.size();
        if (le > e) {
          ASSIGN_OR_RETURN(e, end_of(le));
        }
        ++last;
      }
      if (!all && !anchored) {
        // An island after a gap: chunking it now would start at an arbitrary offset and
        // defeat dedup. It waits for the gap to fill, or for a full flush.
        for (auto j = d; j != last; ++j) keep.emplace(j->first, j->second);
        d = last;
        continue;
      }
      // Region bytes: committed data overlaid with the buffered writes. The common case of
      // streamed writes is buffered ranges that follow each other with nothing committed
      // in between or around: chunked where they are buffered.
      RegionBytes bytes;
      bool contiguous = s == d->first;
      for (auto j = d; contiguous && j != last; ++j) {
        auto nx = std::next(j);
        const uint64_t je = j->first + j->second.size();
        contiguous = nx == last ? je == e : nx->first == je;
      }
      if (contiguous) {
        for (auto j = d; j != last; ++j) bytes.Add(j->second);
      } else {
        std::string region;
        if (e - s >= BufferPool::kMinSize) region = pool_.Take(e - s);
        region.reserve(e - s);
        uint64_t at = s;
        auto fill_committed = [&](uint64_t to) -> Status {
          if (to <= at) return Status::OK();
          size_t old = region.size();
          region.resize(old + (to - at));  // zeros for holes and beyond the committed end
          uint64_t cend = std::min<uint64_t>(to, from.committed_size);
          if (at < cend) RETURN_IF_ERROR(ReadCommitted(from.ino, at, cend - at, region.data() + old));
          at = to;
          return Status::OK();
        };
        for (auto j = d; j != last; ++j) {
          RETURN_IF_ERROR(fill_committed(j->first));
          region.append(j->second);
          at = j->first + j->second.size();
        }
        RETURN_IF_ERROR(fill_committed(e));
        assembled.push_back(std::move(region));
        bytes.Add(assembled.back());
      }
      // Old extents inside the region go.
      uint64_t old_end = s;  // end of the last committed extent in the region
      if (it) {
        for (it->Seek(keys::Extent(from.ino, s)); it->Valid(); it->Next()) {
          uint64_t off = GetBE64(it->key().data() + 8);
          if (off >= e) break;
          ASSIGN_OR_RETURN(auto v, ExtentValue::Decode(it->value()));
          extent_map::Remove(*txn.kv, from.ino, off, v);
          allocated_delta -= v.length;
          old_end = off + v.length;
        }
        RETURN_IF_ERROR(it->status().WithContext("scan extents"));
      }
      // New chunks. Held-back bytes may only be bytes that replace no committed extent:
      // committed bytes never leave the store before their replacement is committed.
      const uint32_t max_chunk = chunker_.params().max_size;
      size_t pos = 0, n = bytes.size();
      std::vector<std::span<const uint8_t>> cuts;
      std::vector<bool> stables;
      while (pos < n) {
        // The chunker looks at max_chunk bytes at most.
        std::span<const uint8_t> next = bytes.Span(pos, std::min<size_t>(n - pos, max_chunk));
        // A cut is stable when the chunker chose it from the content (or hit max_size); a
        // cut forced by the end of the data is not, and is re-chunked when data follows.
        size_t cut = chunker_.NextCut(next.data(), next.size(), /*at_eof=*/all);
        bool stable = !all || cut < n - pos || cut == max_chunk;
        if (cut == 0) {
          if (s + pos >= old_end) break;
          cut = chunker_.NextCut(next.data(), next.size(), /*at_eof=*/true);
          stable = false;
        }
        cuts.push_back(next.first(cut));
        stables.push_back(stable);
        pos += cut;
      }
      // All chunks of the region at once: one index read for all of them.
      ASSIGN_OR_RETURN(auto ids, chunks_.PutMany(cuts, &txn));
      uint64_t at = s;
      for (size_t i = 0; i < cuts.size(); i++) {
        const auto len = static_cast<uint32_t>(cuts[i].size());
        extent_map::Put(*txn.kv, from.ino, at, ExtentValue{ids[i], len, stables[i]});
        allocated_delta += len;
        at += len;
      }
      if (!cuts.empty()) out->any = true;
      if (pos < n) keep.emplace(s + pos, bytes.Copy(pos, n - pos));
      d = last;
    }
    return Status::OK();
  }();
  RETURN_IF_ERROR(st);

  // A buffered range at the end of the file is not part of the committed size: after a
  // crash the file ends where its committed data does.
  out->committed_size = from.size;
  if (!keep.empty()) {
    auto tail = std::prev(keep.end());
    if (tail->first + tail->second.size() == from.size) {
      // Never below what was committed before (e.g. a size grown by truncate).
      out->committed_size = std::max<uint64_t>(tail->first, from.committed_size);
    }
  }
  return CommitData(from.ino, &txn, sync, [&](Inode* node) {
    node->size = out->committed_size;
    node->allocated =
        static_cast<uint64_t>(static_cast<int64_t>(node->allocated) + allocated_delta);
    if (from.attr_dirty) {
      node->mtime_ns = from.mtime_ns;
      node->ctime_ns = std::max(node->ctime_ns, from.mtime_ns);  // ctime never goes back
    }
  });
}

Status FileData::TruncateLocked(OpenFile* f, uint64_t size, int64_t now) {
  return kv::RetryOnConflict([&] {
    f->mu.AssertHeld();
    return TruncateOnce(f, size, now);
  });
}

Status FileData::TruncateOnce(OpenFile* f, uint64_t size, int64_t now) {
  RETURN_IF_ERROR(f->EnsureLoaded(meta_));
  ChunkTxn txn(meta_.engine());
  int64_t allocated_delta = 0;
  if (size < f->committed_size) {
    auto it = AllExtents(meta_, f->ino);
    Extent x;
    uint64_t from = size;
    ASSIGN_OR_RETURN(bool covered,
                     ExtentCovering(it.get(), f->ino, size, chunker_.params().max_size, &x));
    if (covered && x.offset < size) {
      // The chunk cut by the new end is replaced by its prefix.
      ASSIGN_OR_RETURN(auto data, chunks_.Get(x.v.id));
      size_t keep = static_cast<size_t>(size - x.offset);
      ASSIGN_OR_RETURN(
          auto id,
          chunks_.Put(std::span(reinterpret_cast<const uint8_t*>(data->data()), keep), &txn));
      extent_map::Remove(*txn.kv, f->ino, x.offset, x.v);
      extent_map::Put(*txn.kv, f->ino, x.offset, ExtentValue{id, static_cast<uint32_t>(keep)});
      allocated_delta += static_cast<int64_t>(keep) - x.v.length;
      from = x.end();
    }
    for (it->Seek(keys::Extent(f->ino, from)); it->Valid(); it->Next()) {
      ASSIGN_OR_RETURN(auto v, ExtentValue::Decode(it->value()));
      extent_map::Remove(*txn.kv, f->ino, GetBE64(it->key().data() + 8), v);
      allocated_delta -= v.length;
    }
    RETURN_IF_ERROR(it->status().WithContext("scan extents"));
  }
  RETURN_IF_ERROR(CommitData(f->ino, &txn, false, Resized(size, allocated_delta, now)));
  f->size = f->committed_size = size;
  f->mtime_ns = now;
  f->attr_dirty = false;
  return Status::OK();
}

// ---- clone ----

namespace {
// Both files' locks for a clone, the lower inode number first (one lock when both are
// the same file), with neither file's flight running: a flight ends under its file's
// lock, so waiting for one (FlushLocked) while holding the other file's lock would take
// the two locks in the wrong order and could deadlock with a second clone of the pair.
// So each flight is waited for with only its own file's lock, and the pair is taken again
// until neither runs one (no flight can start while both are held: it starts in a WRITE,
// under its file's lock). The analysis cannot follow the branches: it is told what is
// held.
class SCOPED_CAPABILITY FilePairLock {
 public:
  FilePairLock(OpenFile* a, OpenFile* b) ACQUIRE(a->mu, b->mu) NO_THREAD_SAFETY_ANALYSIS
      : first_(a->ino <= b->ino ? a : b),
        second_(a->ino <= b->ino ? b : a) {
    for (;;) {
      first_->mu.Lock();
      if (second_ != first_) second_->mu.Lock();
      if (!first_->flushing && !second_->flushing) return;
      if (second_ != first_) second_->mu.Unlock();
      first_->mu.Unlock();
      for (OpenFile* f : {first_, second_}) {
        f->mu.Lock();
        f->WaitFlight();
        f->mu.Unlock();
      }
    }
  }
  ~FilePairLock() RELEASE() NO_THREAD_SAFETY_ANALYSIS {
    if (second_ != first_) second_->mu.Unlock();
    first_->mu.Unlock();
  }
  FilePairLock(const FilePairLock&) = delete;
  FilePairLock& operator=(const FilePairLock&) = delete;

 private:
  OpenFile* const first_;
  OpenFile* const second_;
};
}  // namespace

Result<uint64_t> FileData::CloneRange(FileHandle src_fh, uint64_t src_off, FileHandle dst_fh,
                                      uint64_t dst_off, uint64_t n) {
  ASSIGN_OR_RETURN(auto src, GetHandle(src_fh));
  ASSIGN_OR_RETURN(auto dst, GetHandle(dst_fh));
  if ((src.flags & O_ACCMODE) == O_WRONLY) return Status::BadHandle("source not readable");
  if ((dst.flags & O_ACCMODE) == O_RDONLY) return Status::BadHandle("target not writable");
  if (dst.flags & O_APPEND) return Status::BadHandle("target opened with O_APPEND");
  OpenFile* fs = src.file.get();
  OpenFile* fd = dst.file.get();
  if (dst_off + n > kMaxFileSize || dst_off + n < dst_off) return Status::FileTooBig();

  FilePairLock lock(fs, fd);
  RETURN_IF_ERROR(fs->EnsureLoaded(meta_));
  RETURN_IF_ERROR(fd->EnsureLoaded(meta_));
  if (src_off >= fs->size) return uint64_t{0};
  n = std::min<uint64_t>(n, fs->size - src_off);
  if (n == 0) return uint64_t{0};
  RETURN_IF_ERROR(FlushLocked(fs, true, false));
  if (fd != fs) RETURN_IF_ERROR(FlushLocked(fd, true, false));

  // Fast path: the target has no data at or after dst_off (cp --reflink into a new or
  // shorter file): whole source chunks are shared by adding extents; only the partial
  // chunks at the edges are copied.
  bool share = fd != fs && fd->committed_size <= dst_off;
  uint64_t copied_head_end = src_off, shared_end = src_off;
  if (share) {
    RETURN_IF_ERROR(kv::RetryOnConflict([&]() -> Status {
      fs->mu.AssertHeld();
      fd->mu.AssertHeld();
      return ShareChunks(fs, src_off, fd, dst_off, n, &copied_head_end, &shared_end);
    }));
  }
  // Everything not shared is copied through the buffer (and dedups on flush).
  auto copy = [&](uint64_t from, uint64_t to) -> Status {
    fs->mu.AssertHeld();
    fd->mu.AssertHeld();
    std::string buf;
    for (uint64_t o = from; o < to;) {
      size_t step = static_cast<size_t>(std::min<uint64_t>(to - o, 4 << 20));
      buf.resize(step);
      size_t got = 0;
      RETURN_IF_ERROR(ReadLocked(fs, o, step, buf.data(), &got));
      if (got < step) std::memset(buf.data() + got, 0, step - got);
      fd->AddDirty(dst_off + (o - src_off), buf.data(), step, nullptr);
      fd->size = std::max<uint64_t>(fd->size, dst_off + (o - src_off) + step);
      fd->mtime_ns = NowNs();
      fd->attr_dirty = true;
      if (fd->dirty_bytes >= OpenFile::kFlushThreshold)
        RETURN_IF_ERROR(FlushLocked(fd, true, false));
      o += step;
    }
    return Status::OK();
  };
  if (shared_end > src_off) {
    RETURN_IF_ERROR(copy(src_off, copied_head_end));
    RETURN_IF_ERROR(copy(shared_end, src_off + n));
  } else if (fs == fd) {
    // Overlapping ranges in one file: read everything first, then write.
    std::string all(n, '\0');
    size_t got = 0;
    RETURN_IF_ERROR(ReadLocked(fs, src_off, n, all.data(), &got));
    fd->AddDirty(dst_off, all.data(), n, nullptr);
    fd->size = std::max<uint64_t>(fd->size, dst_off + n);
    fd->mtime_ns = NowNs();
    fd->attr_dirty = true;
  } else {
    RETURN_IF_ERROR(copy(src_off, src_off + n));
  }
  RETURN_IF_ERROR(FlushLocked(fd, true, false));
  return n;
}

Status FileData::ShareChunks(OpenFile* fs, uint64_t src_off, OpenFile* fd, uint64_t dst_off,
                             uint64_t n, uint64_t* first_shared, uint64_t* shared_end) {
  ChunkTxn txn(meta_.engine());
  int64_t allocated_delta = 0;
  // Extents starting at src_off + n or later end after it.
  auto it = ExtentsBefore(meta_, fs->ino, src_off + n);
  uint64_t first_full = UINT64_MAX, last_full_end = 0;
  for (it->Seek(keys::Extent(fs->ino, src_off)); it->Valid(); it->Next()) {
    uint64_t off = GetBE64(it->key().data() + 8);
    ASSIGN_OR_RETURN(auto v, ExtentValue::Decode(it->value()));
    if (off + v.length > src_off + n) break;
    // Read the chunk's entry in the transaction: GC deleting it before we commit (the
    // source's last reference gone meanwhile) then conflicts.
    std::string loc;
    Status cs = txn.kv->Get(Cf::kChunks, keys::Chunk(v.id), &loc);
    if (cs.Is(Code::kNotFound)) return Status::Conflict("shared chunk collected meanwhile");
    RETURN_IF_ERROR(cs);
    if (first_full == UINT64_MAX) first_full = off;
    last_full_end = off + v.length;
    extent_map::Put(*txn.kv, fd->ino, dst_off + (off - src_off), v);
    allocated_delta += v.length;
  }
  RETURN_IF_ERROR(it->status().WithContext("scan extents"));
  if (first_full == UINT64_MAX) return Status::OK();
  uint64_t new_size = std::max<uint64_t>(fd->size, dst_off + (last_full_end - src_off));
  int64_t now = NowNs();
  RETURN_IF_ERROR(CommitData(fd->ino, &txn, false, Resized(new_size, allocated_delta, now)));
  fd->size = fd->committed_size = new_size;
  fd->mtime_ns = now;
  fd->no_extents = false;
  *first_shared = first_full;
  *shared_end = last_full_end;
  return Status::OK();
}

}  // namespace snapfs
