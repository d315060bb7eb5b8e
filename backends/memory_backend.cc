// The in-memory backend, for tests: every pack is a byte vector. Nothing is durable, so
// Sync only checks its writer's state. FaultInjectionBackend (fault_backend.h) adds faults
// and simulated power loss on top of it.
#include <cstring>
#include <map>
#include <mutex>

#include "backends/backend.h"
#include "base/mutex.h"

namespace snapfs {
namespace {

// Pretend device size, so Space() behaves like a large, mostly empty disk.
constexpr uint64_t kTotalBytes = uint64_t{1} << 40;  // 1 TiB

// One pack's bytes, shared by the backend's map and the pack's writer.
struct MemPack {
  mutable Mutex mu;
  std::vector<uint8_t> data GUARDED_BY(mu);

  uint64_t size() const {
    MutexLock lock(&mu);
    return data.size();
  }
};

// Thread-safety: not thread-safe (PackWriter's contract); Backend::Read may run alongside.
class MemoryPackWriter final : public PackWriter {
 public:
  MemoryPackWriter(PackId id, std::shared_ptr<MemPack> pack) : id_(id), pack_(std::move(pack)) {}

  PackId id() const override { return id_; }
  uint64_t size() const override { return size_; }

  Result<uint64_t> Append(std::span<const uint8_t> data) override {
    if (sealed_) return Status::InvalidArgument("append to sealed pack " + std::to_string(id_));
    const uint64_t offset = size_;
    {
      MutexLock lock(&pack_->mu);
      pack_->data.insert(pack_->data.end(), data.begin(), data.end());
    }
    size_ += data.size();
    return offset;
  }

  Status Sync() override { return Status::OK(); }

  Status Seal() override {
    sealed_ = true;
    return Status::OK();
  }

 private:
  const PackId id_;
  const std::shared_ptr<MemPack> pack_;
  uint64_t size_ = 0;
  bool sealed_ = false;
};

// Thread-safety: every method may be called concurrently. Lock order: mu_ before MemPack::mu.
class MemoryBackend final : public Backend {
 public:
  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    auto pack = std::make_shared<MemPack>();
    {
      MutexLock lock(&mu_);
      if (!packs_.emplace(id, pack).second) {
        return Status::AlreadyExists("pack " + std::to_string(id));
      }
    }
    return std::unique_ptr<PackWriter>(std::make_unique<MemoryPackWriter>(id, std::move(pack)));
  }

  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    std::shared_ptr<MemPack> pack = Find(id);
    if (pack == nullptr) return Status::NotFound("pack " + std::to_string(id));
    MutexLock lock(&pack->mu);
    const uint64_t size = pack->data.size();
    if (offset > size || len > size - offset) {
      return Status::Corruption("pack " + std::to_string(id) + " (" + std::to_string(size) +
                                " bytes): read of " + std::to_string(len) + " bytes at offset " +
                                std::to_string(offset) + " runs past its end");
    }
    if (len > 0) std::memcpy(out, pack->data.data() + offset, len);
    return Status::OK();
  }

  Status Remove(PackId id) override {
    MutexLock lock(&mu_);
    if (packs_.erase(id) == 0) return Status::NotFound("pack " + std::to_string(id));
    return Status::OK();
  }

  Result<std::vector<PackInfo>> List() const override {
    MutexLock lock(&mu_);
    std::vector<PackInfo> packs;
    packs.reserve(packs_.size());
    for (const auto& [id, pack] : packs_) packs.push_back(PackInfo{id, pack->size()});
    return packs;
  }

  Result<SpaceInfo> Space() const override {
    uint64_t used = 0;
    {
      MutexLock lock(&mu_);
      for (const auto& [id, pack] : packs_) used += pack->size();
    }
    SpaceInfo info;
    info.total_bytes = kTotalBytes;
    info.free_bytes = used >= kTotalBytes ? 0 : kTotalBytes - used;
    return info;
  }

  std::string Describe() const override { return "memory"; }

 private:
  std::shared_ptr<MemPack> Find(PackId id) const {
    MutexLock lock(&mu_);
    auto it = packs_.find(id);
    return it == packs_.end() ? nullptr : it->second;
  }

  mutable Mutex mu_;
  std::map<PackId, std::shared_ptr<MemPack>> packs_ GUARDED_BY(mu_);  // ascending id
};

}  // namespace

std::unique_ptr<Backend> NewMemoryBackend() { return std::make_unique<MemoryBackend>(); }

}  // namespace snapfs
