// BackendWrapper and PackWriterWrapper: bases for decorators (leveldb's EnvWrapper). Each
// forwards EVERY virtual of its interface to the object it wraps, so a decorator overrides
// only the calls it changes and a method added to Backend later (as Prefetch was) reaches
// the wrapped backend without touching any decorator. Hand-written forwarding wrappers
// silently dropped Prefetch, because it has a default that does nothing: derive from these
// instead of from Backend or PackWriter whenever the job is "the same backend, but ...".
//
// A new virtual in Backend or PackWriter gets its forwarder here; BackendWrapperTest
// (tests/backend_wrapper_test.cc) checks that every call reaches the target.
//
// Thread-safety: that of the wrapped object; the wrappers add no state of their own.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.h"

namespace snapfs {

class BackendWrapper : public Backend {
 public:
  // Owns the target alone (a unique_ptr converts) or shares it with others (a test that
  // keeps a memory backend alive across Store reopens).
  explicit BackendWrapper(std::shared_ptr<Backend> target) : target_(std::move(target)) {}

  // The wrapped backend, to set up or inspect state behind the wrapper's back.
  Backend* target() const { return target_.get(); }

  Result<std::unique_ptr<PackWriter>> Create(PackId id) override { return target_->Create(id); }
  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    return target_->Read(id, offset, len, out);
  }
  void Prefetch(PackId id, uint64_t offset, uint64_t len) const override {
    target_->Prefetch(id, offset, len);
  }
  Status Remove(PackId id) override { return target_->Remove(id); }
  Result<std::vector<PackInfo>> List() const override { return target_->List(); }
  Result<SpaceInfo> Space() const override { return target_->Space(); }
  std::string Describe() const override { return target_->Describe(); }
  Status Probe() const override { return target_->Probe(); }

 private:
  const std::shared_ptr<Backend> target_;
};

class PackWriterWrapper : public PackWriter {
 public:
  explicit PackWriterWrapper(std::unique_ptr<PackWriter> target) : target_(std::move(target)) {}

  PackWriter* target() const { return target_.get(); }

  PackId id() const override { return target_->id(); }
  Result<uint64_t> Append(std::span<const uint8_t> data) override { return target_->Append(data); }
  Status Sync() override { return target_->Sync(); }
  void StartWriteback(uint64_t from, uint64_t to) override { target_->StartWriteback(from, to); }
  uint64_t size() const override { return target_->size(); }
  Status Seal() override { return target_->Seal(); }

 private:
  const std::unique_ptr<PackWriter> target_;
};

}  // namespace snapfs
