// Reading key ranges from PostgreSQL: ServerCursor pages through a table in key order,
// PgIterator merges those pages with a transaction's pending writes (read-your-own-
// writes). Private to core/meta/postgres_*.
#pragma once

#include <algorithm>
#include <map>
#include <string>

#include "core/meta/pending_writes.h"
#include "core/meta/postgres_wire.h"

namespace snapfs::kv::pg {

using Op = PendingOp;
using Ops = PendingOps;

// Pages of (key, value) from the server in key order, starting at a key and ending
// before `bound` ("": the end of the space); tombstones are skipped, counters summed.
class ServerCursor {
 public:
  ServerCursor(PostgresEngine* e, Conn* c, Cf space, std::string bound)
      : e_(e), c_(c), space_(space), bound_(std::move(bound)) {}
  void Seek(std::string_view from) {
    // A key inside the page in hand is answered from it: the page holds every live row
    // from page_from_ to last_, and the snapshot does not move under it. Scans that seek
    // key after nearby key (the extents of a snapshot's files in inode order) then cost
    // a round trip per page, not per seek.
    if (status_.ok() && !rows_.empty() && from >= page_from_ && from <= last_) {
      auto it = std::lower_bound(rows_.begin(), rows_.end(), from,
                                 [](const KeyValue& kv, std::string_view k) { return kv.key < k; });
      if (it != rows_.end()) {
        at_ = static_cast<size_t>(it - rows_.begin());
        return;
      }
    }
    rows_.clear();
    at_ = 0;
    more_ = true;
    Fetch(std::string(from));
  }
  bool Valid() const { return at_ < rows_.size(); }
  void Next() {
    at_++;
    if (at_ == rows_.size() && more_ && status_.ok()) {
      std::string from = last_ + '\0';  // the least key after last_
      rows_.clear();
      at_ = 0;
      Fetch(from);
    }
  }
  const std::string& key() const { return rows_[at_].key; }
  const std::string& value() const { return rows_[at_].value; }
  const Status& status() const { return status_; }
  void Fail(Status s) {
    status_ = std::move(s);
    rows_.clear();
  }

 private:
  // Fetches pages until one yields a live row or the space ends.
  void Fetch(std::string from) {
    page_from_ = from;
    while (status_.ok() && more_ && rows_.empty()) {
      if (!c_ || !c_->pg) {
        Fail(Status::IOError("metadata scan: no connection to PostgreSQL"));
        return;
      }
      std::string t = PostgresEngine::TableName(space_);
      std::string n = std::to_string(PostgresEngine::kPageRows);
      // The bound goes to the server: a page never holds rows past it, and the scan of
      // the table's index stops there.
      std::string range = bound_.empty() ? " k >= $2" : " k >= $2 AND k < $3";
      // A space without counters has no deltas to merge in ($1 unused there).
      std::string sql =
          CfHasCounters(space_)
              ? "WITH b AS (SELECT k, v FROM " + t + " WHERE" + range + " ORDER BY k LIMIT " +
                    n + "), d AS (SELECT k, sum(d) AS s FROM kv_deltas WHERE space = $1 AND" +
                    range + " GROUP BY k ORDER BY k LIMIT " + n +
                    ") SELECT coalesce(b.k, d.k), b.v, " + Wrapped("d.s") +
                    " FROM b FULL JOIN d ON b.k = d.k ORDER BY 1 LIMIT " + n
              : "SELECT k, v, NULL::int8 FROM " + t + " WHERE" + range + " ORDER BY k LIMIT " + n;
      std::vector<Param> params = {Int2(static_cast<int>(space_)), Bytes(from)};
      if (!bound_.empty()) params.push_back(Bytes(bound_));
      Wire w(e_, c_);
      auto r = w.Query(sql, params, "metadata scan");
      if (!r.ok()) {
        Fail(r.status());
        return;
      }
      const PGresult* res = r->get();
      int rows = PQntuples(res);
      more_ = static_cast<size_t>(rows) == PostgresEngine::kPageRows;
      for (int i = 0; i < rows; i++) {
        KeyValue kv;
        kv.key.assign(PQgetvalue(res, i, 0), static_cast<size_t>(PQgetlength(res, i, 0)));
        bool present = false;
        Status s = Decode(res, i, 1, 2, &kv.value, &present);
        if (!s.ok()) {
          Fail(s);
          return;
        }
        last_ = kv.key;
        if (present) rows_.push_back(std::move(kv));
      }
      from = last_ + '\0';
    }
  }

