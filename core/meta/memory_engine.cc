// The memory engine: multi-version maps under one mutex. Small and obviously right, so
// that the conformance suite has a model to hold the other engines against, and so that
// tests can share one engine between two Filesystems as if they were two daemons.
//
// Every key keeps its versions (commit sequence, value or tombstone). A transaction
// reads the versions at or below the sequence of its Begin(); Commit checks that no key
// it read or wrote has a version above that sequence, then writes all of its changes at
// the next sequence. Versions no open snapshot can see are dropped at each commit.
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "core/meta/kv.h"

namespace snapfs::kv {
namespace {

struct Version {
  uint64_t seq = 0;
  bool deleted = false;
  std::string value;
};
using Versions = std::vector<Version>;  // ascending seq
using Space = std::map<std::string, Versions, std::less<>>;

const Version* Visible(const Versions& vs, uint64_t snap) {
  for (auto it = vs.rbegin(); it != vs.rend(); ++it) {
    if (it->seq <= snap) return it->deleted ? nullptr : &*it;
  }
  return nullptr;
}

// One pending change of a key in a transaction.
struct Op {
  enum Kind { kPut, kDelete, kAdd } kind = kPut;
  std::string value;  // kPut
  int64_t delta = 0;  // kAdd
  bool checked = false;  // written by Put/Delete (not only by the *Unchecked calls or Add)
};

class MemoryEngine;

// Reads of one snapshot, merged with a transaction's pending ops (or none).
class MemIterator : public Iterator {
 public:
  MemIterator(MemoryEngine* e, Cf space, uint64_t snap, const std::map<std::string, Op, std::less<>>* ops);
  ~MemIterator() override;
  void Seek(std::string_view key) override { Position(key, /*after=*/false); }
  bool Valid() const override { return valid_; }
  void Next() override {
    std::string cur = key_;
    Position(cur, /*after=*/true);
  }
  std::string_view key() const override { return key_; }
  std::string_view value() const override { return value_; }
  Status status() const override { return Status::OK(); }

 private:
  void Position(std::string_view from, bool after);
  MemoryEngine* e_;
  Cf space_;
  uint64_t snap_;
  const std::map<std::string, Op, std::less<>>* ops_;
  bool valid_ = false;
  std::string key_, value_;
};

class MemTxn : public Txn {
 public:
  MemTxn(MemoryEngine* e, uint64_t snap) : e_(e), snap_(snap) {}
  ~MemTxn() override;
  Status Get(Cf space, std::string_view key, std::string* value) override;
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    return std::make_unique<MemIterator>(e_, space, snap_, &ops_[static_cast<size_t>(space)]);
  }
  void Put(Cf space, std::string_view key, std::string_view value) override {
    Write(space, key, value, /*checked=*/true);
  }
  void Delete(Cf space, std::string_view key) override { Erase(space, key, /*checked=*/true); }
  void PutUnchecked(Cf space, std::string_view key, std::string_view value) override {
    Write(space, key, value, /*checked=*/false);
  }
  void DeleteUnchecked(Cf space, std::string_view key) override {
    Erase(space, key, /*checked=*/false);
  }
  void Add(Cf space, std::string_view key, int64_t delta) override;
  Status Commit(bool sync) override;
  size_t pending_writes() const override {
    size_t n = 0;
    for (const auto& m : ops_) n += m.size();
    return n;
  }

