// A transaction's buffered writes, as the engines that buffer them on the client side
// (memory, PostgreSQL) keep them until Commit: the last change of each key of one key
// space, an Add folded into the Put or Delete before it (kv.h: read-your-own-writes, and
// "Put then Add" is a Put of the sum).
//
// Thread-safety: none; owned by one transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/meta/kv.h"

namespace snapfs::kv {

struct PendingOp {
  enum Kind { kPut, kDelete, kAdd } kind = kPut;
  std::string value;  // kPut
  int64_t delta = 0;  // kAdd
};
using PendingOps = std::map<std::string, PendingOp, std::less<>>;

inline void BufferPut(PendingOps* ops, std::string_view key, std::string_view value) {
  PendingOp& op = (*ops)[std::string(key)];
  op.kind = PendingOp::kPut;
  op.value.assign(value);
  op.delta = 0;
}

inline void BufferDelete(PendingOps* ops, std::string_view key) {
  PendingOp& op = (*ops)[std::string(key)];
  op.kind = PendingOp::kDelete;
  op.value.clear();
}

inline void BufferAdd(PendingOps* ops, std::string_view key, int64_t delta) {
  auto it = ops->find(key);
  if (it == ops->end()) {
    PendingOp op;
    op.kind = PendingOp::kAdd;
    op.delta = delta;
    ops->emplace(std::string(key), std::move(op));
    return;
  }
  PendingOp& op = it->second;
  if (op.kind == PendingOp::kAdd) {
    op.delta += delta;
  } else if (op.kind == PendingOp::kDelete) {
    op.kind = PendingOp::kPut;
    op.value = EncodeCounter(delta);
  } else {
    auto d = DecodeCounter(op.value);
    op.value = EncodeCounter((d.ok() ? *d : 0) + delta);
  }
}

// A transaction that buffers its writes in ops_ (one PendingOps per key space); the
// engine's subclass reads them through its Get/iterators and applies them at Commit.
class BufferingTxn : public Txn {
 public:
  // PutUnchecked and DeleteUnchecked are Txn's defaults: Put and Delete.
  void Put(Cf space, std::string_view key, std::string_view value) override {
    WillWrite();
    BufferPut(&ops_[static_cast<size_t>(space)], key, value);
  }
  void Delete(Cf space, std::string_view key) override {
    WillWrite();
    BufferDelete(&ops_[static_cast<size_t>(space)], key);
  }
  void Add(Cf space, std::string_view key, int64_t delta) override {
    if (!CfHasCounters(space)) {
      bad_add_ = space;  // Commit refuses (kv.h)
      return;
    }
    WillWrite();
    BufferAdd(&ops_[static_cast<size_t>(space)], key, delta);
  }
  size_t pending_writes() const override {
    size_t n = 0;
    for (const auto& m : ops_) n += m.size();
    return n;
  }

 protected:
  // Called before each write is buffered (an engine that starts its transaction lazily
  // starts it here if the write is the first operation).
  virtual void WillWrite() {}

  // An Add to a space without counters: the commit fails (BadAddStatus).
  Status BadAddStatus() const {
    if (!bad_add_) return Status::OK();
    return BadAdd(*bad_add_);
  }

  PendingOps ops_[kCfCount];
  std::optional<Cf> bad_add_;
};

}  // namespace snapfs::kv
