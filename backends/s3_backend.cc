#include "backends/s3_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "backends/block_cache.h"
#include "backends/pack_file_io.h"
#include "backends/pack_names.h"
#include "base/log.h"

namespace snapfs {
namespace {

using pack_names::Hex;
using pack_names::ParseFileName;

Status SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open folder " + path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return PosixError("fsync folder " + path, err);
  return Status::OK();
}

// A pack in the spool folder. Shared by its writer, readers and the upload queue; the fd
// stays open while anyone holds it, so a reader racing with the upload's unlink still
// reads the bytes.
struct SpoolFile {
  SpoolFile(PackId i, std::string p, int f) : id(i), path(std::move(p)), fd(f) {}
  ~SpoolFile() {
    if (fd >= 0) ::close(fd);
  }
  const PackId id;
  const std::string path;
  const int fd;
  std::atomic<uint64_t> size{0};  // bytes appended (readable)
  // Set under S3BackendImpl::mu_.
  bool sealed = false;
  bool removed = false;    // Remove ran: do not upload; delete what an upload stored
  bool uploading = false;  // queued or in flight
  bool in_flight = false;  // an upload thread is sending it
};

class S3BackendImpl;

// Thread-safety: not thread-safe (PackWriter's contract).
class S3PackWriter final : public PackWriter {
 public:
  S3PackWriter(S3BackendImpl* backend, std::shared_ptr<SpoolFile> file)
      : backend_(backend), file_(std::move(file)) {}
  ~S3PackWriter() override;

  PackId id() const override { return file_->id; }
  uint64_t size() const override { return size_; }

  Result<uint64_t> Append(std::span<const uint8_t> data) override {
    const std::span<const uint8_t> parts[1] = {data};
    return AppendParts(parts);
  }

  Result<uint64_t> AppendParts(std::span<const std::span<const uint8_t>> parts) override {
    if (sealed_) return Status::InvalidArgument("append to sealed pack " + file_->path);
    const uint64_t offset = size_;
    if (int e = PwriteParts(file_->fd, parts, offset); e != 0) {
      tail_dirty_ = true;
      return PosixError("append to " + file_->path, e);
    }
    for (const auto& p : parts) size_ += p.size();
    file_->size.store(size_);
    return offset;
  }

  Status Sync() override {
    if (sealed_) return seal_status_;
    if (!sync_status_.ok()) return sync_status_;  // sticky, as in the local backend
    if (::fdatasync(file_->fd) != 0) {
      return sync_status_ = Status::IOError(PosixError("fdatasync " + file_->path, errno).message());
    }
    if (!name_durable_) {
      Status st = SyncDir(file_->path.substr(0, file_->path.rfind('/')));
      if (!st.ok()) return sync_status_ = Status::IOError(st.message());
      name_durable_ = true;
    }
    return Status::OK();
  }

  Status Seal() override;

 private:
  S3BackendImpl* const backend_;
  const std::shared_ptr<SpoolFile> file_;
  uint64_t size_ = 0;
  bool tail_dirty_ = false;
  bool name_durable_ = false;
  bool sealed_ = false;
  Status sync_status_;
  Status seal_status_;
};

class S3BackendImpl final : public S3Backend {
 public:
  S3BackendImpl(S3BackendOptions opts, std::unique_ptr<S3Client> client)
      : opts_(std::move(opts)), client_(std::move(client)) {
    key_prefix_ = opts_.prefix.empty() ? "packs/" : opts_.prefix + "/packs/";
  }

  ~S3BackendImpl() override {
    {
      std::lock_guard l(prefetch_mu_);
      prefetch_stop_ = true;
    }
    prefetch_cv_.notify_all();
    for (auto& t : prefetchers_) t.join();
    {
      std::unique_lock l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : uploaders_) t.join();
  }

