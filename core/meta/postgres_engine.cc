#include "core/meta/postgres_engine.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <map>

#include "base/coding.h"
#include "core/meta/pending_writes.h"

namespace snapfs::kv {

struct PostgresEngine::Conn {
  PGconn* pg = nullptr;
  bool pooled = false;  // came from the idle pool (may have died while idle)
  // A ROLLBACK was sent and its answer not read yet: a transaction that wrote nothing
  // ends without waiting for the server (Acquire reads the answer before reuse).
  bool rollback_sent = false;
  PostgresEngine* owner = nullptr;  // counts its open connections
  ~Conn() {
    if (pg) PQfinish(pg);
    if (owner) owner->ConnectionClosed();
  }
  bool healthy() const {
    if (!pg || PQstatus(pg) != CONNECTION_OK || PQpipelineStatus(pg) != PQ_PIPELINE_OFF) {
      return false;
    }
    const auto t = PQtransactionStatus(pg);
    return t == PQTRANS_IDLE || (rollback_sent && t == PQTRANS_ACTIVE);
  }
};

namespace {

using Conn = PostgresEngine::Conn;
using Clock = std::chrono::steady_clock;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Res = std::unique_ptr<PGresult, ResultDeleter>;

constexpr Oid kInt2Oid = 21, kInt8Oid = 20, kByteaOid = 17;

// A bound parameter, always sent in binary: bytea as is, integers big-endian.
struct Param {
  Oid type;
  std::string bytes;
  bool null = false;
};
Param Bytes(std::string_view b) { return Param{kByteaOid, std::string(b)}; }
Param NullBytes() { return Param{kByteaOid, {}, true}; }
Param Int2(int v) {
  uint16_t be = htons(static_cast<uint16_t>(v));
  return Param{kInt2Oid, std::string(reinterpret_cast<const char*>(&be), 2)};
}
Param Int8(int64_t v) {
  std::string s(8, '\0');
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; i++) s[7 - i] = static_cast<char>((u >> (8 * i)) & 0xff);
  return Param{kInt8Oid, std::move(s)};
}
int64_t ReadInt8(const char* p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = (u << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(u);
}

// The sum of int8 deltas (numeric, never overflows) wrapped to int8 as two's complement
// additions wrap, so that counters match the other engines bit for bit.
std::string Wrapped(const std::string& numeric) {
  return "((((" + numeric +
         ") % 18446744073709551616 + 27670116110564327424) % 18446744073709551616)"
         " - 9223372036854775808)::int8";
}

std::string ConnError(PGconn* pg) {
  std::string m = pg ? PQerrorMessage(pg) : "no connection";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// The one place server errors become ours. A transaction that lost a race (40001
// serialization failure, 40P01 deadlock, 55P03 a row locked by a committing writer)
// is Conflict; a statement_timeout is Busy; a lost connection IOError.
Status FromPg(const PGresult* r, PGconn* pg, std::string_view context) {
  if (pg && PQstatus(pg) == CONNECTION_BAD) {
    return Status::IOError(std::string(context) + ": connection to PostgreSQL lost: " +
                           ConnError(pg));
  }
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg = r ? PQresultErrorMessage(r) : ConnError(pg);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  std::string m = std::string(context) + ": " + msg;
  std::string_view s = state ? state : "";
  // 23P01: the counter-read check of Commit (kv_deltas' exclusion constraint) met an add
  // committed after this transaction's snapshot. 23505: two inserts of one new key.
  if (s == "40001" || s == "40P01" || s == "55P03" || s == "23P01" || s == "23505") {
    return Status::Conflict(m);
  }
  if (s == "57014") return Status::Busy(m + " (statement_timeout)");
  if (s.substr(0, 2) == "53") return Status::Busy(m);
  if (s == "42P01") return Status::NotFound(m);
  return Status::IOError(m);
}

class Wire {
 public:
  Wire(PostgresEngine* e, Conn* c)
      : e_(e), c_(c), deadline_(Clock::now() + e->options().statement_timeout + std::chrono::seconds(5)) {}

  Status Send(const std::string& sql, const std::vector<Param>& params) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    std::vector<Oid> types;
    for (const auto& p : params) {
      types.push_back(p.type);
      values.push_back(p.null ? nullptr : p.bytes.data());
      lengths.push_back(static_cast<int>(p.bytes.size()));
      formats.push_back(1);
    }
    if (!PQsendQueryParams(c_->pg, sql.c_str(), static_cast<int>(params.size()), types.data(),
                           values.data(), lengths.data(), formats.data(), /*binary=*/1)) {
      return FromPg(nullptr, c_->pg, "send");
    }
    return Status::OK();
  }
  // Several statements as one simple query (text results, no parameters).
  Status SendSimple(const std::string& sql) {
    if (!PQsendQuery(c_->pg, sql.c_str())) return FromPg(nullptr, c_->pg, "send");
    return Status::OK();
  }

  // Sends what is buffered and waits until a result can be read without blocking.
  // Counts one round trip per call that had to wait for the server.
  Status Flush() {
    e_->CountRoundTrip();
    while (true) {
      int r = PQflush(c_->pg);
      if (r < 0) return FromPg(nullptr, c_->pg, "send");
      if (r == 0) return Status::OK();
      RETURN_IF_ERROR(Poll(POLLIN | POLLOUT));
      if (!PQconsumeInput(c_->pg)) return FromPg(nullptr, c_->pg, "receive");
    }
  }
  // The next result (nullptr after the last one of a statement).
  Result<Res> Next() {
    while (PQisBusy(c_->pg)) {
      RETURN_IF_ERROR(Poll(POLLIN));
      if (!PQconsumeInput(c_->pg)) return FromPg(nullptr, c_->pg, "receive");
    }
    return Res(PQgetResult(c_->pg));
  }
  // Every result of one statement; the tuples (or command) result, or its error.
  // `aborted`: the server skipped it (pipeline mode, after an earlier error).
  Result<Res> Collect(std::string_view context, bool* aborted = nullptr) {
    Res keep;
    Status err;
    while (true) {
      ASSIGN_OR_RETURN(Res r, Next());
      if (!r) break;
      ExecStatusType st = PQresultStatus(r.get());
      if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        keep = std::move(r);
      } else if (st == PGRES_PIPELINE_ABORTED) {
        if (aborted) *aborted = true;
        if (err.ok()) err = Status::IOError(std::string(context) + ": skipped after an error");
      } else if (err.ok()) {
        err = FromPg(r.get(), c_->pg, context);
      }
    }
    RETURN_IF_ERROR(err);
    return keep;
  }
  // One statement, one round trip.
  Result<Res> Query(const std::string& sql, const std::vector<Param>& params,
                    std::string_view context) {
    RETURN_IF_ERROR(Send(sql, params));
    RETURN_IF_ERROR(Flush());
    return Collect(context);
  }
  Status Simple(const std::string& sql, std::string_view context) {
    RETURN_IF_ERROR(SendSimple(sql));
    RETURN_IF_ERROR(Flush());
    return Collect(context).status();
  }

 private:
  // Waits for the socket, never past the deadline: a server that stopped answering
  // (network partition, frozen host) is Busy, and the connection is dropped since its
  // protocol state is unknown.
  Status Poll(short events) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    if (left.count() <= 0) return TimedOut();
    pollfd p{PQsocket(c_->pg), events, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n == 0) return TimedOut();
    if (n < 0 && errno != EINTR) return Status::IOError("poll on the PostgreSQL connection failed");
    return Status::OK();
  }
  Status TimedOut() {
    PQfinish(c_->pg);
    c_->pg = nullptr;
    return Status::Busy("no answer from PostgreSQL within the statement deadline");
  }