  PostgresEngine* e_;
  Conn* c_;
  Cf space_;
  std::string bound_;
  std::vector<KeyValue> rows_;
  size_t at_ = 0;
  bool more_ = false;
  std::string page_from_;  // the page in rows_ holds every live row from here to last_
  std::string last_;
  Status status_;
};

// A server cursor with a transaction's pending changes merged over it.
class PgIterator : public Iterator {
 public:
  // `ops`: the transaction's changes to this space, or nullptr. `owned`: a connection
  // in a read-only snapshot transaction that the iterator ends and returns. `bound`: the
  // iterator ends before it ("": at the end of the space).
  PgIterator(PostgresEngine* e, Conn* c, Cf space, const Ops* ops, std::unique_ptr<Conn> owned,
             Status err, std::string bound = {})
      : e_(e),
        owned_(std::move(owned)),
        base_(e, c, space, bound),
        ops_(ops),
        bound_(std::move(bound)) {
    if (!err.ok()) base_.Fail(std::move(err));
  }
  ~PgIterator() override {
    if (owned_) {
      if (owned_->pg && PQtransactionStatus(owned_->pg) != PQTRANS_IDLE) {
        (void)Wire(e_, owned_.get()).Simple("ROLLBACK", "end snapshot");
      }
      e_->Release(std::move(owned_));
    }
  }
  void Seek(std::string_view key) override {
    if (!base_.status().ok()) return;
    base_.Seek(key);
    Settle(key, /*after=*/false);
  }
  bool Valid() const override { return valid_ && base_.status().ok(); }
  void Next() override {
    if (base_.Valid() && base_.key() == key_) base_.Next();
    std::string cur = key_;
    Settle(cur, /*after=*/true);
  }
  std::string_view key() const override { return key_; }
  std::string_view value() const override { return value_; }
  Status status() const override { return base_.status(); }

 private:
  // Positions on the least key >= `from` (> if `after`) of server rows and pending ops.
  void Settle(std::string_view from, bool after) {
    valid_ = false;
    std::string at(from);
    bool excl = after;
    while (base_.status().ok()) {
      const std::pair<const std::string, Op>* op = nullptr;
      if (ops_) {
        auto it = excl ? ops_->upper_bound(at) : ops_->lower_bound(at);
        // Pending changes past the bound are not this iterator's (the server's rows
        // already end before it).
        if (it != ops_->end() && (bound_.empty() || it->first < bound_)) op = &*it;
      }
      bool base = base_.Valid();
      if (!base && !op) return;
      if (op && (!base || op->first <= base_.key())) {
        bool same = base && base_.key() == op->first;
        if (op->second.kind == Op::kDelete) {
          if (same) base_.Next();
          at = op->first;
          excl = true;
          continue;
        }
        key_ = op->first;
        if (op->second.kind == Op::kPut) {
          value_ = op->second.value;
        } else {
          int64_t under = 0;
          if (same) {
            auto d = DecodeCounter(base_.value());
            if (d.ok()) under = *d;
          }
          value_ = EncodeCounter(under + op->second.delta);
        }
        valid_ = true;
        return;
      }
      key_ = base_.key();
      value_ = base_.value();
      valid_ = true;
      return;
    }
  }

  PostgresEngine* e_;
  std::unique_ptr<Conn> owned_;
  ServerCursor base_;
  const Ops* ops_;
  std::string bound_;
  bool valid_ = false;
  std::string key_, value_;
};

}  // namespace snapfs::kv::pg
