// EngineWrapper: forwards every call to another engine, so that a decorator overrides
// only what it changes (leveldb's EnvWrapper; backends/backend_wrapper.h for packs).
// Tests use it to keep a memory engine alive across a Store's reopen, and to inject
// faults.
//
// Thread-safety: as the wrapped engine's.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/meta/kv.h"

namespace snapfs::kv {

class EngineWrapper : public Engine {
 public:
  explicit EngineWrapper(std::shared_ptr<Engine> target) : target_(std::move(target)) {}

  std::unique_ptr<Txn> Begin() override { return target_->Begin(); }
  Status Get(Cf space, std::string_view key, std::string* value) override {
    return target_->Get(space, key, value);
  }
  Status MultiGet(Cf space, const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values) override {
    return target_->MultiGet(space, keys, values);
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override { return target_->NewIterator(space); }
  std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound) override {
    return target_->NewBoundedIterator(space, upper_bound);
  }
  Result<std::unique_ptr<ReadView>> NewReadView() override { return target_->NewReadView(); }
  std::unique_ptr<Iterator> NewScanIterator(Cf space) override { return target_->NewScanIterator(space); }
  Status Sync() override { return target_->Sync(); }
  std::string Describe() const override { return target_->Describe(); }
  Status Compact() override { return target_->Compact(); }

  Engine& target() { return *target_; }

 private:
  std::shared_ptr<Engine> target_;
};

}  // namespace snapfs::kv
