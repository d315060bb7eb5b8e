#include "backends/fault_backend.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "base/mutex.h"

namespace snapfs {

// Lock order: crash_mu before mu.
struct FaultInjectionBackend::State {
  static constexpr uint64_t kNeverSynced = std::numeric_limits<uint64_t>::max();

  std::atomic<uint64_t> append_budget{kNoLimit};  // bytes Append may still add
  std::atomic<bool> fail_syncs{false};
  std::atomic<bool> fail_reads{false};
  std::atomic<bool> corrupt_reads{false};
  std::atomic<bool> fail_appends{false};
  std::atomic<int64_t> delay_us{0};

  // Every call holds it shared; DropUnsynced holds it exclusively.
  SharedMutex crash_mu;
  uint64_t epoch GUARDED_BY(crash_mu) = 0;  // bumped by each DropUnsynced

  Mutex mu;
  // Size at the last successful Sync/Seal of each pack created through the wrapper.
  std::map<PackId, uint64_t> synced GUARDED_BY(mu);
  std::set<PackId> fail_read_packs GUARDED_BY(mu);

  void Delay() const {
    if (int64_t us = delay_us.load(); us > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(us));
    }
  }
  bool FailsReadsOf(PackId id) EXCLUDES(mu) {
    MutexLock lock(&mu);
    return fail_read_packs.count(id) != 0;
  }

  // Takes `n` bytes from the append budget; false if they do not fit.
  bool TakeBudget(uint64_t n) {
    uint64_t left = append_budget.load();
    do {
      if (left == kNoLimit) return true;
      if (n > left) return false;
    } while (!append_budget.compare_exchange_weak(left, left - n));
    return true;
  }

  void MarkSynced(PackId id, uint64_t size) EXCLUDES(mu) {
    MutexLock lock(&mu);
    if (auto it = synced.find(id); it != synced.end()) it->second = size;
  }
};

namespace {

// Thread-safety: not thread-safe (PackWriter's contract).
class FaultPackWriter final : public PackWriterWrapper {
 public:
  using State = FaultInjectionBackend::State;

  FaultPackWriter(std::shared_ptr<State> state, std::unique_ptr<PackWriter> inner, uint64_t epoch)
      : PackWriterWrapper(std::move(inner)), state_(std::move(state)), epoch_(epoch) {}

  Result<uint64_t> Append(std::span<const uint8_t> data) override {
    ReaderMutexLock crash(&state_->crash_mu);
    RETURN_IF_ERROR(CheckAlive());
    state_->Delay();
    if (state_->fail_appends.load()) return Status::IOError("injected: write failed");
    if (!state_->TakeBudget(data.size())) return Status::NoSpace("injected: device full");
    return PackWriterWrapper::Append(data);
  }

  Status Sync() override {
    ReaderMutexLock crash(&state_->crash_mu);
    RETURN_IF_ERROR(CheckAlive());
    state_->Delay();
    if (state_->fail_syncs.load()) return Status::IOError("injected: sync failed");
    RETURN_IF_ERROR(PackWriterWrapper::Sync());
    state_->MarkSynced(id(), size());
    return Status::OK();
  }

  Status Seal() override {
    if (sealed_) return Status::OK();
    ReaderMutexLock crash(&state_->crash_mu);
    RETURN_IF_ERROR(CheckAlive());
    state_->Delay();
    if (state_->fail_syncs.load()) return Status::IOError("injected: sync failed");
    RETURN_IF_ERROR(PackWriterWrapper::Seal());
    state_->MarkSynced(id(), size());
    sealed_ = true;
    return Status::OK();
  }

 private:
  Status CheckAlive() const REQUIRES_SHARED(state_->crash_mu) {
    if (state_->epoch != epoch_) {
      return Status::IOError("injected: pack " + std::to_string(id()) + " lost in power loss");
    }
    return Status::OK();
  }

  const std::shared_ptr<State> state_;
  const uint64_t epoch_;
  bool sealed_ = false;
};

}  // namespace

