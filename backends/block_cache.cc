#include "backends/block_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <vector>

#include "backends/pack_names.h"
#include "base/coding.h"

namespace snapfs {
namespace {

constexpr char kTrailerMagic[4] = {'S', 'B', 'C', '1'};
constexpr size_t kTrailerSize = 12;

bool ParseName(const char* name, uint64_t* pack, uint64_t* block) {
  // "<16 hex>-<16 hex>.blk"
  if (strlen(name) != 16 + 1 + 16 + 4 || name[16] != '-' || strcmp(name + 33, ".blk") != 0) {
    return false;
  }
  const std::string_view n(name);
  return pack_names::ParseHex(n.substr(0, 16), 16, pack) &&
         pack_names::ParseHex(n.substr(17, 16), 16, block);
}

bool ReadWholeFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    out->resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (ok && done < out->size()) {
      const ssize_t n = ::pread(fd, out->data() + done, out->size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

Result<std::unique_ptr<DiskBlockCache>> DiskBlockCache::Open(const std::string& dir,
                                                             uint64_t max_bytes) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return PosixError("create cache folder " + dir, errno);
  }
  std::unique_ptr<DiskBlockCache> c(new DiskBlockCache(dir, max_bytes));
  DIR* d = ::opendir(dir.c_str());
  if (!d) return PosixError("list cache folder " + dir, errno);
  struct Found {
    int64_t mtime_ns;
    Key key;
    uint64_t size;
  };
  std::vector<Found> found;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.ends_with(".tmp")) {
      ::unlinkat(::dirfd(d), e->d_name, 0);  // a write cut short by a crash
      continue;
    }
    Key k;
    if (!ParseName(e->d_name, &k.first, &k.second)) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
    found.push_back(Found{st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec, k,
                          static_cast<uint64_t>(st.st_size)});
  }
  ::closedir(d);
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
  MutexLock l(&c->mu_);
  for (const Found& f : found) c->InsertLocked(f.key, f.size);  // newest ends up first
  c->EvictLocked();
  return c;
}

std::string DiskBlockCache::PathOf(const Key& k) const {
  return dir_ + "/" + pack_names::Hex(k.first, 16) + "-" + pack_names::Hex(k.second, 16) + ".blk";
}

void DiskBlockCache::InsertLocked(const Key& k, uint64_t size) {
  if (auto it = entries_.find(k); it != entries_.end()) {
    bytes_ -= it->second.size;
    lru_.erase(it->second.lru);
    entries_.erase(it);
  }
  lru_.push_front(k);
  entries_.emplace(k, Entry{size, lru_.begin()});
  bytes_ += size;
}

void DiskBlockCache::EvictLocked() {
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    const Key k = lru_.back();
    auto it = entries_.find(k);
    bytes_ -= it->second.size;
    entries_.erase(it);
    lru_.pop_back();
    ::unlink(PathOf(k).c_str());
  }
}

std::optional<std::string> DiskBlockCache::Get(uint64_t pack, uint64_t block) {
  const Key k{pack, block};
  {
    MutexLock l(&mu_);
    auto it = entries_.find(k);
    if (it == entries_.end()) {
      misses_++;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  std::string data;
  bool ok = ReadWholeFile(PathOf(k), &data) && data.size() >= kTrailerSize &&
            memcmp(data.data() + data.size() - kTrailerSize, kTrailerMagic, 4) == 0;
  if (ok) {
    const uint64_t want = GetLE64(data.data() + data.size() - 8);
    data.resize(data.size() - kTrailerSize);
    ok = XXH64(data.data(), data.size(), 0) == want;
  }
  MutexLock l(&mu_);
  if (!ok) {
    misses_++;
    if (auto it = entries_.find(k); it != entries_.end()) {
      bytes_ -= it->second.size;
      lru_.erase(it->second.lru);
      entries_.erase(it);
    }
    ::unlink(PathOf(k).c_str());
    return std::nullopt;
  }
  hits_++;
  return data;
}

void DiskBlockCache::Put(uint64_t pack, uint64_t block, const std::string& data) {
  const Key k{pack, block};
  std::string tmp;
  {
    MutexLock l(&mu_);
    if (entries_.count(k)) return;
    tmp = PathOf(k) + "." + std::to_string(tmp_seq_++) + ".tmp";
  }
  std::string trailer(kTrailerMagic, 4);
  PutLE64(&trailer, XXH64(data.data(), data.size(), 0));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = true;
  for (const std::string* part : {&data, static_cast<const std::string*>(&trailer)}) {
    size_t done = 0;
    while (ok && done < part->size()) {
      const ssize_t n = ::write(fd, part->data() + done, part->size() - done);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), PathOf(k).c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  MutexLock l(&mu_);
  InsertLocked(k, data.size() + kTrailerSize);
  EvictLocked();
}

void DiskBlockCache::DropPack(uint64_t pack) {
  MutexLock l(&mu_);
  for (auto it = entries_.lower_bound({pack, 0}); it != entries_.end() && it->first.first == pack;) {
    bytes_ -= it->second.size;
    lru_.erase(it->second.lru);
    ::unlink(PathOf(it->first).c_str());
    it = entries_.erase(it);
  }
}

uint64_t DiskBlockCache::bytes() const {
  MutexLock l(&mu_);
  return bytes_;
}
uint64_t DiskBlockCache::hits() const {
  MutexLock l(&mu_);
  return hits_;
}
uint64_t DiskBlockCache::misses() const {
  MutexLock l(&mu_);
  return misses_;
}

}  // namespace snapfs
