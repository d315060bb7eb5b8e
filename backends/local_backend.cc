// The local backend: one append-only file per pack under the store folder.
//
// Layout: <dir>/<id % 256 as 2 hex digits>/<id as 16 hex digits>.pack, lowercase. The
// fan-out folders keep any one folder small; they are made on first use. Names are built
// only by FanoutDir()/PackPath() below; List() ignores every other name.
//
// Folders are made 0700 and packs 0600: a pack holds file data of every user of the mount.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "backends/backend.h"
#include "backends/pack_file_io.h"
#include "backends/pack_names.h"
#include "base/mutex.h"

namespace snapfs {
namespace {

constexpr size_t kMaxCachedReadFds = 64;
constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<off_t>::max());

// Owns a file descriptor and closes it.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    Reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

using pack_names::kFanout;
using pack_names::ParseHex;

std::string FanoutDir(const std::string& dir, PackId id) {
  return dir + "/" + pack_names::Fanout(id);
}

std::string PackPath(const std::string& dir, PackId id) {
  return FanoutDir(dir, id) + "/" + pack_names::FileName(id);
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// fsyncs a folder so the names in it are durable.
Status SyncDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open folder " + path, errno);
  if (::fsync(fd.get()) != 0) return PosixError("fsync folder " + path, errno);
  return Status::OK();
}

// The contract says a failed Sync is IOError, whatever errno said.
Status SyncError(const std::string& what, int err) {
  return Status::IOError(PosixError(what, err).message());
}

// mkdir -p: makes `dir` and any missing parents, then makes each new name durable.
Status MakeDirs(const std::string& dir) {
  std::vector<std::string> created;
  for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    const std::string prefix = pos == std::string::npos ? dir : dir.substr(0, pos);
    if (prefix.back() != '/') {  // skips the empty components of "a//b"
      if (::mkdir(prefix.c_str(), 0700) == 0) {
        created.push_back(prefix);
      } else if (errno != EEXIST) {
        return PosixError("create folder " + prefix, errno);
      }
    }
    if (pos == std::string::npos) break;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return PosixError("stat " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::NotDirectory("pack folder " + dir + " is not a folder");
  for (const std::string& c : created) RETURN_IF_ERROR(SyncDir(Parent(c)));
  return Status::OK();
}

// What a backend shares with the writers it made, so a writer may outlive its backend.
struct LocalShared {
  std::string dir;
  // Whether the name of each fan-out folder is known durable in `dir` (we fsynced `dir`
  // since this process started using the folder).
  std::array<std::atomic<bool>, kFanout> fanout_durable{};
};

// Thread-safety: not thread-safe (PackWriter's contract).
class LocalPackWriter final : public PackWriter {
 public:
  LocalPackWriter(std::shared_ptr<LocalShared> shared, PackId id, UniqueFd fd)
      : shared_(std::move(shared)),
        id_(id),
        path_(PackPath(shared_->dir, id)),
        fd_(std::move(fd)) {}

  PackId id() const override { return id_; }
  uint64_t size() const override { return size_; }

  // pwritev at size_, not write: after a failed Append left a partial tail, a retry
  // overwrites it and the offsets we return stay true.
  Result<uint64_t> Append(std::span<const uint8_t> data) override {
    const std::span<const uint8_t> parts[1] = {data};
    return AppendParts(parts);
  }

  Result<uint64_t> AppendParts(std::span<const std::span<const uint8_t>> parts) override {
    if (sealed_) return Status::InvalidArgument("append to sealed pack " + path_);
    const uint64_t offset = size_;
    uint64_t total = 0;
    for (const auto& p : parts) total += p.size();
    if (total > kMaxOffset - offset) return Status::FileTooBig("pack " + path_);
    if (int e = PwriteParts(fd_.get(), parts, offset); e != 0) {
      tail_dirty_ = true;
      return PosixError("append to " + path_, e);
    }
    size_ += total;
    return offset;
  }

  Status Sync() override {
    if (sealed_) return seal_status_;
    // Sticky: after a failed fsync the kernel may have dropped the dirty pages, so a later
    // fsync that succeeds proves nothing.
    if (!sync_status_.ok()) return sync_status_;
    if (::fdatasync(fd_.get()) != 0) return sync_status_ = SyncError("fdatasync " + path_, errno);
    if (!name_durable_) {
      const std::string fanout = FanoutDir(shared_->dir, id_);
      Status st = SyncDir(fanout);
      std::atomic<bool>& fanout_durable = shared_->fanout_durable[id_ % kFanout];
      if (st.ok() && !fanout_durable.load()) {
        st = SyncDir(shared_->dir);
        if (st.ok()) fanout_durable.store(true);
      }
      if (!st.ok()) return Status::IOError(st.message());
      name_durable_ = true;
    }
    return Status::OK();
  }

  void StartWriteback(uint64_t from, uint64_t to) override {
    if (sealed_ || to <= from) return;
    // Failures only mean the writes start later, at the fdatasync that reports them.
    (void)::sync_file_range(fd_.get(), static_cast<off_t>(from), static_cast<off_t>(to - from),
                            SYNC_FILE_RANGE_WRITE);
  }

  Status Seal() override {
    if (sealed_) return seal_status_;
    Status st;
    if (tail_dirty_ && ::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) {
      st = SyncError("truncate " + path_ + " after a failed append", errno);
    }
    if (st.ok()) st = Sync();
    fd_.Reset();
    sealed_ = true;
    seal_status_ = st;
    return st;
  }

 private:
  const std::shared_ptr<LocalShared> shared_;
  const PackId id_;
  const std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool tail_dirty_ = false;    // a failed Append may have left bytes past size_
  bool name_durable_ = false;  // the pack's name has been fsynced into its folder
  bool sealed_ = false;
  Status sync_status_;  // first fdatasync failure, if any
  Status seal_status_;
};

// Thread-safety: every method may be called concurrently (Backend's contract).
class LocalBackend final : public Backend {
 public:
  explicit LocalBackend(std::string dir) : shared_(std::make_shared<LocalShared>()) {
    shared_->dir = std::move(dir);
  }

  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    const std::string fanout = FanoutDir(dir(), id);
    if (::mkdir(fanout.c_str(), 0700) != 0 && errno != EEXIST) {
      return PosixError("create folder " + fanout, errno);
    }
    const std::string path = PackPath(dir(), id);
    UniqueFd fd(::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
    if (!fd.valid()) return PosixError("create pack " + path, errno);
    return std::unique_ptr<PackWriter>(
        std::make_unique<LocalPackWriter>(shared_, id, std::move(fd)));
  }

  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    ASSIGN_OR_RETURN(std::shared_ptr<const UniqueFd> fd, OpenForRead(id));
    if (offset > kMaxOffset || len > kMaxOffset - offset)
      return PastEnd(id, fd->get(), offset, len);
    size_t done = 0;
    while (done < len) {
      const ssize_t n =
          ::pread(fd->get(), out + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::IOError(PosixError("read " + PackPath(dir(), id), errno).message());
      if (n == 0) return PastEnd(id, fd->get(), offset, len);
      done += static_cast<size_t>(n);
    }
    if (len == 0) {  // nothing was read, so check the offset by hand
      struct stat st;
      if (::fstat(fd->get(), &st) != 0) return PosixError("stat " + PackPath(dir(), id), errno);
      if (offset > static_cast<uint64_t>(st.st_size)) return PastEnd(id, fd->get(), offset, len);
    }
    return Status::OK();
  }

  void Prefetch(PackId id, uint64_t offset, uint64_t len) const override {
    // The kernel's readahead on a pack is defeated when FUSE threads read a file's chunks
    // concurrently and out of order; an explicit hint restores it.
    auto fd = OpenForRead(id);
    if (fd.ok()) {
      (void)::posix_fadvise((*fd)->get(), static_cast<off_t>(offset), static_cast<off_t>(len),
                            POSIX_FADV_WILLNEED);
    }
  }

  Status Remove(PackId id) override {
    const std::string path = PackPath(dir(), id);
    if (::unlink(path.c_str()) != 0) return PosixError("remove pack " + path, errno);
    // After the unlink: a reader that opened the file before it has already cached its fd
    // (OpenForRead opens and caches under one lock), so this drops it for good.
    MutexLock lock(&cache_mu_);
    DropCached(id);
    return Status::OK();
  }

  Result<std::vector<PackInfo>> List() const override {
    std::vector<PackInfo> packs;
    UniqueDir top(::opendir(dir().c_str()));
    if (!top) return PosixError("list " + dir(), errno);
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(top.get());
      if (e == nullptr) {
        if (errno != 0) return PosixError("list " + dir(), errno);
        break;
      }
      uint64_t bucket;
      if (!ParseHex(e->d_name, 2, &bucket)) continue;
      RETURN_IF_ERROR(ListFanout(dir() + "/" + e->d_name, bucket, &packs));
    }
    std::sort(packs.begin(), packs.end(),
              [](const PackInfo& a, const PackInfo& b) { return a.id < b.id; });
    return packs;
  }

  Result<SpaceInfo> Space() const override {
    struct statvfs vfs;
    if (::statvfs(dir().c_str(), &vfs) != 0) return PosixError("statvfs " + dir(), errno);
    SpaceInfo info;
    info.total_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    info.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    return info;
  }

  std::string Describe() const override { return "local:" + dir(); }

 private:
  struct CachedFd {
    std::shared_ptr<const UniqueFd> fd;
    std::list<PackId>::iterator lru_pos;
  };

  const std::string& dir() const { return shared_->dir; }

  // A read-only fd for pack `id`, from the cache or newly opened. Opening and caching
  // happen under one lock so Remove can never leave a removed pack's fd in the cache.
  Result<std::shared_ptr<const UniqueFd>> OpenForRead(PackId id) const {
    MutexLock lock(&cache_mu_);
    if (auto it = cache_.find(id); it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      return it->second.fd;
    }
    const std::string path = PackPath(dir(), id);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open pack " + path, errno);
    if (cache_.size() >= kMaxCachedReadFds) DropCached(lru_.back());
    auto shared = std::make_shared<const UniqueFd>(std::move(fd));
    lru_.push_front(id);
    cache_.emplace(id, CachedFd{shared, lru_.begin()});
    return shared;
  }

  // Readers holding the fd keep it open until they finish.
  void DropCached(PackId id) const REQUIRES(cache_mu_) {
    auto it = cache_.find(id);
    if (it == cache_.end()) return;
    lru_.erase(it->second.lru_pos);
    cache_.erase(it);
  }

  Status PastEnd(PackId id, int fd, uint64_t offset, size_t len) const {
    struct stat st;
    const std::string size =
        ::fstat(fd, &st) == 0 ? std::to_string(st.st_size) + " bytes" : "unknown size";
    return Status::Corruption("pack " + PackPath(dir(), id) + " (" + size + "): read of " +
                              std::to_string(len) + " bytes at offset " + std::to_string(offset) +
                              " runs past its end");
  }

  // Appends the packs in fan-out folder `path` (number `bucket`) to `packs`.
  static Status ListFanout(const std::string& path, uint64_t bucket, std::vector<PackInfo>* packs) {
    UniqueDir d(::opendir(path.c_str()));
    if (!d) {
      if (errno == ENOTDIR || errno == ENOENT) return Status::OK();  // foreign file, or raced
      return PosixError("list " + path, errno);
    }
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d.get());
      if (e == nullptr) {
        if (errno != 0) return PosixError("list " + path, errno);
        return Status::OK();
      }
      PackId id;
      if (!pack_names::ParseFileName(e->d_name, &id) || id % kFanout != bucket) continue;
      struct stat st;
      if (::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed while we listed
        return PosixError("stat " + path + "/" + e->d_name, errno);
      }
      if (!S_ISREG(st.st_mode)) continue;
      packs->push_back(PackInfo{id, static_cast<uint64_t>(st.st_size)});
    }
  }

  const std::shared_ptr<LocalShared> shared_;
  mutable Mutex cache_mu_;
  mutable std::unordered_map<PackId, CachedFd> cache_ GUARDED_BY(cache_mu_);
  mutable std::list<PackId> lru_ GUARDED_BY(cache_mu_);  // most recently used first
};

}  // namespace

Result<std::unique_ptr<Backend>> OpenLocalBackend(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  if (d.empty()) return Status::InvalidArgument("empty pack folder path");
  RETURN_IF_ERROR(MakeDirs(d));
  return std::unique_ptr<Backend>(std::make_unique<LocalBackend>(std::move(d)));
}

}  // namespace snapfs