  PostgresEngine* e_;
  Conn* c_;
  Clock::time_point deadline_;
};

std::string DeltaSum(const std::string& space_param, const std::string& key_expr) {
  return Wrapped("SELECT sum(d) FROM kv_deltas WHERE space = " + space_param +
                 " AND k = " + key_expr);
}

// One key as the server has it: the base row (a tombstone if v is NULL) and the sum of
// its counter deltas. NotFound if neither.
struct ServerRow {
  bool row = false;  // a base row (value or tombstone) exists
  bool has_value = false;
  std::string value;
};

Status Decode(const PGresult* r, int i, int vcol, int scol, std::string* out, bool* present) {
  bool base = !PQgetisnull(r, i, vcol);
  std::string_view v(PQgetvalue(r, i, vcol), static_cast<size_t>(PQgetlength(r, i, vcol)));
  if (PQgetisnull(r, i, scol)) {
    *present = base;
    if (base) out->assign(v);
    return Status::OK();
  }
  int64_t under = 0;
  if (base) {
    ASSIGN_OR_RETURN(under, DecodeCounter(v));
  }
  int64_t sum = ReadInt8(PQgetvalue(r, i, scol));
  *out = EncodeCounter(static_cast<int64_t>(static_cast<uint64_t>(under) + static_cast<uint64_t>(sum)));
  *present = true;
  return Status::OK();
}