 private:
  friend class MemoryEngine;
  void Write(Cf space, std::string_view key, std::string_view value, bool checked) {
    Op& op = ops_[static_cast<size_t>(space)][std::string(key)];
    op.kind = Op::kPut;
    op.value.assign(value);
    op.delta = 0;
    op.checked = op.checked || checked;
  }
  void Erase(Cf space, std::string_view key, bool checked) {
    Op& op = ops_[static_cast<size_t>(space)][std::string(key)];
    op.kind = Op::kDelete;
    op.value.clear();
    op.checked = op.checked || checked;
  }
  MemoryEngine* e_;
  uint64_t snap_;
  bool done_ = false;
  Status bad_add_;  // an Add to a space without counters (kv.h)
  std::map<std::string, Op, std::less<>> ops_[kCfCount];
  std::set<std::string> read_[kCfCount];
};

class MemoryEngine : public Engine {
 public:
  std::unique_ptr<Txn> Begin() override {
    std::lock_guard l(mu_);
    active_.insert(seq_);
    return std::make_unique<MemTxn>(this, seq_);
  }
  Status Get(Cf space, std::string_view key, std::string* value) override {
    std::lock_guard l(mu_);
    return GetLocked(space, key, seq_, value);
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    uint64_t snap;
    {
      std::lock_guard l(mu_);
      snap = seq_;
      active_.insert(snap);
    }
    return std::make_unique<MemIterator>(this, space, snap, nullptr);
  }
  Status Sync() override { return Status::OK(); }
  std::string Describe() const override { return "memory"; }

  Status GetLocked(Cf space, std::string_view key, uint64_t snap, std::string* value) {
    const Space& m = data_[static_cast<size_t>(space)];
    auto it = m.find(key);
    if (it == m.end()) return Status::NotFound();
    const Version* v = Visible(it->second, snap);
    if (!v) return Status::NotFound();
    *value = v->value;
    return Status::OK();
  }

  // First visible key at or after `from` (after it, if `after`), or nullopt.
  std::optional<std::pair<std::string, std::string>> NextVisible(Cf space, std::string_view from,
                                                                 bool after, uint64_t snap) {
    std::lock_guard l(mu_);
    const Space& m = data_[static_cast<size_t>(space)];
    auto it = after ? m.upper_bound(from) : m.lower_bound(from);
    for (; it != m.end(); ++it) {
      if (const Version* v = Visible(it->second, snap)) return std::make_pair(it->first, v->value);
    }
    return std::nullopt;
  }

  void Release(uint64_t snap) {
    std::lock_guard l(mu_);
    active_.erase(active_.find(snap));
  }

  Status Commit(MemTxn* t) {
    std::lock_guard l(mu_);
    // Conflicts: a key read or written with Put/Delete (not only added to, nor only
    // written unchecked) got a version after our snapshot.
    auto newer = [&](size_t s, const std::string& k) {
      auto it = data_[s].find(k);
      return it != data_[s].end() && !it->second.empty() && it->second.back().seq > t->snap_;
    };
    for (size_t s = 0; s < kCfCount; s++) {
      for (const auto& k : t->read_[s]) {
        if (newer(s, k)) return Status::Conflict("key read by this transaction changed");
      }
      for (const auto& [k, op] : t->ops_[s]) {
        if (op.checked && newer(s, k)) {
          return Status::Conflict("key written by this transaction changed");
        }
      }
    }
    uint64_t seq = seq_ + 1;
    for (size_t s = 0; s < kCfCount; s++) {
      for (const auto& [k, op] : t->ops_[s]) {
        Versions& vs = data_[s][k];
        Version v{seq, false, {}};
        if (op.kind == Op::kPut) {
          v.value = op.value;
        } else if (op.kind == Op::kDelete) {
          v.deleted = true;
        } else {
          int64_t base = 0;
          if (!vs.empty() && !vs.back().deleted) {
            auto d = DecodeCounter(vs.back().value);
            if (d.ok()) base = *d;
          }
          v.value = EncodeCounter(base + op.delta);
        }
        vs.push_back(std::move(v));
        Prune(s, k);
      }
    }
    seq_ = seq;
    return Status::OK();
  }

 private:
  // Drops versions of `k` that no open snapshot (nor a future one) can see.
  void Prune(size_t s, const std::string& k) {
    uint64_t oldest = active_.empty() ? UINT64_MAX : *active_.begin();
    Versions& vs = data_[s][k];
    // Keep the newest version at or below `oldest` and everything after it.
    size_t keep_from = 0;
    for (size_t i = 0; i < vs.size(); i++) {
      if (vs[i].seq <= oldest) keep_from = i;
    }
    if (keep_from > 0) vs.erase(vs.begin(), vs.begin() + static_cast<std::ptrdiff_t>(keep_from));
    if (vs.size() == 1 && vs[0].deleted && vs[0].seq <= oldest) data_[s].erase(k);
  }

