// FileData: the bytes of regular files. Open files and their handles, the per-inode
// write buffer (OpenFile), reads, flush and fsync, truncate, and clone.
//
// Writes go to a per-inode buffer shared by all handles of that inode; the buffer is
// chunked and committed on flush, fsync, release and when it grows past
// OpenFile::kFlushThreshold. Only the region touched by a write is re-chunked
// (docs/write-path.md). A commit is one ChunkTxn: the chunks (ChunkStore::Put), the
// extents and their refcounts (extent_map, the only writer of refcounts), and the
// inode's size, in one metadata engine transaction; pack bytes are synced before it
// commits; fsync also syncs the metadata log. A commit that conflicts puts everything
// back into the buffer and runs again.
//
// Snapshots are not this class's business: the Filesystem facade checks a file may
// change before opening it for writing, and commits a marker after its handle flushed
// (the marker a handle writes is carried with it, see Open).
//
// Thread-safety: thread-safe. files_mu_ (a leaf) guards the tables; each OpenFile's mu
// guards its buffer. Lock order: OpenFile::mu (ascending inode number when two are
// needed) before Namespace::mu() before files_mu_ and ChunkStore locks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/mutex.h"
#include "core/fs/flusher.h"
#include "core/fs/fs_types.h"
#include "core/fs/inode.h"
#include "core/fs/open_file.h"
#include "core/store.h"

namespace snapfs {

struct ChunkTxn;
class Namespace;

class FileData {
 public:
  // Where a handle's file is a snapshot marker: (parent, name) to commit it at when the
  // handle flushes; parent 0 for none.
  struct MarkerAt {
    uint64_t parent = 0;
    std::string name;
  };
  // What Flush and Release hand back: the handle's file and the marker it writes (the
  // caller commits it), and the flush's outcome (Release forgets the handle whatever it
  // is; the caller then drops the handle's reference, Namespace::Unref).
  struct Flushed {
    uint64_t ino = 0;
    MarkerAt marker;
    Status status;
  };

  FileData(Store* store, Namespace* ns);
  FileData(const FileData&) = delete;
  FileData& operator=(const FileData&) = delete;

  // Opens `node` (a regular file or a folder, as committed); `flags` are open(2) flags,
  // O_TRUNC truncates. Takes a reference on the inode (Namespace::Ref).
  Result<FileHandle> Open(const Inode& node, int flags, MarkerAt marker);
  // Opens a file this daemon has just created (empty, unpinned, no marker's snapshot):
  // nothing to read back from the metadata store.
  FileHandle OpenCreated(uint64_t ino, int64_t mtime_ns, int flags);
  // Whether a handle of this process has the file open for writing.
  bool OpenForWriting(uint64_t ino);
  // Makes the handle commit a snapshot at (parent, name) when it flushes.
  void SetMarker(FileHandle fh, uint64_t parent, std::string_view name) EXCLUDES(files_mu_);
  Result<size_t> Read(FileHandle fh, uint64_t offset, size_t n, char* buf);
  Result<size_t> Write(FileHandle fh, uint64_t offset, const char* data, size_t n);
  // Commits the handle's buffered data.
  Result<Flushed> Flush(FileHandle fh);
  Status Fsync(FileHandle fh, bool datasync);
  // Commits the data and forgets the handle (BadHandle if unknown).
  Result<Flushed> Release(FileHandle fh) EXCLUDES(files_mu_);
  // Makes dst's [dst_off, dst_off+n) a copy of src's [src_off, src_off+n), sharing every
  // chunk the range covers whole; only partial chunks at the edges are copied. Returns the
  // bytes copied (fewer than n if src ends first).
  Result<uint64_t> CloneRange(FileHandle src, uint64_t src_off, FileHandle dst, uint64_t dst_off,
                              uint64_t n);
  // The size part of setattr (a truncate, or growing with req.grow_only), then the rest
  // through Namespace::ChangeAttrs, under the file's lock.
  Status SetAttr(const Inode& node, const SetAttrRequest& req, int64_t now);
  // Commits every open file's buffered data and syncs the metadata log.
  Status FlushAll() EXCLUDES(files_mu_);
  // A whole file, buffered data included (committed first), up to `limit` bytes.
  Result<std::string> ReadFile(uint64_t ino, uint64_t limit);
  // The inode as a caller sees it: size, mtime and blocks include buffered writes.
  Attr ToAttr(const Inode& i);
  // security.capability of `ino`: NoData without asking `read` while the file is open
  // here and an earlier answer was NoData (see Filesystem::GetXattr); otherwise `read`'s
  // answer, remembered if it is NoData.
  Result<std::string> GetCapabilityXattr(uint64_t ino,
                                         const std::function<Result<std::string>()>& read);
  // After our own change of the file's xattrs: forgets what GetCapabilityXattr remembered.
  void XattrsChanged(uint64_t ino);