Result<ServerRow> GetRow(PostgresEngine* e, Conn* c, Cf space, std::string_view key) {
  std::string t = PostgresEngine::TableName(space);
  std::string sql = "SELECT b.v, b.k IS NOT NULL, (" + DeltaSum("$1", "$2") +
                    ") FROM (SELECT 1) AS one LEFT JOIN " + t + " b ON b.k = $2";
  Wire w(e, c);
  ASSIGN_OR_RETURN(Res r, w.Query(sql, {Int2(static_cast<int>(space)), Bytes(key)}, "metadata get"));
  if (!r || PQntuples(r.get()) != 1) return Status::IOError("metadata get: no row from the server");
  ServerRow out;
  out.row = PQgetvalue(r.get(), 0, 1)[0] != 0;
  RETURN_IF_ERROR(Decode(r.get(), 0, 0, 2, &out.value, &out.has_value));
  return out;
}

using Op = PendingOp;
using Ops = PendingOps;

// Pages of (key, value) from the server in key order, starting at a key; tombstones
// are skipped, counters summed.
class ServerCursor {
 public:
  ServerCursor(PostgresEngine* e, Conn* c, Cf space) : e_(e), c_(c), space_(space) {}
  void Seek(std::string_view from) {
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
    while (status_.ok() && more_ && rows_.empty()) {
      if (!c_ || !c_->pg) {
        Fail(Status::IOError("metadata scan: no connection to PostgreSQL"));
        return;
      }
      std::string t = PostgresEngine::TableName(space_);
      std::string n = std::to_string(PostgresEngine::kPageRows);
      std::string sql =
          "WITH b AS (SELECT k, v FROM " + t + " WHERE k >= $2 ORDER BY k LIMIT " + n +
          "), d AS (SELECT k, sum(d) AS s FROM kv_deltas WHERE space = $1 AND k >= $2"
          " GROUP BY k ORDER BY k LIMIT " + n +
          ") SELECT coalesce(b.k, d.k), b.v, " + Wrapped("d.s") +
          " FROM b FULL JOIN d ON b.k = d.k ORDER BY 1 LIMIT " + n;
      Wire w(e_, c_);
      auto r = w.Query(sql, {Int2(static_cast<int>(space_)), Bytes(from)}, "metadata scan");
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
  std::vector<KeyValue> rows_;
  size_t at_ = 0;
  bool more_ = false;
  std::string last_;
  Status status_;
};

// A server cursor with a transaction's pending changes merged over it.
class PgIterator : public Iterator {
 public:
  // `ops`: the transaction's changes to this space, or nullptr. `owned`: a connection
  // in a read-only snapshot transaction that the iterator ends and returns.
  PgIterator(PostgresEngine* e, Conn* c, Cf space, const Ops* ops, std::unique_ptr<Conn> owned,
             Status err)
      : e_(e), owned_(std::move(owned)), base_(e, c, space), ops_(ops) {
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
        if (it != ops_->end()) op = &*it;
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
  bool valid_ = false;
  std::string key_, value_;
};

// The counter check of a key read with Get: reader rows in kv_deltas covering exactly
// the transaction ids this snapshot does not see (every id from its xmax on, and each id
// in progress when it was taken). kv_deltas' exclusion constraint refuses them (23P01,
// a Conflict) if a delta of that key was written by such an id, i.e. an Add committed
// after the snapshot; it waits for one still in flight. (The snapshot's xmin would be
// simpler and wrong: any long write anywhere on the server holds it back, and every
// counter read would conflict with every add made since.)
constexpr const char* kReaderRowsSql =
    "INSERT INTO kv_deltas (space, k, d, reader, xids) SELECT $1, $2, 0, 1, r FROM ("
    " SELECT int8range(pg_snapshot_xmax(pg_current_snapshot())::text::int8, NULL) AS r"
    " UNION ALL SELECT int8range(x::text::int8, x::text::int8, '[]')"
    " FROM pg_snapshot_xip(pg_current_snapshot()) AS x) AS rs";

class PgTxn : public BufferingTxn {
 public:
  explicit PgTxn(PostgresEngine* e) : e_(e) { err_ = Start(); }
  ~PgTxn() override {
    if (!conn_) return;
    if (conn_->pg && PQstatus(conn_->pg) == CONNECTION_OK &&
        PQtransactionStatus(conn_->pg) != PQTRANS_IDLE) {
      // Sent, not waited for: a lookup's or getattr's transaction (BEGIN, one read) costs
      // two round trips instead of three. Nothing was written, so there is nothing to
      // learn from the answer; the next user of the connection reads it (Acquire).
      if (PQsendQuery(conn_->pg, "ROLLBACK") && PQflush(conn_->pg) == 0) {
        conn_->rollback_sent = true;
      } else {
        conn_.reset();  // unknown protocol state: closed, not reused
        return;
      }
    }
    e_->Release(std::move(conn_));
  }

  Status Get(Cf space, std::string_view key, std::string* value) override {
    RETURN_IF_ERROR(err_);
    size_t s = static_cast<size_t>(space);
    auto it = ops_[s].find(key);
    if (it != ops_[s].end() && it->second.kind != Op::kAdd) {
      if (it->second.kind == Op::kDelete) return Status::NotFound();
      *value = it->second.value;
      return Status::OK();
    }
    auto row = GetRow(e_, conn_.get(), space, key);
    if (!row.ok()) return Fail(row.status());
    // Remember whether a row was there: Commit re-checks it (FOR SHARE) or makes sure
    // nobody created it meanwhile (a tombstone insert).
    reads_[s].emplace(std::string(key), row->row);
    int64_t under = 0;
    if (it == ops_[s].end()) {
      if (!row->has_value) return Status::NotFound();
      *value = std::move(row->value);
      return Status::OK();
    }
    if (row->has_value) {
      ASSIGN_OR_RETURN(under, DecodeCounter(row->value));
    }
    *value = EncodeCounter(under + it->second.delta);
    return Status::OK();
  }

  Status MultiGet(Cf space, const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values) override {
    RETURN_IF_ERROR(err_);
    const size_t s = static_cast<size_t>(space);
    values->assign(keys.size(), std::nullopt);
    std::vector<size_t> remote;  // keys the server must answer
    for (size_t i = 0; i < keys.size(); i++) {
      auto it = ops_[s].find(keys[i]);
      if (it != ops_[s].end() && it->second.kind != Op::kAdd) {
        if (it->second.kind != Op::kDelete) (*values)[i] = it->second.value;
      } else {
        remote.push_back(i);
      }
    }
    const std::string t = PostgresEngine::TableName(space);
    for (size_t from = 0; from < remote.size(); from += PostgresEngine::kMultiGetBatch) {
      const size_t n = std::min(PostgresEngine::kMultiGetBatch, remote.size() - from);
      // One row per asked key, in any order: q.i says which.
      std::string sql = "SELECT q.i, b.v, b.k IS NOT NULL, (" + DeltaSum("$1", "q.k") +
                        ") FROM (VALUES ";
      std::vector<Param> params = {Int2(static_cast<int>(space))};
      for (size_t j = 0; j < n; j++) {
        sql += (j ? ", ($" : "($") + std::to_string(j + 2) + "::bytea, " + std::to_string(j) +
               "::int8)";
        params.push_back(Bytes(keys[remote[from + j]]));
      }
      sql += ") AS q(k, i) LEFT JOIN " + t + " b ON b.k = q.k";
      auto r = Wire(e_, conn_.get()).Query(sql, params, "metadata multiget");
      if (!r.ok()) return Fail(r.status());
      const PGresult* res = r->get();
      if (PQntuples(res) != static_cast<int>(n)) {
        return Fail(Status::IOError("metadata multiget: wrong number of rows from the server"));
      }
      for (int row = 0; row < PQntuples(res); row++) {
        const int64_t j = ReadInt8(PQgetvalue(res, row, 0));
        if (j < 0 || static_cast<size_t>(j) >= n) {
          return Fail(Status::IOError("metadata multiget: bad row from the server"));
        }
        const size_t i = remote[from + static_cast<size_t>(j)];
        ServerRow sr;
        sr.row = PQgetvalue(res, row, 2)[0] != 0;
        RETURN_IF_ERROR(Decode(res, row, 1, 3, &sr.value, &sr.has_value));
        reads_[s].emplace(keys[i], sr.row);  // checked at Commit, as Get's reads
        auto it = ops_[s].find(keys[i]);
        if (it == ops_[s].end()) {
          if (sr.has_value) (*values)[i] = std::move(sr.value);
          continue;
        }
        int64_t under = 0;  // a pending Add on top of the server's value
        if (sr.has_value) {
          ASSIGN_OR_RETURN(under, DecodeCounter(sr.value));
        }
        (*values)[i] = EncodeCounter(under + it->second.delta);
      }
    }
    return Status::OK();
  }

  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    return std::make_unique<PgIterator>(e_, conn_.get(), space, &ops_[static_cast<size_t>(space)],
                                        nullptr, err_);
  }
  Status Commit(bool sync) override;

 private:
  Status Start();
  // A failed statement leaves the server transaction aborted: the Txn is done.
  Status Fail(Status s) {
    if (err_.ok()) err_ = s;
    return s;
  }

  PostgresEngine* e_;
  std::unique_ptr<Conn> conn_;
  Status err_;
  bool done_ = false;
  // Keys read with Get -> whether the server had a row (value or tombstone) for it.
  std::map<std::string, bool, std::less<>> reads_[kCfCount];
};

// BEGIN and a statement in one round trip: PostgreSQL takes the snapshot at the first
// statement, and the contract wants it at Begin. A pooled connection that died while
// idle (server restart, pg_terminate_backend) is replaced once.
Status PgTxn::Start() {
  for (int attempt = 0; attempt < 2; attempt++) {
    ASSIGN_OR_RETURN(conn_, e_->Acquire());
    bool pooled = conn_->pooled;
    Status s =
        Wire(e_, conn_.get()).Simple("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1", "begin");
    if (s.ok()) return s;
    bool dead = !conn_->pg || PQstatus(conn_->pg) != CONNECTION_OK;
    e_->Release(std::move(conn_));
    if (!(pooled && dead)) return s;
  }
  return Status::IOError("begin: no working connection to PostgreSQL");
}

Status PgTxn::Commit(bool sync) {
  if (done_) return Status::InvalidArgument("transaction already committed");
  done_ = true;
  RETURN_IF_ERROR(err_);
  PGconn* pg = conn_->pg;
  if (!PQenterPipelineMode(pg)) return Fail(FromPg(nullptr, pg, "commit"));
  Wire w(e_, conn_.get());
  size_t sent = 0;
  Status st;
  auto send = [&](const std::string& sql, const std::vector<Param>& params) {
    if (!st.ok()) return;
    st = w.Send(sql, params);
    if (st.ok()) sent++;
  };
  if (!sync) send("SET LOCAL synchronous_commit = off", {});
  // Keys read with Get. A key also written (Put/Delete) is checked by its upsert; the
  // others are re-checked here, rows locked in key order without waiting (a row locked
  // by a committing writer is a conflict anyway): a row changed since the snapshot fails
  // FOR SHARE (40001), a key that had no row gets a tombstone unless someone made it
  // meanwhile (40001). Then every read key gets the counter check (kReaderRowsSql),
  // whose rows are deleted at once so that they never stand in an Add's way.
  for (size_t s = 0; s < kCfCount; s++) {
    std::string t = PostgresEngine::TableName(static_cast<Cf>(s));
    for (const auto& [k, had_row] : reads_[s]) {
      auto op = ops_[s].find(k);
      if (op == ops_[s].end() || op->second.kind == Op::kAdd) {
        if (had_row) {
          send("SELECT 1 FROM " + t + " WHERE k = $1 FOR SHARE NOWAIT", {Bytes(k)});
        } else {
          send("INSERT INTO " + t + " (k, v) VALUES ($1, NULL) ON CONFLICT (k) DO NOTHING",
               {Bytes(k)});
        }
      }
      send(kReaderRowsSql, {Int2(static_cast<int>(s)), Bytes(k)});
      send("DELETE FROM kv_deltas WHERE space = $1 AND k = $2 AND reader = 1",
           {Int2(static_cast<int>(s)), Bytes(k)});
    }
  }
  // Writes in (space, key) order, so that two commits lock rows in one order.
  for (size_t s = 0; s < kCfCount; s++) {
    std::string t = PostgresEngine::TableName(static_cast<Cf>(s));
    for (const auto& [k, op] : ops_[s]) {
      if (op.kind == Op::kAdd) {
        if (op.delta != 0) {
          send("INSERT INTO kv_deltas (space, k, d, reader, xids) VALUES ($1, $2, $3, 0,"
               " int8range(pg_current_xact_id()::text::int8, pg_current_xact_id()::text::int8, '[]'))",
               {Int2(static_cast<int>(s)), Bytes(k), Int8(op.delta)});
        }
        continue;
      }
      send("INSERT INTO " + t + " (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
           {Bytes(k), op.kind == Op::kPut ? Bytes(op.value) : NullBytes()});
      send("DELETE FROM kv_deltas WHERE space = $1 AND k = $2", {Int2(static_cast<int>(s)), Bytes(k)});
    }
  }
  send("COMMIT", {});
  if (st.ok() && !PQpipelineSync(pg)) st = FromPg(nullptr, pg, "commit");
  if (st.ok()) st = w.Flush();
  // Results: the first error decides; the statements after it were skipped by the server.
  Status first;
  for (size_t i = 0; i < sent && st.ok(); i++) {
    bool aborted = false;
    auto r = w.Collect("commit", &aborted);
    if (!r.ok() && first.ok() && !aborted) {
      first = r.status();
    }
    if (!r.ok() && !conn_->pg) st = r.status();
  }
  if (st.ok()) {
    auto sync_res = w.Next();  // PGRES_PIPELINE_SYNC
    if (!sync_res.ok()) st = sync_res.status();
  }
  if (st.ok() && !PQexitPipelineMode(conn_->pg)) st = FromPg(nullptr, conn_->pg, "commit");
  if (!st.ok()) return Fail(st);
  if (!first.ok()) return Fail(first);  // the destructor rolls the server transaction back
  return Status::OK();
}

}  // namespace

PostgresEngine::PostgresEngine(std::string conninfo, Options opts)
    : conninfo_(std::move(conninfo)), opts_(opts) {
  char* err = nullptr;
  PQconninfoOption* o = PQconninfoParse(conninfo_.c_str(), &err);
  if (err) PQfreemem(err);
  std::string host = "(default)", port = "(default)", db = "(default)";
  for (PQconninfoOption* i = o; i && i->keyword; i++) {
    if (!i->val || !*i->val) continue;
    std::string_view k = i->keyword;
    if (k == "host") host = i->val;
    if (k == "port") port = i->val;
    if (k == "dbname") db = i->val;
  }
  describe_ = o ? "postgresql://" + host + ":" + port + "/" + db : "postgresql://(bad conninfo)";
  if (o) PQconninfoFree(o);
}

PostgresEngine::~PostgresEngine() = default;

Result<std::string> PostgresEngine::PublicUrl(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* o = PQconninfoParse(conninfo.c_str(), &err);
  if (!o) {
    std::string m = err ? err : "unparsable";
    if (err) PQfreemem(err);
    while (!m.empty() && m.back() == '\n') m.pop_back();
    return Status::InvalidArgument("bad PostgreSQL location: " + m);
  }
  auto enc = [](std::string_view v) {
    std::string out;
    for (unsigned char ch : v) {
      if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
        out += static_cast<char>(ch);
      } else {
        char b[4];
        snprintf(b, sizeof b, "%%%02X", ch);
        out += b;
      }
    }
    return out;
  };
  std::string user, host, port, db, query;
  for (PQconninfoOption* i = o; i->keyword; i++) {
    if (!i->val || !*i->val) continue;
    std::string_view k = i->keyword;
    if (k == "password") continue;  // never shown, never recorded
    if (k == "user") user = i->val;
    else if (k == "host") host = i->val;
    else if (k == "port") port = i->val;
    else if (k == "dbname") db = i->val;
    else query += (query.empty() ? "?" : "&") + std::string(k) + "=" + enc(i->val);
  }
  PQconninfoFree(o);
  std::string url = "postgresql://";
  if (!user.empty()) url += enc(user) + "@";
  url += enc(host);
  if (!port.empty()) url += ":" + enc(port);
  url += "/" + enc(db) + query;
  return url;
}