  Status Start() {
    if (opts_.check_bucket) RETURN_IF_ERROR(client_->CheckBucket());
    if (!opts_.disk_cache_dir.empty()) {
      ASSIGN_OR_RETURN(disk_cache_, DiskBlockCache::Open(opts_.disk_cache_dir, opts_.disk_cache_bytes));
    }
    for (int i = 0; i < opts_.prefetch_threads; ++i) {
      prefetchers_.emplace_back([this] { PrefetchLoop(); });
    }
    if (::mkdir(opts_.spool_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return PosixError("create spool folder " + opts_.spool_dir, errno);
    }
    // Replay: every pack left in the spool is sealed now (ChunkStore never appends to a
    // pack from before a restart) and goes to the bucket.
    DIR* d = ::opendir(opts_.spool_dir.c_str());
    if (!d) return PosixError("list " + opts_.spool_dir, errno);
    std::vector<std::shared_ptr<SpoolFile>> found;
    while (const dirent* e = ::readdir(d)) {
      PackId id;
      if (!ParseFileName(e->d_name, &id)) continue;
      const std::string path = SpoolPath(id);
      int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) continue;
      auto f = std::make_shared<SpoolFile>(id, path, fd);
      struct stat st;
      if (::fstat(fd, &st) == 0) f->size.store(static_cast<uint64_t>(st.st_size));
      f->sealed = true;
      found.push_back(std::move(f));
    }
    ::closedir(d);
    {
      std::lock_guard l(mu_);
      for (auto& f : found) {
        spool_[f->id] = f;
        f->uploading = true;
        queue_.push_back(Queued{f, Clock::now(), false});
      }
    }
    if (!found.empty()) {
      SNAPFS_LOG_INFO("S3: uploading " + std::to_string(found.size()) +
                      " spooled pack(s) left from an earlier run");
    }
    for (int i = 0; i < std::max(1, opts_.upload_threads); ++i) {
      uploaders_.emplace_back([this] { UploadLoop(); });
    }
    return Status::OK();
  }

