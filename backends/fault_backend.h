// FaultInjectionBackend: a Backend decorator for tests that injects faults into the backend
// it wraps (leveldb's EnvWrapper and fault_injection_test). With no fault set it forwards
// every call unchanged (BackendWrapper forwards what it does not override, Prefetch
// included), so it passes the backend conformance suite like any backend.
//
// Simulated power loss (DropUnsynced) works over ANY wrapped backend, with no test-only hook
// in the real ones: the wrapper remembers, for each pack created through it, its size at the
// last successful Sync or Seal, and DropUnsynced rewrites each pack to that prefix through
// the ordinary Backend interface (Read the prefix, Remove, Create the same id, Append,
// Seal). A pack never synced is removed: its name was never made durable either. Packs the
// wrapper did not create are treated as durable. Writers opened before the "crash" are dead:
// every later Append, Sync or Seal on them returns IOError.
//
// Thread-safety: every method, the fault knobs included, may be called from any thread.
// DropUnsynced waits for calls in flight and holds off new ones while it runs.
#pragma once

#include <cstdint>
#include <limits>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/backend_wrapper.h"

namespace snapfs {

class FaultInjectionBackend final : public BackendWrapper {
 public:
  static constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

  explicit FaultInjectionBackend(std::unique_ptr<Backend> target);
  ~FaultInjectionBackend() override;

  // Allows `bytes` more bytes to be appended, in total over all packs, counted from this
  // call. An Append that does not fit then fails with NoSpace ("injected: device full") and
  // appends nothing. kNoLimit (the initial state) lifts the limit.
  void FailAppendsAfter(uint64_t bytes);
  // While set, Sync and Seal return IOError and make nothing durable.
  void FailSyncs(bool fail);
  // While set, Read returns IOError.
  void FailReads(bool fail);
  // While set, Read succeeds but the byte in the middle of its output is flipped.
  void CorruptReads(bool corrupt);
  // Reads of these packs return IOError (the others are served); empty: none.
  void FailReadsOf(std::set<PackId> packs);
  // While set, Append returns IOError ("injected: write failed") and appends nothing.
  void FailAppends(bool fail);
  // Every Create, Append, Sync, Seal, Read and Remove first sleeps this long (slow I/O).
  void SetDelay(std::chrono::microseconds delay);
  // Simulates power loss: truncates every pack created through this wrapper to its size at
  // its last successful Sync or Seal (see above). Errors are those of the wrapped backend.
  Status DropUnsynced();

  Result<std::unique_ptr<PackWriter>> Create(PackId id) override;
  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override;
  Status Remove(PackId id) override;
  Result<std::vector<PackInfo>> List() const override;
  std::string Describe() const override;

  struct State;  // the knobs and synced sizes, shared with the writers

 private:
  const std::shared_ptr<State> state_;
};

}  // namespace snapfs