std::string PostgresEngine::TableName(Cf space) { return std::string("kv_") + CfName(space); }

Result<std::unique_ptr<Conn>> PostgresEngine::Connect() {
  // Defaults first: whatever the conninfo says overrides them (expand_dbname).
  std::string timeout = std::to_string(opts_.connect_timeout_s);
  const char* keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "application_name", "dbname", nullptr};
  const char* vals[] = {timeout.c_str(), "10", "5", "3", "snapfs", conninfo_.c_str(), nullptr};
  auto c = std::make_unique<Conn>();
  c->owner = this;
  size_t now = open_.fetch_add(1) + 1;
  for (size_t p = peak_.load(); now > p && !peak_.compare_exchange_weak(p, now);) {
  }
  c->pg = PQconnectdbParams(keys, vals, /*expand_dbname=*/1);
  if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
    // libpq's message names host and port, never the password.
    return Status::IOError("cannot connect to PostgreSQL " + describe_ + ": " + ConnError(c->pg));
  }
  if (PQsetnonblocking(c->pg, 1) != 0) return FromPg(nullptr, c->pg, "connect");
  // A transaction left idle by a client that hangs or dies is ended by the server.
  std::string settings =
      "SET statement_timeout = " + std::to_string(opts_.statement_timeout.count()) +
      "; SET idle_in_transaction_session_timeout = 300000; SET bytea_output = hex";
  RETURN_IF_ERROR(Wire(this, c.get()).Simple(settings, "connect"));
  return c;
}