  std::string PackKey(PackId id) const override {
    return key_prefix_ + pack_names::Fanout(id) + "/" + pack_names::FileName(id);
  }

  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    {
      std::lock_guard l(mu_);
      if (spool_.count(id) || creating_.count(id)) {
        return Status::AlreadyExists("pack " + Hex(id, 16) + " exists (spooled)");
      }
      creating_.insert(id);
    }
    auto done = [&] {
      std::lock_guard l(mu_);
      creating_.erase(id);
    };
    // A guard against bugs only (ids come from the store's counter): when the bucket
    // cannot be asked, the pack is made anyway, so that writes go on into the spool while
    // the object store is down (docs/s3.md); the upload's If-None-Match guards the same.
    auto head = client_->Head(PackKey(id));
    if (head.ok()) {
      done();
      return Status::AlreadyExists("pack " + PackKey(id) + " exists");
    }
    if (!head.status().Is(Code::kNotFound)) {
      SNAPFS_LOG_WARN("S3: creating pack " + PackKey(id) + " without checking the bucket: " +
                      head.status().ToString());
    }
    const std::string path = SpoolPath(id);
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      Status st = PosixError("create spool file " + path, errno);
      done();
      return st;
    }
    auto file = std::make_shared<SpoolFile>(id, path, fd);
    {
      std::lock_guard l(mu_);
      creating_.erase(id);
      spool_[id] = file;
    }
    ForgetRemoved(id);
    return std::unique_ptr<PackWriter>(std::make_unique<S3PackWriter>(this, file));
  }

  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    if (auto f = Spooled(id)) return ReadSpool(*f, offset, len, out);
    if (len == 0) {
      ASSIGN_OR_RETURN(uint64_t size, ObjectSize(id));
      if (offset > size) return PastEnd(id, size, offset, len);
      return Status::OK();
    }
    if (offset > UINT64_MAX - len) return PastEnd(id, 0, offset, len);
    const uint64_t bs = opts_.block_size;
    uint64_t pos = offset;
    const uint64_t end = offset + len;
    while (pos < end) {
      const uint64_t block = pos / bs;
      auto data = Block(id, block);
      if (!data.ok()) {
        // The pack may have been uploaded and its spool entry dropped between our look
        // and the GET; or not yet uploaded when Spooled() missed it: look once more.
        if (data.status().Is(Code::kNotFound)) {
          if (auto f = Spooled(id)) return ReadSpool(*f, offset, len, out);
        }
        return data.status();
      }
      const std::string& b = **data;
      const uint64_t in = pos - block * bs;
      if (in >= b.size()) return PastEnd(id, block * bs + b.size(), offset, len);
      const uint64_t n = std::min<uint64_t>(b.size() - in, end - pos);
      memcpy(out + (pos - offset), b.data() + in, n);
      pos += n;
      if (pos < end && b.size() < bs) return PastEnd(id, block * bs + b.size(), offset, len);
    }
    return Status::OK();
  }

  void Prefetch(PackId id, uint64_t offset, uint64_t len) const override {
    if (len == 0 || prefetchers_.empty() || Spooled(id)) return;
    len = std::max(len, opts_.readahead_bytes);
    const uint64_t bs = opts_.block_size;
    uint64_t last = (offset + len - 1) / bs;
    std::vector<std::pair<PackId, uint64_t>> want;
    {
      std::lock_guard l(cache_mu_);
      if (auto it = pack_blocks_.find(id); it != pack_blocks_.end()) {
        if (offset / bs >= it->second) return;
        last = std::min(last, it->second - 1);
      }
      for (uint64_t b = offset / bs; b <= last; ++b) {
        if (!cache_.count({id, b})) want.emplace_back(id, b);
      }
    }
    if (want.empty()) return;
    {
      std::lock_guard l(prefetch_mu_);
      for (const auto& k : want) {
        // Bounded: a hint may be dropped, never a read.
        if (prefetch_queue_.size() >= 64 || prefetch_pending_.count(k)) continue;
        prefetch_pending_.insert(k);
        prefetch_queue_.push_back(k);
      }
    }
    prefetch_cv_.notify_all();
  }

  uint64_t disk_cache_hits() const override { return disk_cache_ ? disk_cache_->hits() : 0; }
  uint64_t disk_cache_misses() const override { return disk_cache_ ? disk_cache_->misses() : 0; }

  Status Remove(PackId id) override {
    std::shared_ptr<SpoolFile> f;
    {
      std::unique_lock l(mu_);
      auto it = spool_.find(id);
      if (it != spool_.end()) {
        f = it->second;
        f->removed = true;
        spool_.erase(it);
        std::erase_if(queue_, [&](const Queued& q) { return q.file == f; });
        // An upload in flight could store the object after our DELETE below, and a
        // reader would find it after Remove returned: wait for it to end.
        idle_cv_.wait(l, [&] { return !f->in_flight; });
      }
    }
    MarkRemoved(id);
    if (f) {
      ::unlink(f->path.c_str());
      // The object exists if an upload finished before we looked.
      Status st = client_->Delete(PackKey(id));
      if (!st.ok() && !st.Is(Code::kNotFound)) return st;
      return Status::OK();
    }
    auto head = client_->Head(PackKey(id));
    if (!head.ok()) {
      if (head.status().Is(Code::kNotFound)) {
        return Status::NotFound("remove pack " + PackKey(id) + ": no such object");
      }
      return head.status();
    }
    return client_->Delete(PackKey(id));
  }

  Result<std::vector<PackInfo>> List() const override {
    // The spool first: a pack whose upload ends while we list the bucket is then in the
    // snapshot, while listing first could miss it in both.
    std::map<PackId, uint64_t> spooled;
    {
      std::lock_guard l(mu_);
      for (const auto& [id, f] : spool_) spooled[id] = f->size.load();
    }
    ASSIGN_OR_RETURN(auto objects, client_->List(key_prefix_));
    std::map<PackId, uint64_t> packs;
    for (const S3Object& o : objects) {
      // key_prefix_ + "xx/" + 16 hex + ".pack"; anything else is not ours.
      std::string_view rest(o.key);
      rest.remove_prefix(key_prefix_.size());
      if (rest.size() != 3 + 16 + 5 || rest[2] != '/') continue;
      PackId id;
      if (!ParseFileName(rest.substr(3), &id) || pack_names::Fanout(id) != rest.substr(0, 2)) continue;
      packs[id] = o.size;
    }
    for (const auto& [id, size] : spooled) {
      // Still spooled, or removed since: a removed pack's object is gone from the listing.
      std::lock_guard l(mu_);
      auto it = spool_.find(id);
      if (it != spool_.end()) {
        packs[id] = it->second->size.load();
      } else if (!packs.count(id) && !Removed(id)) {
        packs[id] = size;  // uploaded after our listing
      }
    }
    std::vector<PackInfo> out;
    for (const auto& [id, size] : packs) out.push_back(PackInfo{id, size});
    return out;
  }

  Result<SpaceInfo> Space() const override {
    // The bucket has no capacity to speak of; the spool's disk is what can fill up and
    // stop writes, so that is what health checks should watch.
    struct statvfs vfs;
    if (::statvfs(opts_.spool_dir.c_str(), &vfs) != 0) {
      return PosixError("statvfs " + opts_.spool_dir, errno);
    }
    SpaceInfo info;
    info.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    info.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    return info;
  }

  // The bucket answers (HEAD bucket, with the client's retries): the object store is
  // reachable, with these credentials.
  Status Probe() const override { return client_->CheckBucket(); }

  std::string Describe() const override {
    std::string d = "s3://" + opts_.client.bucket;
    if (!opts_.prefix.empty()) d += "/" + opts_.prefix;
    d += " (" + (opts_.client.endpoint.empty() ? std::string("AWS ") + opts_.client.region
                                                 : opts_.client.endpoint) + ")";
    return d;
  }

  Status WaitForUploads() override {
    std::unique_lock l(mu_);
    // Failed uploads waiting for their retry do not count: they already had their try.
    idle_cv_.wait(l, [&] {
      return active_uploads_ == 0 &&
             std::none_of(queue_.begin(), queue_.end(), [](const Queued& q) { return !q.failed; });
    });
    if (queue_.empty()) last_upload_error_ = Status::OK();
    return last_upload_error_;
  }

  size_t SpooledPacks() const override {
    std::lock_guard l(mu_);
    return spool_.size();
  }

  S3ClientStats client_stats() const override { return client_->stats(); }

  bool upload_on_seal() const { return opts_.upload_on_seal; }

  // Called by a writer's Seal once the spool file is synced (upload_on_seal): stores the
  // pack now, in the caller's thread.
  Status UploadNow(const std::shared_ptr<SpoolFile>& f) {
    {
      std::lock_guard l(mu_);
      f->sealed = true;
      if (f->removed) return Status::OK();
      f->in_flight = true;
    }
    Status st = Upload(*f);
    std::lock_guard l(mu_);
    f->in_flight = false;
    idle_cv_.notify_all();  // a Remove may wait for it
    if (st.ok() || f->removed) {
      if (auto it = spool_.find(f->id); it != spool_.end() && it->second == f) spool_.erase(it);
      if (st.ok() && !f->removed) ::unlink(f->path.c_str());
      return Status::OK();
    }
    SNAPFS_LOG_ERROR("S3: upload of pack " + PackKey(f->id) + " failed: " + st.message());
    return st.WithContext("upload pack " + PackKey(f->id));
  }

  // Called by a writer's Seal once the spool file is synced.
  void QueueUpload(const std::shared_ptr<SpoolFile>& f) {
    {
      std::lock_guard l(mu_);
      f->sealed = true;
      if (f->removed || f->uploading) return;
      f->uploading = true;
      queue_.push_back(Queued{f, Clock::now(), false});
    }
    cv_.notify_one();
  }

 private:
  std::string SpoolPath(PackId id) const { return opts_.spool_dir + "/" + pack_names::FileName(id); }

  std::shared_ptr<SpoolFile> Spooled(PackId id) const {
    std::lock_guard l(mu_);
    auto it = spool_.find(id);
    return it == spool_.end() ? nullptr : it->second;
  }

  Status PastEnd(PackId id, uint64_t size, uint64_t offset, size_t len) const {
    return Status::Corruption("pack " + PackKey(id) + " (" + std::to_string(size) +
                              " bytes): read of " + std::to_string(len) + " bytes at offset " +
                              std::to_string(offset) + " runs past its end");
  }

  Status ReadSpool(const SpoolFile& f, uint64_t offset, size_t len, uint8_t* out) const {
    const uint64_t size = f.size.load();
    if (offset > size || len > size - offset) return PastEnd(f.id, size, offset, len);
    size_t done = 0;
    while (done < len) {
      const ssize_t n = ::pread(f.fd, out + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::IOError(PosixError("read " + f.path, errno).message());
      if (n == 0) return PastEnd(f.id, size, offset, len);
      done += static_cast<size_t>(n);
    }
    return Status::OK();
  }

  // The size of an uploaded pack (HEAD).
  Result<uint64_t> ObjectSize(PackId id) const { return client_->Head(PackKey(id)); }

  // One block of an uploaded pack: from memory, else from the disk cache, else one ranged
  // GET. A block already being fetched (by a prefetcher or another reader) is waited for,
  // not fetched twice: without that, a sequential reader that catches up with its
  // read-ahead doubled the GETs and the prefetch threads only competed with it.
  Result<std::shared_ptr<const std::string>> Block(PackId id, uint64_t block) const {
    const auto key = std::make_pair(id, block);
    std::shared_ptr<Fetch> fetch;
    {
      std::unique_lock l(cache_mu_);
      if (auto it = cache_.find(key); it != cache_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        return it->second.data;
      }
      if (auto it = fetching_.find(key); it != fetching_.end()) {
        std::shared_ptr<Fetch> f = it->second;
        fetch_cv_.wait(l, [&] { return f->done; });
        if (!f->status.ok()) return f->status;
        return f->data;
      }
      fetch = std::make_shared<Fetch>();
      fetching_.emplace(key, fetch);
    }
    bool from_disk = false;
    auto fetched = FetchBlock(id, block, &from_disk);
    if (fetched.ok() && (*fetched)->size() < opts_.block_size) {
      NoteEnd(id, block * opts_.block_size + (*fetched)->size());
    } else if (fetched.status().Is(Code::kCorruption)) {  // 416: the block starts past the end
      NoteEnd(id, block * opts_.block_size);
    }
    std::shared_ptr<const std::string> result;
    {
      std::lock_guard l(cache_mu_);
      fetching_.erase(key);
      fetch->done = true;  // the waiters see status or data once we let go of cache_mu_
      fetch_cv_.notify_all();
      if (!fetched.ok()) {
        fetch->status = fetched.status();
        return fetched.status();
      }
      result = std::move(*fetched);
      fetch->data = result;
      // A Remove that ran while we fetched must not find these bytes cached afterwards.
      if (!removed_.count(id) && !cache_.count(key)) {
        lru_.push_front(key);
        cache_.emplace(key, CachedBlock{result, lru_.begin()});
        cached_bytes_ += result->size();
        while (cached_bytes_ > opts_.block_cache_bytes && !lru_.empty()) {
          auto victim = cache_.find(lru_.back());
          cached_bytes_ -= victim->second.data->size();
          cache_.erase(victim);
          lru_.pop_back();
        }
      }
    }
    // To the disk cache after the waiting readers have the bytes: a file write is not
    // something a reader should wait for.
    if (disk_cache_ && !from_disk) {
      disk_cache_->Put(id, block, *result);
      std::lock_guard l(cache_mu_);
      // Remove may have dropped the pack's blocks while we wrote ours.
      if (removed_.count(id)) disk_cache_->DropPack(id);
    }
    return result;
  }

  // The bytes of a block from the disk cache or the bucket (no locks held).
  Result<std::shared_ptr<const std::string>> FetchBlock(PackId id, uint64_t block,
                                                        bool* from_disk) const {
    if (disk_cache_) {
      if (auto hit = disk_cache_->Get(id, block)) {
        *from_disk = true;
        return std::shared_ptr<const std::string>(std::make_shared<std::string>(std::move(*hit)));
      }
    }
    auto data = std::make_shared<std::string>(opts_.block_size, '\0');
    size_t got = 0;
    RETURN_IF_ERROR(client_->GetRange(PackKey(id), block * opts_.block_size, opts_.block_size,
                                      reinterpret_cast<uint8_t*>(data->data()), &got));
    data->resize(got);
    return std::shared_ptr<const std::string>(std::move(data));
  }

  void MarkRemoved(PackId id) {
    std::lock_guard l(cache_mu_);
    removed_.insert(id);
    pack_blocks_.erase(id);
    if (disk_cache_) disk_cache_->DropPack(id);
    for (auto it = cache_.lower_bound({id, 0}); it != cache_.end() && it->first.first == id;) {
      cached_bytes_ -= it->second.data->size();
      lru_.erase(it->second.lru);
      it = cache_.erase(it);
    }
  }

  bool Removed(PackId id) const {
    std::lock_guard l(cache_mu_);
    return removed_.count(id) != 0;
  }

  void ForgetRemoved(PackId id) {
    std::lock_guard l(cache_mu_);
    removed_.erase(id);
  }

  void PrefetchLoop() {
    std::unique_lock l(prefetch_mu_);
    for (;;) {
      prefetch_cv_.wait(l, [&] { return prefetch_stop_ || !prefetch_queue_.empty(); });
      if (prefetch_stop_) return;
      const auto k = prefetch_queue_.front();
      prefetch_queue_.pop_front();
      l.unlock();
      if (!PastKnownEnd(k.first, k.second)) {
        (void)Block(k.first, k.second);  // errors surface to the reader that needs the bytes
      }
      l.lock();
      prefetch_pending_.erase(k);
    }
  }

  void UploadLoop() {
    std::unique_lock l(mu_);
    for (;;) {
      // The first entry that may go now; failed ones wait out their delay.
      const auto now = Clock::now();
      auto ready = std::find_if(queue_.begin(), queue_.end(),
                                [&](const Queued& q) { return q.not_before <= now; });
      if (ready == queue_.end()) {
        if (stopping_) return;  // what is left stays in the spool: replayed at next open
        if (queue_.empty()) {
          cv_.wait(l);
        } else {
          auto next = std::min_element(queue_.begin(), queue_.end(),
                                       [](const Queued& a, const Queued& b) {
                                         return a.not_before < b.not_before;
                                       });
          cv_.wait_until(l, next->not_before);
        }
        continue;
      }
      std::shared_ptr<SpoolFile> f = ready->file;
      queue_.erase(ready);
      active_uploads_++;
      f->in_flight = true;
      l.unlock();
      Status st = Upload(*f);
      l.lock();
      active_uploads_--;
      f->in_flight = false;
      const bool removed = f->removed;
      if (st.ok() || removed) {
        f->uploading = false;
        if (auto it = spool_.find(f->id); it != spool_.end() && it->second == f) spool_.erase(it);
        if (st.ok() && !removed) ::unlink(f->path.c_str());
      } else {
        last_upload_error_ = st;
        SNAPFS_LOG_ERROR("S3: upload of pack " + PackKey(f->id) + " failed; it stays in " +
                         f->path + " and is tried again: " + st.message());
        queue_.push_back(Queued{
            f, Clock::now() + std::chrono::milliseconds(opts_.upload_retry_delay_ms), true});
      }
      idle_cv_.notify_all();
    }
  }

  Status Upload(const SpoolFile& f) {
    const uint64_t size = f.size.load();
    BodyReader reader = [&f](uint64_t off, size_t len, uint8_t* out) -> Status {
      size_t done = 0;
      while (done < len) {
        const ssize_t n = ::pread(f.fd, out + done, len - done, static_cast<off_t>(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Status::IOError("read spool file " + f.path);
        done += static_cast<size_t>(n);
      }
      return Status::OK();
    };
    Status st = client_->Put(PackKey(f.id), size, reader, /*if_none_match=*/true);
    if (st.Is(Code::kAlreadyExists)) {
      // Stored by an earlier run that died before it unlinked the spool file.
      auto head = client_->Head(PackKey(f.id));
      if (head.ok() && *head == size) st = Status::OK();
      if (head.ok() && *head != size) {
        st = Status::Corruption("pack " + PackKey(f.id) + " exists with " + std::to_string(*head) +
                                " bytes; the spool has " + std::to_string(size));
      }
    }
    if (st.ok()) NoteEnd(f.id, size);
    return st;
  }

  // Whether `block` lies behind a pack's end that NoteEnd learned (read-ahead skips it).
  bool PastKnownEnd(PackId id, uint64_t block) const {
    std::lock_guard l(cache_mu_);
    auto it = pack_blocks_.find(id);
    return it != pack_blocks_.end() && block >= it->second;
  }

  // Learns where a pack ends (from an upload, a short block, or a read past the end), so
  // that read-ahead never asks for blocks behind it: each such GET would be a request
  // billed for a 416.
  void NoteEnd(PackId id, uint64_t size) const {
    const uint64_t blocks = (size + opts_.block_size - 1) / opts_.block_size;
    std::lock_guard l(cache_mu_);
    auto [it, added] = pack_blocks_.emplace(id, blocks);
    if (!added) it->second = std::min(it->second, blocks);
  }

  using Clock = std::chrono::steady_clock;
  struct Queued {
    std::shared_ptr<SpoolFile> file;
    Clock::time_point not_before;
    bool failed = false;  // an earlier attempt failed
  };
  struct CachedBlock {
    std::shared_ptr<const std::string> data;
    std::list<std::pair<PackId, uint64_t>>::iterator lru;
  };

  const S3BackendOptions opts_;
  const std::unique_ptr<S3Client> client_;
  std::string key_prefix_;

  mutable std::mutex mu_;
  std::map<PackId, std::shared_ptr<SpoolFile>> spool_;  // GUARDED_BY(mu_)
  std::set<PackId> creating_;                            // GUARDED_BY(mu_)
  std::deque<Queued> queue_;                             // GUARDED_BY(mu_)
  int active_uploads_ = 0;                               // GUARDED_BY(mu_)
  bool stopping_ = false;                                // GUARDED_BY(mu_)
  Status last_upload_error_;                             // GUARDED_BY(mu_)
  std::condition_variable cv_, idle_cv_;
  std::vector<std::thread> uploaders_;

  mutable std::mutex cache_mu_;
  mutable std::map<std::pair<PackId, uint64_t>, CachedBlock> cache_;  // GUARDED_BY(cache_mu_)
  mutable std::list<std::pair<PackId, uint64_t>> lru_;                // GUARDED_BY(cache_mu_)
  mutable uint64_t cached_bytes_ = 0;                                 // GUARDED_BY(cache_mu_)
  std::set<PackId> removed_;                                          // GUARDED_BY(cache_mu_)
  // Blocks being fetched right now; readers of the same block wait on fetch_cv_.
  struct Fetch {
    bool done = false;                        // GUARDED_BY(cache_mu_)
    Status status;                            // GUARDED_BY(cache_mu_)
    std::shared_ptr<const std::string> data;  // GUARDED_BY(cache_mu_)
  };
  mutable std::map<std::pair<PackId, uint64_t>, std::shared_ptr<Fetch>> fetching_;  // GUARDED_BY(cache_mu_)
  mutable std::condition_variable fetch_cv_;
  mutable std::map<PackId, uint64_t> pack_blocks_;  // GUARDED_BY(cache_mu_): NoteEnd
  std::unique_ptr<DiskBlockCache> disk_cache_;  // set in Start; thread-safe itself

  mutable std::mutex prefetch_mu_;
  mutable std::condition_variable prefetch_cv_;
  mutable std::deque<std::pair<PackId, uint64_t>> prefetch_queue_;  // GUARDED_BY(prefetch_mu_)
  mutable std::set<std::pair<PackId, uint64_t>> prefetch_pending_;  // GUARDED_BY(prefetch_mu_)
  bool prefetch_stop_ = false;                                       // GUARDED_BY(prefetch_mu_)
  std::vector<std::thread> prefetchers_;
};

S3PackWriter::~S3PackWriter() = default;

Status S3PackWriter::Seal() {
  if (sealed_) return seal_status_;
  Status st;
  if (tail_dirty_ && ::ftruncate(file_->fd, static_cast<off_t>(size_)) != 0) {
    st = Status::IOError(PosixError("truncate " + file_->path, errno).message());
  }
  if (st.ok()) st = Sync();
  sealed_ = true;
  seal_status_ = st;
  // A pack whose last sync failed is not uploaded: its bytes may be wrong on disk, and
  // ChunkStore marks every chunk in it failed. It stays in the spool for a look by hand.
  if (st.ok() && backend_->upload_on_seal()) {
    st = backend_->UploadNow(file_);
    seal_status_ = st;
  } else if (st.ok()) {
    backend_->QueueUpload(file_);
  }
  return st;
}

}  // namespace

Result<std::unique_ptr<S3Backend>> OpenS3Backend(S3BackendOptions opts) {
  while (opts.prefix.starts_with("/")) opts.prefix.erase(0, 1);
  while (opts.prefix.ends_with("/")) opts.prefix.pop_back();
  if (opts.spool_dir.empty()) return Status::InvalidArgument("S3 backend: no spool folder");
  opts.block_size = std::max<uint64_t>(opts.block_size, 4096);
  ASSIGN_OR_RETURN(auto client, S3Client::Create(opts.client));
  auto b = std::make_unique<S3BackendImpl>(std::move(opts), std::move(client));
  RETURN_IF_ERROR(b->Start());
  return std::unique_ptr<S3Backend>(std::move(b));
}

}  // namespace snapfs
