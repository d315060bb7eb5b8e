#include "core/meta/postgres_engine.h"

#include <arpa/inet.h>
#include <libpq-fe.h>

#include <map>
#include <set>
#include <type_traits>

#include "base/coding.h"
#include "core/meta/pending_writes.h"
#include "core/meta/postgres_iterator.h"
#include "core/meta/postgres_wire.h"

namespace snapfs::kv {

namespace {

using namespace pg;  // NOLINT: the engine's own internals

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
    conn_->begin_pending = false;  // never begun: nothing to end
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
    Result<ServerRow> row = ServerRow{};
    if (auto p = prefetched_[s].find(key); p != prefetched_[s].end()) {
      row = p->second;  // read by Prefetch (and noted in reads_ there)
    } else {
      row = FirstMayReconnect([&] { return GetRow(e_, conn_.get(), space, key); });
    }
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
    for (size_t from = 0; from < remote.size(); from += PostgresEngine::kMultiGetBatch) {
      const size_t n = std::min(PostgresEngine::kMultiGetBatch, remote.size() - from);
      const Statement st =
          MultiGetStatement(space, n, [&](size_t j) -> const std::string& { return keys[remote[from + j]]; });
      auto r = FirstMayReconnect(
          [&] { return Wire(e_, conn_.get()).Query(st.sql, st.params, "metadata multiget"); });
      if (!r.ok()) return Fail(r.status());
      std::vector<ServerRow> rows;
      Status parsed = MultiGetRows(r->get(), n, &rows);
      if (!parsed.ok()) return Fail(parsed);
      for (size_t j = 0; j < n; j++) {
        const size_t i = remote[from + j];
        ServerRow& sr = rows[j];
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

  Status Prefetch(const std::vector<std::pair<Cf, std::string>>& keys) override {
    RETURN_IF_ERROR(err_);
    // One statement: a SELECT per key (its own table), glued by UNION ALL; the column i
    // says which key a row answers. Keys this transaction wrote need no server.
    static_assert(PostgresEngine::kMultiGetBatch >= kPrefetchBatch);
    if (keys.size() > PostgresEngine::kMultiGetBatch) {
      return Fail(Status::InvalidArgument("metadata prefetch: more than " +
                                          std::to_string(PostgresEngine::kMultiGetBatch) +
                                          " keys at once"));
    }
    std::string sql;
    std::vector<Param> params;
    std::vector<size_t> asked;
    std::set<std::pair<size_t, std::string_view>> seen;
    for (size_t i = 0; i < keys.size(); i++) {
      const auto& [space, key] = keys[i];
      const size_t s = static_cast<size_t>(space);
      auto op = ops_[s].find(key);
      if (op != ops_[s].end() && op->second.kind != Op::kAdd) continue;
      if (prefetched_[s].count(key) || !seen.emplace(s, key).second) continue;
      const std::string sp = "$" + std::to_string(params.size() + 1);
      const std::string kp = "$" + std::to_string(params.size() + 2);
      params.push_back(Int2(static_cast<int>(space)));
      params.push_back(Bytes(key));
      if (!sql.empty()) sql += " UNION ALL ";
      // Each arm is GetRow's statement (the same plan: an index lookup of each table).
      sql += "SELECT " + std::to_string(asked.size()) + "::int8, b.v, b.k IS NOT NULL, " +
             SumColumn(space, sp, kp) + " FROM (SELECT 1) AS one LEFT JOIN " +
             PostgresEngine::TableName(space) + " b ON b.k = " + kp;
      asked.push_back(i);
    }
    if (asked.empty()) return Status::OK();
    auto r = FirstMayReconnect(
        [&] { return Wire(e_, conn_.get()).Query(sql, params, "metadata prefetch"); });
    if (!r.ok()) return Fail(r.status());
    const PGresult* res = r->get();
    if (PQntuples(res) != static_cast<int>(asked.size())) {
      return Fail(Status::IOError("metadata prefetch: wrong number of rows from the server"));
    }
    for (int row = 0; row < PQntuples(res); row++) {
      const int64_t j = ReadInt8(PQgetvalue(res, row, 0));
      if (j < 0 || static_cast<size_t>(j) >= asked.size()) {
        return Fail(Status::IOError("metadata prefetch: bad row from the server"));
      }
      const auto& [space, key] = keys[asked[static_cast<size_t>(j)]];
      const size_t s = static_cast<size_t>(space);
      ServerRow sr;
      sr.row = PQgetvalue(res, row, 2)[0] != 0;
      if (Status d = Decode(res, row, 1, 3, &sr.value, &sr.has_value); !d.ok()) return Fail(d);
      reads_[s].emplace(key, sr.row);  // checked at Commit, as Get's reads
      prefetched_[s].emplace(key, std::move(sr));
    }
    return Status::OK();
  }

  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    iterated_ = true;  // it holds the connection: Reconnected() may not replace it now
    return std::make_unique<PgIterator>(e_, conn_.get(), space, &ops_[static_cast<size_t>(space)],
                                        nullptr, err_);
  }
  std::unique_ptr<Iterator> NewBoundedIterator(Cf space, std::string_view upper_bound) override {
    iterated_ = true;  // as NewIterator's
    return std::make_unique<PgIterator>(e_, conn_.get(), space, &ops_[static_cast<size_t>(space)],
                                        nullptr, err_, std::string(upper_bound));
  }

  Status Commit(bool sync) override;

 protected:
  // Writes are buffered until Commit, but a transaction that writes before it reads
  // takes its snapshot at that first write (the contract: no later than the first
  // operation), so that a key written blind still conflicts with a commit made after it.
  void WillWrite() override { BeginNow(); }

 private:
  Status Start();
  // Sends the BEGIN now if it is still pending (with a statement, so that the snapshot is
  // taken): for a first operation that is not a read.
  void BeginNow() {
    if (!err_.ok() || !conn_ || !conn_->begin_pending) return;
    const std::string sql = std::string(Wire::kBeginSql) + "; SELECT 1";
    Status s = FirstMayReconnect([&] {
      conn_->begin_pending = false;  // sent here, as a simple query
      return Wire(e_, conn_.get()).Simple(sql, "begin");
    });
    if (!s.ok()) (void)Fail(s);
  }
  // Runs `statement`; if it was the transaction's first (it carried the BEGIN) and failed
  // on a pooled connection that had died, runs it once more on a new one (Reconnected).
  template <typename F>
  std::invoke_result_t<F&> FirstMayReconnect(F statement) {
    const bool first = conn_->begin_pending;
    auto r = statement();
    if (!r.ok() && first && Reconnected()) r = statement();
    return r;
  }
  // After the transaction's first statement (the one that carried its BEGIN) failed: if
  // the connection came from the pool and has died (a server restart or
  // pg_terminate_backend while it was idle), a new one takes its place with the
  // transaction still to begin, once. Nothing had been sent before.
  bool Reconnected() {
    if (retried_ || iterated_ || !conn_->pooled ||
        (conn_->pg && PQstatus(conn_->pg) == CONNECTION_OK)) {
      return false;
    }
    retried_ = true;
    conn_.reset();
    auto c = e_->Acquire();
    if (!c.ok()) {
      (void)Fail(c.status());
      return false;
    }
    conn_ = std::move(*c);
    conn_->begin_pending = true;
    return true;
  }
  // A failed statement leaves the server transaction aborted: the Txn is done.
  Status Fail(Status s) {
    if (err_.ok()) err_ = s;
    return s;
  }

  PostgresEngine* e_;
  std::unique_ptr<Conn> conn_;
  Status err_;
  bool done_ = false;
  bool retried_ = false;   // Reconnected() replaced the connection once
  bool iterated_ = false;  // an iterator was made (it points at conn_)
  // Keys read with Get -> whether the server had a row (value or tombstone) for it.
  std::map<std::string, bool, std::less<>> reads_[kCfCount];
  // Rows Prefetch read: they answer the Gets of their keys (already noted in reads_).
  std::map<std::string, ServerRow, std::less<>> prefetched_[kCfCount];
};

// No round trip: the BEGIN goes with the transaction's first statement (Wire::Query), or
// at its first write (BeginNow). PostgreSQL takes the snapshot at that statement, which
// the contract allows: no later than the first operation (kv.h).
Status PgTxn::Start() {
  ASSIGN_OR_RETURN(conn_, e_->Acquire());
  conn_->begin_pending = true;
  return Status::OK();
}

Status PgTxn::Commit(bool sync) {
  if (done_) return Status::InvalidArgument("transaction already committed");
  done_ = true;
  RETURN_IF_ERROR(err_);
  RETURN_IF_ERROR(BadAddStatus());
  if (conn_->begin_pending) {
    // Nothing was read or written. A durable commit still makes the earlier ones durable.
    conn_->begin_pending = false;
    return sync ? e_->Sync() : Status::OK();
  }
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
  // meanwhile (40001). Then every read key of a space with counters gets the counter
  // check (kReaderRowsSql), whose rows are deleted at once so that they never stand in
  // an Add's way; elsewhere no Add exists to check against (CfHasCounters).
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
      if (!CfHasCounters(static_cast<Cf>(s))) continue;  // no Add can change it
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
      if (CfHasCounters(static_cast<Cf>(s))) {  // the value replaces the key's counter
        send("DELETE FROM kv_deltas WHERE space = $1 AND k = $2", {Int2(static_cast<int>(s)), Bytes(k)});
      }
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

std::string PostgresEngine::HidePassword(std::string_view location) {
  std::string s(location);
  // postgresql://user:PASSWORD@host...: the user part ends at the last '@' before the path.
  if (size_t scheme = s.find("://"); scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = std::min(s.find_first_of("/?", start), s.size());
    size_t at = s.rfind('@', end == 0 ? 0 : end - 1);
    if (at != std::string::npos && at >= start) {
      size_t colon = s.find(':', start);
      if (colon < at) s.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // ?password=...&, and the keyword form password=... (up to '&' or a space).
  for (size_t p = 0; (p = s.find("password=", p)) != std::string::npos;) {
    size_t v = p + 9;
    size_t e = std::min(s.find_first_of("& ", v), s.size());
    s.replace(v, e - v, "***");
    p = v + 3;
  }
  return s;
}

Result<std::string> PostgresEngine::PublicUrl(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* o = PQconninfoParse(conninfo.c_str(), &err);
  if (!o) {
    if (err) PQfreemem(err);
    // libpq's message quotes the location: take it from the location without its password.
    std::string hidden = HidePassword(conninfo);
    PQconninfoOption* again = PQconninfoParse(hidden.c_str(), &err);
    if (again) PQconninfoFree(again);
    std::string m = err ? err : "unparsable";
    if (err) PQfreemem(err);
    while (!m.empty() && m.back() == '\n') m.pop_back();
    if (m.find(hidden) == std::string::npos) m += " (in " + hidden + ")";
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

Status PostgresEngine::MultiGet(Cf space, const std::vector<std::string>& keys,
                                std::vector<std::optional<std::string>>* values) {
  values->assign(keys.size(), std::nullopt);
  if (keys.empty()) return Status::OK();
  ASSIGN_OR_RETURN(auto c, Acquire());
  Status s;
  for (size_t from = 0; from < keys.size() && s.ok(); from += kMultiGetBatch) {
    const size_t n = std::min(kMultiGetBatch, keys.size() - from);
    const Statement st =
        MultiGetStatement(space, n, [&](size_t j) -> const std::string& { return keys[from + j]; });
    auto r = Wire(this, c.get()).Query(st.sql, st.params, "metadata multiget");
    std::vector<ServerRow> rows;
    s = r.ok() ? MultiGetRows(r->get(), n, &rows) : r.status();
    for (size_t j = 0; s.ok() && j < n; j++) {
      if (rows[j].has_value) (*values)[from + j] = std::move(rows[j].value);
    }
  }
  Release(std::move(c));
  return s;
}

std::unique_ptr<Iterator> PostgresEngine::NewIterator(Cf space) {
  return NewBoundedIterator(space, {});
}

std::unique_ptr<Iterator> PostgresEngine::NewBoundedIterator(Cf space,
                                                             std::string_view upper_bound) {
  // A read-only snapshot held for the iterator's life (pages are read lazily).
  std::string bound(upper_bound);
  auto c = Acquire();
  if (!c.ok()) {
    return std::make_unique<PgIterator>(this, nullptr, space, nullptr, nullptr, c.status(),
                                        std::move(bound));
  }
  Conn* raw = c->get();
  Status s = Wire(this, raw).Simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1",
                                    "snapshot");
  return std::make_unique<PgIterator>(this, raw, space, nullptr, std::move(*c), s,
                                      std::move(bound));
}

namespace {
class PgReadView : public ReadView {
 public:
  PgReadView(PostgresEngine* e, std::unique_ptr<Conn> c) : e_(e), c_(std::move(c)) {}
  ~PgReadView() override {
    if (c_->pg && PQtransactionStatus(c_->pg) != PQTRANS_IDLE) {
      (void)Wire(e_, c_.get()).Simple("ROLLBACK", "end snapshot");
    }
    e_->Release(std::move(c_));
  }
  Status Get(Cf space, std::string_view key, std::string* value) override {
    if (!c_->pg) return Status::IOError("metadata get: no connection to PostgreSQL");
    ASSIGN_OR_RETURN(ServerRow row, GetRow(e_, c_.get(), space, key));
    if (!row.has_value) return Status::NotFound();
    *value = std::move(row.value);
    return Status::OK();
  }
  std::unique_ptr<Iterator> NewIterator(Cf space) override {
    return std::make_unique<PgIterator>(e_, c_.get(), space, nullptr, nullptr, Status::OK());
  }

 private:
  PostgresEngine* e_;
  std::unique_ptr<Conn> c_;
};
}  // namespace

Result<std::unique_ptr<ReadView>> PostgresEngine::NewReadView() {
  // A pooled connection may have died while idle (a server restart): then once more on
  // a new one, as a transaction's first statement is (PgTxn::Reconnected).
  for (int attempt = 0;; attempt++) {
    ASSIGN_OR_RETURN(auto c, Acquire());
    Status s = Wire(this, c.get())
                   .Simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1", "snapshot");
    if (s.ok()) return std::unique_ptr<ReadView>(std::make_unique<PgReadView>(this, std::move(c)));
    const bool died = c->pooled && (!c->pg || PQstatus(c->pg) != CONNECTION_OK);
    if (attempt > 0 || !died) return s;
  }
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