FaultInjectionBackend::FaultInjectionBackend(std::unique_ptr<Backend> target)
    : BackendWrapper(std::move(target)), state_(std::make_shared<State>()) {}

FaultInjectionBackend::~FaultInjectionBackend() = default;

void FaultInjectionBackend::FailAppendsAfter(uint64_t bytes) { state_->append_budget = bytes; }
void FaultInjectionBackend::FailSyncs(bool fail) { state_->fail_syncs = fail; }
void FaultInjectionBackend::FailReads(bool fail) { state_->fail_reads = fail; }
void FaultInjectionBackend::CorruptReads(bool corrupt) { state_->corrupt_reads = corrupt; }
void FaultInjectionBackend::FailReadsOf(std::set<PackId> packs) {
  MutexLock lock(&state_->mu);
  state_->fail_read_packs = std::move(packs);
}
void FaultInjectionBackend::FailAppends(bool fail) { state_->fail_appends = fail; }
void FaultInjectionBackend::SetDelay(std::chrono::microseconds delay) {
  state_->delay_us = delay.count();
}

Status FaultInjectionBackend::DropUnsynced() {
  WriterMutexLock crash(&state_->crash_mu);
  ++state_->epoch;  // every writer opened so far is now dead
  std::map<PackId, uint64_t> synced;
  {
    MutexLock lock(&state_->mu);
    synced = state_->synced;
  }
  ASSIGN_OR_RETURN(std::vector<PackInfo> packs, target()->List());
  std::map<PackId, uint64_t> survivors;
  for (const PackInfo& pack : packs) {
    auto it = synced.find(pack.id);
    if (it == synced.end()) continue;  // not ours: durable
    const uint64_t durable = it->second;
    if (durable == State::kNeverSynced) {
      RETURN_IF_ERROR(target()->Remove(pack.id));
      continue;
    }
    survivors[pack.id] = durable;
    if (pack.size <= durable) continue;
    std::vector<uint8_t> keep(durable);
    RETURN_IF_ERROR(target()->Read(pack.id, 0, keep.size(), keep.data()));
    RETURN_IF_ERROR(target()->Remove(pack.id));
    ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> writer, target()->Create(pack.id));
    RETURN_IF_ERROR(writer->Append(keep).status());
    RETURN_IF_ERROR(writer->Seal());
  }
  MutexLock lock(&state_->mu);
  state_->synced = std::move(survivors);
  return Status::OK();
}

Result<std::unique_ptr<PackWriter>> FaultInjectionBackend::Create(PackId id) {
  ReaderMutexLock crash(&state_->crash_mu);
  state_->Delay();
  ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> inner, target()->Create(id));
  {
    MutexLock lock(&state_->mu);
    state_->synced[id] = State::kNeverSynced;
  }
  return std::unique_ptr<PackWriter>(
      std::make_unique<FaultPackWriter>(state_, std::move(inner), state_->epoch));
}

Status FaultInjectionBackend::Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const {
  ReaderMutexLock crash(&state_->crash_mu);
  state_->Delay();
  if (state_->fail_reads.load() || state_->FailsReadsOf(id)) {
    return Status::IOError("injected: read of pack " + std::to_string(id) + " failed");
  }
  RETURN_IF_ERROR(target()->Read(id, offset, len, out));
  if (state_->corrupt_reads.load() && len > 0) out[len / 2] ^= 0xff;
  return Status::OK();
}

Status FaultInjectionBackend::Remove(PackId id) {
  ReaderMutexLock crash(&state_->crash_mu);
  state_->Delay();
  RETURN_IF_ERROR(target()->Remove(id));
  MutexLock lock(&state_->mu);
  state_->synced.erase(id);
  return Status::OK();
}

Result<std::vector<PackInfo>> FaultInjectionBackend::List() const {
  ReaderMutexLock crash(&state_->crash_mu);
  return target()->List();
}

std::string FaultInjectionBackend::Describe() const {
  return "fault(" + target()->Describe() + ")";
}

}  // namespace snapfs