 private:
  struct Handle {
    uint64_t ino;
    int flags;
    std::shared_ptr<OpenFile> file;
    MarkerAt marker;
  };

  Result<Handle> GetHandle(FileHandle fh) EXCLUDES(files_mu_);
  // A new handle of `f` (Open, OpenCreated; the caller took the inode's reference).
  FileHandle AddHandleLocked(uint64_t ino, int flags, std::shared_ptr<OpenFile> f,
                             MarkerAt marker) REQUIRES(files_mu_);
  std::shared_ptr<OpenFile> OpenFileFor(uint64_t ino) EXCLUDES(files_mu_);
  std::shared_ptr<OpenFile> FindOpenFile(uint64_t ino) EXCLUDES(files_mu_);
  Status SetAttrLocked(OpenFile* f, const Inode& node, const SetAttrRequest& req, int64_t now)
      REQUIRES(f->mu);

  // Re-chunks the buffered regions and commits them (file_commit.cc), after the file's
  // flight if one runs.
  Status FlushLocked(OpenFile* f, bool all, bool sync) REQUIRES(f->mu);  // retries FlushOnce
  Status FlushOnce(OpenFile* f, bool all, bool sync) REQUIRES(f->mu);
  // The file as a commit of its buffered ranges starts from.
  struct FlushFrom {
    uint64_t ino = 0;
    uint64_t size = 0;
    uint64_t committed_size = 0;
    int64_t mtime_ns = 0;
    bool attr_dirty = false;
    bool no_extents = false;
  };
  static FlushFrom FromFile(const OpenFile& f) REQUIRES(f.mu);
  // What a commit of buffered ranges did.
  struct Committed {
    std::map<uint64_t, std::string> keep;  // bytes still to buffer (tails, islands)
    uint64_t committed_size = 0;           // the inode's size now
    bool any = false;                      // extents were written
  };
  // Chunks and commits `ranges` (a file's buffer, which it only reads) as FlushLocked
  // describes; the caller updates the OpenFile from `out` (nothing of it on an error:
  // then nothing was committed).
  Status CommitRanges(const FlushFrom& from, const std::map<uint64_t, std::string>& ranges,
                      bool all, bool sync, Committed* out);
  // A threshold flush in the background: the buffer becomes the file's flight
  // (OpenFile::inflight) and a flusher thread commits it (RunFlight). `owner` is `f`'s
  // shared pointer (the flight keeps the file alive).
  void StartFlight(OpenFile* f, std::shared_ptr<OpenFile> owner) REQUIRES(f->mu);
  void RunFlight(const std::shared_ptr<OpenFile>& f, const FlushFrom& from);
  Status ReadLocked(OpenFile* f, uint64_t offset, size_t n, char* buf, size_t* got)
      REQUIRES_SHARED(f->mu);
  Status ReadCommitted(uint64_t ino, uint64_t offset, size_t n, char* buf);
  // Sets the size of a file with an empty buffer (FlushLocked(all) ran).
  Status TruncateLocked(OpenFile* f, uint64_t size, int64_t now) REQUIRES(f->mu);
  Status TruncateOnce(OpenFile* f, uint64_t size, int64_t now) REQUIRES(f->mu);
  // Shares whole chunks of `src` into `dst` (which has no data at or after dst_off).
  Status ShareChunks(OpenFile* src, uint64_t src_off, OpenFile* dst, uint64_t dst_off, uint64_t n,
                     uint64_t* first_shared, uint64_t* shared_end) REQUIRES(src->mu, dst->mu);
  // Commits `txn` with the inode changed by `update`: pack bytes synced first.
  Status CommitData(uint64_t ino, ChunkTxn* txn, bool sync,
                    const std::function<void(Inode*)>& update);

  MetaStore& meta_;
  ChunkStore& chunks_;
  const Chunker chunker_;
  Namespace* const ns_;

  BufferPool pool_;  // large write buffers (buffer_pool.h)
  Mutex files_mu_;  // a leaf: never held while taking another lock
  std::unordered_map<uint64_t, std::weak_ptr<OpenFile>> open_files_ GUARDED_BY(files_mu_);
  std::unordered_map<FileHandle, Handle> handles_ GUARDED_BY(files_mu_);
  // Markers whose handle was released with its data not committed (the flush failed:
  // ENOSPC, EIO), by inode. The open of an existing file knows its inode, not its name,
  // so without this a marker whose first commit failed would never be committed by
  // writing it again in place (docs/reliability.md, finding 26): the next writable open
  // of the inode takes the marker over (Filesystem::Release commits it, and
  // CommitMarkerAt checks that the name still leads to the inode). Until a remount.
  std::unordered_map<uint64_t, MarkerAt> failed_markers_ GUARDED_BY(files_mu_);
  FileHandle next_fh_ GUARDED_BY(files_mu_) = 1;
  // Last: its destructor runs the flights still queued (they use everything above)
  // before anything else goes.
  Flusher flusher_;
};

}  // namespace snapfs