  std::mutex mu_;
  uint64_t seq_ = 0;  // of the last commit
  Space data_[kCfCount];
  std::multiset<uint64_t> active_;  // snapshots of open transactions and iterators
};

MemIterator::MemIterator(MemoryEngine* e, Cf space, uint64_t snap,
                         const std::map<std::string, Op, std::less<>>* ops)
    : e_(e), space_(space), snap_(snap), ops_(ops) {}

MemIterator::~MemIterator() {
  // A transaction's iterators share its snapshot registration; a bare one has its own.
  if (!ops_) e_->Release(snap_);
}

void MemIterator::Position(std::string_view from, bool after) {
  std::string at(from);
  bool excl = after;
  while (true) {
    auto base = e_->NextVisible(space_, at, excl, snap_);
    const std::pair<const std::string, Op>* op = nullptr;
    if (ops_) {
      auto it = excl ? ops_->upper_bound(at) : ops_->lower_bound(at);
      if (it != ops_->end()) op = &*it;
    }
    if (!base && !op) {
      valid_ = false;
      return;
    }
    if (op && (!base || op->first <= base->first)) {
      int64_t under = 0;
      bool has_base = base && base->first == op->first;
      if (has_base && op->second.kind == Op::kAdd) {
        auto d = DecodeCounter(base->second);
        if (d.ok()) under = *d;
      }
      if (op->second.kind == Op::kDelete) {
        at = op->first;
        excl = true;
        continue;
      }
      key_ = op->first;
      value_ = op->second.kind == Op::kPut ? op->second.value
                                           : EncodeCounter(under + op->second.delta);
      valid_ = true;
      return;
    }
    key_ = base->first;
    value_ = base->second;
    valid_ = true;
    return;
  }
}

MemTxn::~MemTxn() { e_->Release(snap_); }

Status MemTxn::Get(Cf space, std::string_view key, std::string* value) {
  size_t s = static_cast<size_t>(space);
  read_[s].emplace(key);
  auto it = ops_[s].find(key);
  if (it != ops_[s].end() && it->second.kind != Op::kAdd) {
    if (it->second.kind == Op::kDelete) return Status::NotFound();
    *value = it->second.value;
    return Status::OK();
  }
  Status st;
  {
    std::string base;
    // Read under the engine lock: a snapshot read.
    auto snap = e_->NextVisible(space, key, false, snap_);
    if (snap && snap->first == key) {
      base = snap->second;
    } else {
      st = Status::NotFound();
    }
    if (it == ops_[s].end()) {
      if (st.ok()) *value = std::move(base);
      return st;
    }
    int64_t under = 0;
    if (st.ok()) {
      ASSIGN_OR_RETURN(under, DecodeCounter(base));
    }
    *value = EncodeCounter(under + it->second.delta);
    return Status::OK();
  }
}

void MemTxn::Add(Cf space, std::string_view key, int64_t delta) {
  if (!CfHasCounters(space)) {
    if (bad_add_.ok()) bad_add_ = BadAdd(space);  // kv.h: the commit fails
    return;
  }
  auto& m = ops_[static_cast<size_t>(space)];
  auto it = m.find(key);
  if (it == m.end()) {
    Op op;
    op.kind = Op::kAdd;
    op.delta = delta;
    m.emplace(std::string(key), std::move(op));
    return;
  }
  Op& op = it->second;
  if (op.kind == Op::kAdd) {
    op.delta += delta;
  } else if (op.kind == Op::kDelete) {
    op.kind = Op::kPut;
    op.value = EncodeCounter(delta);
  } else {
    auto d = DecodeCounter(op.value);
    op.value = EncodeCounter((d.ok() ? *d : 0) + delta);
  }
}

Status MemTxn::Commit(bool) {
  if (done_) return Status::InvalidArgument("transaction already committed");
  done_ = true;
  RETURN_IF_ERROR(bad_add_);
  return e_->Commit(this);
}

}  // namespace

std::unique_ptr<Engine> NewMemoryEngine() { return std::make_unique<MemoryEngine>(); }

}  // namespace snapfs::kv