Result<std::unique_ptr<Conn>> PostgresEngine::Acquire() {
  const auto until = std::chrono::steady_clock::now() + opts_.connection_wait;
  while (true) {
    std::unique_ptr<Conn> c;
    {
      MutexLock l(&mu_);
      if (!idle_.empty()) {
        c = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (c) {
      // The answer to the ROLLBACK its last transaction sent (usually here already).
      bool ok = c->healthy() &&
                (!c->rollback_sent || Wire(this, c.get()).Collect("end transaction").ok());
      c->rollback_sent = false;
      if (ok && c->healthy()) {
        c->pooled = true;
        return c;
      }
      continue;  // closed (outside mu_: ConnectionClosed notifies)
    }
    if (open_.load() < opts_.max_open || std::chrono::steady_clock::now() >= until) break;
    // All busy: wait for one to come back or close; past the wait, one more anyway.
    std::unique_lock wl(freed_mu_);
    freed_.wait_for(wl, std::chrono::milliseconds(20));
  }
  return Connect();
}

void PostgresEngine::ConnectionClosed() {
  open_.fetch_sub(1);
  std::lock_guard l(freed_mu_);
  freed_.notify_one();
}

void PostgresEngine::Release(std::unique_ptr<Conn> c) {
  if (!c || !c->healthy()) return;  // broken or mid-transaction: closed, not reused
  {
    MutexLock l(&mu_);
    if (idle_.size() < opts_.max_idle) {
      idle_.push_back(std::move(c));
    }
  }
  if (!c) {
    std::lock_guard l(freed_mu_);
    freed_.notify_one();
    return;
  }
  c.reset();  // closed outside mu_ (it notifies)
}

Result<std::unique_ptr<PostgresEngine>> PostgresEngine::Open(const std::string& conninfo,
                                                             Options opts) {
  std::unique_ptr<PostgresEngine> e(new PostgresEngine(conninfo, opts));
  ASSIGN_OR_RETURN(auto c, e->Connect());
  auto r = Wire(e.get(), c.get())
               .Query("SELECT value FROM snapfs_meta WHERE key = 'schema_version'", {}, "open");
  if (!r.ok()) {
    if (r.status().Is(Code::kNotFound)) {
      return Status::NotFound("no snapfs store in " + e->describe_ + " (run snapfs init)");
    }
    return r.status();
  }
  std::string v = PQntuples(r->get()) == 1 ? PQgetvalue(r->get(), 0, 0) : "";
  if (v != std::to_string(kSchemaVersion)) {
    return Status::InvalidArgument("the snapfs store in " + e->describe_ + " has schema version '" +
                                   v + "'; this snapfs knows version " +
                                   std::to_string(kSchemaVersion));
  }
  e->Release(std::move(c));
  return e;
}

Status PostgresEngine::CreateSchema(const std::string& conninfo, Options opts) {
  PostgresEngine e(conninfo, opts);
  ASSIGN_OR_RETURN(auto c, e.Connect());
  const std::string& where = e.describe_;
  Wire w(&e, c.get());
  RETURN_IF_ERROR(w.Simple("BEGIN", "init"));
  ASSIGN_OR_RETURN(Res r, w.Query("SELECT count(*)::int8 FROM pg_tables WHERE schemaname = current_schema()",
                                  {}, "init"));
  int64_t n = ReadInt8(PQgetvalue(r.get(), 0, 0));
  if (n != 0) {
    return Status::AlreadyExists("the schema of " + where + " holds " + std::to_string(n) +
                                 " tables: a store is made only in an empty one");
  }
  std::string ddl =
      "CREATE TABLE snapfs_meta (key text PRIMARY KEY, value text NOT NULL);"
      "INSERT INTO snapfs_meta VALUES ('schema_version', '" + std::to_string(kSchemaVersion) + "');"
      // btree_gist: GiST for = and <> on int2 and bytea, which the exclusion constraint of
      // kv_deltas needs (a trusted extension: the database's owner may create it).
      "CREATE EXTENSION IF NOT EXISTS btree_gist;"
      // A delta (reader 0) is one Add of one transaction, xids = [its xid]; a reader row
      // (reader 1, only ever inside a committing transaction) spans the ids its snapshot
      // may not see. They exclude each other: see PgTxn::Commit.
      "CREATE TABLE kv_deltas (space int2 NOT NULL, k bytea NOT NULL, d int8 NOT NULL,"
      " reader int2 NOT NULL, xids int8range NOT NULL,"
      " EXCLUDE USING gist (space WITH =, k WITH =, reader WITH <>, xids WITH &&));"
      "CREATE INDEX kv_deltas_key ON kv_deltas (space, k);";
  for (size_t s = 0; s < kCfCount; s++) {
    ddl += "CREATE TABLE " + TableName(static_cast<Cf>(s)) + " (k bytea PRIMARY KEY, v bytea);";
  }
  ddl += "COMMIT";
  Status s = w.Simple(ddl, "init");
  if (!s.ok() && s.Is(Code::kConflict)) {
    return Status::AlreadyExists("another init made the schema of " + where + " at the same time");
  }
  return s;
}

std::unique_ptr<Txn> PostgresEngine::Begin() { return std::make_unique<PgTxn>(this); }

Status PostgresEngine::Get(Cf space, std::string_view key, std::string* value) {
  ASSIGN_OR_RETURN(auto c, Acquire());
  auto row = GetRow(this, c.get(), space, key);
  Release(std::move(c));
  RETURN_IF_ERROR(row.status());
  if (!row->has_value) return Status::NotFound();
  *value = std::move(row->value);
  return Status::OK();
}

std::unique_ptr<Iterator> PostgresEngine::NewIterator(Cf space) {
  // A read-only snapshot held for the iterator's life (pages are read lazily).
  auto c = Acquire();
  if (!c.ok()) return std::make_unique<PgIterator>(this, nullptr, space, nullptr, nullptr, c.status());
  Conn* raw = c->get();
  Status s = Wire(this, raw).Simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1",
                                    "snapshot");
  return std::make_unique<PgIterator>(this, raw, space, nullptr, std::move(*c), s);
}

Status PostgresEngine::Sync() {
  // A commit with a transaction id is flushed (synchronous_commit is on), and the WAL
  // flush covers every earlier commit, including those made with sync=false.
  ASSIGN_OR_RETURN(auto c, Acquire());
  Status s = Wire(this, c.get()).Simple("BEGIN; SELECT txid_current(); COMMIT", "sync");
  Release(std::move(c));
  return s;
}

Status PostgresEngine::Compact() {
  // 1. Fold counter deltas: a transaction reads each key (base + deltas) and writes the
  //    sum back; the Put drops exactly the deltas it summed (its snapshot's), so an Add
  //    committed meanwhile stays on top.
  for (size_t s = 0; s < kCfCount; s++) {
    std::vector<std::string> keys;
    {
      ASSIGN_OR_RETURN(auto c, Acquire());
      auto r = Wire(this, c.get())
                   .Query("SELECT DISTINCT k FROM kv_deltas WHERE space = $1 LIMIT 100000",
                          {Int2(static_cast<int>(s))}, "compact");
      RETURN_IF_ERROR(r.status());
      for (int i = 0; i < PQntuples(r->get()); i++) {
        keys.emplace_back(PQgetvalue(r->get(), i, 0), static_cast<size_t>(PQgetlength(r->get(), i, 0)));
      }
      Release(std::move(c));
    }
    for (size_t from = 0; from < keys.size(); from += 500) {
      size_t to = std::min(keys.size(), from + 500);
      RETURN_IF_ERROR(RunTxn(*this, [&](Txn& t) -> Status {
        for (size_t i = from; i < to; i++) {
          std::string v;
          Status g = t.Get(static_cast<Cf>(s), keys[i], &v);
          if (g.Is(Code::kNotFound)) continue;
          RETURN_IF_ERROR(g);
          t.Put(static_cast<Cf>(s), keys[i], v);
        }
        return Status::OK();
      }));
    }
  }
  // 2. Tombstones whose writer every running snapshot sees (its xid precedes the oldest
  //    backend_xmin of this database: sessions of other databases cannot read these
  //    tables) cannot matter to any open transaction's conflict check: remove them.
  //    Under READ COMMITTED a row written again meanwhile is rechecked and kept.
  ASSIGN_OR_RETURN(auto c, Acquire());
  for (size_t s = 0; s < kCfCount; s++) {
    std::string t = TableName(static_cast<Cf>(s));
    Status st = Wire(this, c.get())
                    .Simple("DELETE FROM " + t +
                                " WHERE v IS NULL AND age(xmin) > coalesce((SELECT max(age(backend_xmin))"
                                " FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND datname = current_database()), 0) AND NOT EXISTS"
                                " (SELECT 1 FROM kv_deltas WHERE space = " + std::to_string(s) +
                                " AND kv_deltas.k = " + t + ".k)",
                            "compact");
    RETURN_IF_ERROR(st);
  }
  Release(std::move(c));
  return Status::OK();
}

}  // namespace snapfs::kv
