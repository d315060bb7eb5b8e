#include "core/meta/kv.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "base/coding.h"
#include "base/metrics.h"

namespace snapfs::kv {

Status Txn::Scan(Cf space, std::string_view begin, std::string_view end, size_t limit,
                 std::vector<KeyValue>* out) {
  auto it = NewIterator(space);
  for (it->Seek(begin); it->Valid() && out->size() < limit; it->Next()) {
    if (!end.empty() && it->key() >= end) break;
    out->push_back(KeyValue{std::string(it->key()), std::string(it->value())});
  }
  return it->status();
}

namespace {
// Ends an iterator at an exclusive upper bound.
class BoundedIterator : public Iterator {
 public:
  BoundedIterator(std::unique_ptr<Iterator> it, std::string_view bound)
      : it_(std::move(it)), bound_(bound) {}
  void Seek(std::string_view key) override { it_->Seek(key); }
  bool Valid() const override { return it_->Valid() && it_->key() < bound_; }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return it_->key(); }
  std::string_view value() const override { return it_->value(); }
  Status status() const override { return it_->status(); }

 private:
  std::unique_ptr<Iterator> it_;
  std::string bound_;
};
}  // namespace

std::unique_ptr<Iterator> Txn::NewBoundedIterator(Cf space, std::string_view upper_bound) {
  return std::make_unique<BoundedIterator>(NewIterator(space), upper_bound);
}

std::unique_ptr<Iterator> ReadView::NewBoundedIterator(Cf space, std::string_view upper_bound) {
  return std::make_unique<BoundedIterator>(NewIterator(space), upper_bound);
}

std::unique_ptr<Iterator> Engine::NewBoundedIterator(Cf space, std::string_view upper_bound) {
  return std::make_unique<BoundedIterator>(NewIterator(space), upper_bound);
}

namespace {
class TxnReadView : public ReadView {
 public:
  explicit TxnReadView(std::unique_ptr<Txn> t) : t_(std::move(t)) {}
  Status Get(Cf space, std::string_view key, std::string* value) override {
    return t_->Get(space, key, value);
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override { return t_->NewIterator(space); }

 private:
  std::unique_ptr<Txn> t_;
};
}  // namespace

Result<std::unique_ptr<ReadView>> Engine::NewReadView() {
  return std::unique_ptr<ReadView>(std::make_unique<TxnReadView>(Begin()));
}

namespace {
// MultiGet by one Get per key, for Txn and Engine alike.
template <typename Reader>
Status GetEach(Reader& r, Cf space, const std::vector<std::string>& keys,
               std::vector<std::optional<std::string>>* values) {
  values->assign(keys.size(), std::nullopt);
  for (size_t i = 0; i < keys.size(); i++) {
    std::string v;
    Status s = r.Get(space, keys[i], &v);
    if (s.ok()) {
      (*values)[i] = std::move(v);
    } else if (!s.Is(Code::kNotFound)) {
      return s;
    }
  }
  return Status::OK();
}
}  // namespace

Status Txn::MultiGet(Cf space, const std::vector<std::string>& keys,
                     std::vector<std::optional<std::string>>* values) {
  return GetEach(*this, space, keys, values);
}

Status Engine::MultiGet(Cf space, const std::vector<std::string>& keys,
                        std::vector<std::optional<std::string>>* values) {
  return GetEach(*this, space, keys, values);
}

Result<int64_t> Txn::GetCounter(Cf space, std::string_view key) {
  return ReadCounter(*this, space, key);
}

std::string EncodeCounter(int64_t v) {
  std::string s;
  PutLE64(&s, static_cast<uint64_t>(v));
  return s;
}

Result<int64_t> DecodeCounter(std::string_view v) {
  if (v.size() != 8) return Status::Corruption("counter has " + std::to_string(v.size()) + " bytes");
  return static_cast<int64_t>(GetLE64(v.data()));
}

namespace {

// RetryOnConflict, returning the last Conflict when every attempt conflicted.
Status RetryLoop(const std::function<Status()>& attempt, int max_attempts) {
  thread_local std::minstd_rand rng(std::random_device{}());
  Status last = Status::Conflict("no attempt made");
  for (int i = 0; i < max_attempts; i++) {
    if (i > 0) {
      // Two transactions that keep colliding must not retry in lockstep: sleep a random
      // while, growing with the attempts (at most ~10 ms).
      int cap_us = std::min(10000, 50 << std::min(i, 8));
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % cap_us));
    }
    Status s = attempt();
    if (!s.Is(Code::kConflict)) return s;
    metrics::TxnConflicts().Inc();
    last = s;
  }
  return last;
}

Status KeptConflicting(const Status& last, int max_attempts) {
  if (!last.Is(Code::kConflict)) return last;
  return Status::Busy("transaction kept conflicting after " + std::to_string(max_attempts) +
                      " attempts: " + last.message());
}

}  // namespace

Status RetryOnConflict(const std::function<Status()>& attempt, int max_attempts) {
  return KeptConflicting(RetryLoop(attempt, max_attempts), max_attempts);
}

Status PrefetchInBatches(Txn& t, const std::vector<std::pair<Cf, std::string>>& keys) {
  for (size_t i = 0; i < keys.size(); i += kPrefetchBatch) {
    const size_t n = std::min(kPrefetchBatch, keys.size() - i);
    std::vector<std::pair<Cf, std::string>> part(keys.begin() + static_cast<ptrdiff_t>(i),
                                                 keys.begin() + static_cast<ptrdiff_t>(i + n));
    RETURN_IF_ERROR(t.Prefetch(part));
  }
  return Status::OK();
}

Status RunTxn(Engine& engine, const std::function<Status(Txn&)>& body, RunOptions opts) {
  Status s = RetryLoop(
      [&]() -> Status {
        auto txn = engine.Begin();
        RETURN_IF_ERROR(body(*txn));
        return txn->Commit(opts.sync);
      },
      opts.max_attempts);
  return opts.return_conflict ? s : KeptConflicting(s, opts.max_attempts);
}

}  // namespace snapfs::kv
