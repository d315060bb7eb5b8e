// The PostgreSQL engine's wire layer: a pooled connection, statement parameters,
// libpq errors as Status (with the retryable SQL states as Conflict), and Wire, which
// sends statements and waits for their results under a deadline. Private to
// core/meta/postgres_*.
#pragma once

#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/coding.h"
#include "core/meta/postgres_engine.h"

namespace snapfs::kv {

struct PostgresEngine::Conn {
  PGconn* pg = nullptr;
  bool pooled = false;  // came from the idle pool (may have died while idle)
  // A ROLLBACK was sent and its answer not read yet: a transaction that wrote nothing
  // ends without waiting for the server (Acquire reads the answer before reuse).
  bool rollback_sent = false;
  // A transaction was begun here but its BEGIN not sent yet: the first statement goes
  // with it, in one round trip (Wire::Query), so the snapshot is taken at that statement.
  bool begin_pending = false;
  PostgresEngine* owner = nullptr;  // counts its open connections
  // Statements prepared in this connection's server session (they live as long as it):
  // statement text + parameter types -> statement name. A statement sent again is bound
  // and executed without being parsed and planned again (Wire::Send).
  std::unordered_map<std::string, std::string> prepared;
  uint64_t next_prepared = 0;
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

namespace pg {

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
inline Param Bytes(std::string_view b) { return Param{kByteaOid, std::string(b)}; }
inline Param NullBytes() { return Param{kByteaOid, {}, true}; }
inline Param Int2(int v) {
  uint16_t be = htons(static_cast<uint16_t>(v));
  return Param{kInt2Oid, std::string(reinterpret_cast<const char*>(&be), 2)};
}
inline Param Int8(int64_t v) {
  std::string s(8, '\0');
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; i++) s[7 - i] = static_cast<char>((u >> (8 * i)) & 0xff);
  return Param{kInt8Oid, std::move(s)};
}
inline int64_t ReadInt8(const char* p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = (u << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(u);
}

// The sum of int8 deltas (numeric, never overflows) wrapped to int8 as two's complement
// additions wrap, so that counters match the other engines bit for bit.
inline std::string Wrapped(const std::string& numeric) {
  return "((((" + numeric +
         ") % 18446744073709551616 + 27670116110564327424) % 18446744073709551616)"
         " - 9223372036854775808)::int8";
}

inline std::string ConnError(PGconn* pg) {
  std::string m = pg ? PQerrorMessage(pg) : "no connection";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// The one place server errors become ours. A transaction that lost a race (40001
// serialization failure, 40P01 deadlock, 55P03 a row locked by a committing writer)
// is Conflict; a statement_timeout is Busy; a lost connection IOError.
inline Status FromPg(const PGresult* r, PGconn* pg, std::string_view context) {
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

  // At most this many statements are prepared per connection: statement texts are
  // fixed (the key space and the number of keys vary, not the keys), so the cap is only
  // a guard against a caller that builds texts without bound.
  static constexpr size_t kMaxPrepared = 256;
  // Statements with more parameters are not prepared: those are the MultiGet and
  // Prefetch statements of many keys, whose text changes with the number of keys and
  // would fill the cache with statements seldom sent twice. Fixed statements have at
  // most 5; a Prefetch of up to 4 keys (a create's or unlink's 2) is prepared.
  static constexpr size_t kMaxPreparedParams = 8;

  // Sends one statement. A statement with parameters is prepared the first time it is
  // sent on a connection in pipeline mode (its Parse goes in the same round trip, ahead
  // of it) and from then on only bound and executed: PostgreSQL skips parsing and
  // planning it again. Outside pipeline mode an unprepared statement is sent unnamed
  // (Query enters pipeline mode to prepare it).
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
    const int n = static_cast<int>(params.size());
    Pending pending;
    const std::string* name = nullptr;
    if (std::string key; Preparable(sql, params, &key)) {
      auto it = c_->prepared.find(key);
      if (it == c_->prepared.end() && c_->prepared.size() < kMaxPrepared &&
          PQpipelineStatus(c_->pg) == PQ_PIPELINE_ON) {
        std::string fresh = "snapfs_" + std::to_string(++c_->next_prepared);
        if (!PQsendPrepare(c_->pg, fresh.c_str(), sql.c_str(), n, types.data())) {
          return FromPg(nullptr, c_->pg, "send");
        }
        it = c_->prepared.emplace(key, std::move(fresh)).first;
        pending.prepare_key = std::move(key);
      }
      if (it != c_->prepared.end()) name = &it->second;
    }
    const int sent =
        name ? PQsendQueryPrepared(c_->pg, name->c_str(), n, values.data(), lengths.data(),
                                   formats.data(), /*binary=*/1)
             : PQsendQueryParams(c_->pg, sql.c_str(), n, types.data(), values.data(),
                                 lengths.data(), formats.data(), /*binary=*/1);
    pending_.push_back(std::move(pending));
    if (!sent) return FromPg(nullptr, c_->pg, "send");
    return Status::OK();
  }
  // Several statements as one simple query (text results, no parameters).
  Status SendSimple(const std::string& sql) {
    if (!PQsendQuery(c_->pg, sql.c_str())) return FromPg(nullptr, c_->pg, "send");
    pending_.emplace_back();
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
  // `aborted`: the server skipped it (pipeline mode, after an earlier error). A Parse
  // sent ahead of the statement (Send) answers first: if it failed, the statement is
  // not taken as prepared and the Parse's error is the statement's.
  Result<Res> Collect(std::string_view context, bool* aborted = nullptr) {
    Pending p;
    if (!pending_.empty()) {
      p = std::move(pending_.front());
      pending_.pop_front();
    }
    if (!p.prepare_key.empty()) {
      auto parsed = CollectOne(context, aborted);
      if (!parsed.ok()) {
        c_->prepared.erase(p.prepare_key);
        (void)CollectOne(context, nullptr);  // the statement, skipped after the error
        return parsed.status();
      }
      e_->CountPrepared();
    }
    return CollectOne(context, aborted);
  }
  // One statement, one round trip; if the connection's transaction is still to begin
  // (Conn::begin_pending), its BEGIN goes in the same round trip, ahead of the statement.
  // A statement not prepared on this connection yet goes in a pipeline too, so that it
  // is prepared in the same round trip.
  Result<Res> Query(const std::string& sql, const std::vector<Param>& params,
                    std::string_view context) {
    if (c_->begin_pending || WouldPrepare(sql, params)) return Pipelined(sql, params, context);
    RETURN_IF_ERROR(Send(sql, params));
    RETURN_IF_ERROR(Flush());
    return Collect(context);
  }
  static constexpr const char* kBeginSql = "BEGIN ISOLATION LEVEL REPEATABLE READ";

  Status Simple(const std::string& sql, std::string_view context) {
    RETURN_IF_ERROR(SendSimple(sql));
    RETURN_IF_ERROR(Flush());
    return Collect(context).status();
  }

 private:
  // Parse state of one sent statement, in send order (Collect pops them).
  struct Pending {
    std::string prepare_key;  // a Parse was sent ahead of it under this key
  };
  // Whether a statement is one to prepare (it has parameters, not too many), and its
  // key in Conn::prepared: the text and the parameter types.
  static bool Preparable(const std::string& sql, const std::vector<Param>& params, std::string* key) {
    if (params.empty() || params.size() > kMaxPreparedParams) return false;
    *key = sql;
    key->push_back('\0');
    for (const auto& p : params) *key += std::to_string(p.type) + ",";
    return true;
  }
  // Whether Send would prepare it now (in pipeline mode): preparable, not yet, room left.
  bool WouldPrepare(const std::string& sql, const std::vector<Param>& params) const {
    std::string key;
    return c_->prepared.size() < kMaxPrepared && Preparable(sql, params, &key) &&
           !c_->prepared.count(key);
  }

  // The results of one statement (every result up to the terminating nullptr).
  Result<Res> CollectOne(std::string_view context, bool* aborted) {
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

  // The statement as one pipeline, with the connection's pending BEGIN ahead of it if
  // there is one (PostgreSQL takes a REPEATABLE READ transaction's snapshot at its first
  // statement after BEGIN, i.e. this one), and its Parse if it is not prepared yet.
  Result<Res> Pipelined(const std::string& sql, const std::vector<Param>& params,
                        std::string_view context) {
    const bool begin = c_->begin_pending;
    c_->begin_pending = false;
    if (!PQenterPipelineMode(c_->pg)) return FromPg(nullptr, c_->pg, "begin");
    if (begin) RETURN_IF_ERROR(Send(kBeginSql, {}));
    RETURN_IF_ERROR(Send(sql, params));
    if (!PQpipelineSync(c_->pg)) return FromPg(nullptr, c_->pg, "begin");
    RETURN_IF_ERROR(Flush());
    Status begun = begin ? Collect("begin").status() : Status::OK();
    if (!c_->pg) return begun;  // the deadline passed: Busy (TimedOut closed it)
    auto r = Collect(context);
    if (!c_->pg) return r;
    ASSIGN_OR_RETURN(Res sync, Next());  // PGRES_PIPELINE_SYNC
    (void)sync;
    if (!PQexitPipelineMode(c_->pg)) return FromPg(nullptr, c_->pg, "begin");
    RETURN_IF_ERROR(begun);
    return r;
  }

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
  std::deque<Pending> pending_;  // sent statements whose results are not collected yet
};

inline std::string DeltaSum(const std::string& space_param, const std::string& key_expr) {
  return Wrapped("SELECT sum(d) FROM kv_deltas WHERE space = " + space_param +
                 " AND k = " + key_expr);
}
// The column that sums a key's counter deltas: NULL in a space without counters
// (CfHasCounters), which has none to sum.
inline std::string SumColumn(Cf space, const std::string& space_param, const std::string& key_expr) {
  if (!CfHasCounters(space)) return "NULL::int8";
  return "(" + DeltaSum(space_param, key_expr) + ")";
}

// One key as the server has it: the base row (a tombstone if v is NULL) and the sum of
// its counter deltas. NotFound if neither.
struct ServerRow {
  bool row = false;  // a base row (value or tombstone) exists
  bool has_value = false;
  std::string value;
};

inline Status Decode(const PGresult* r, int i, int vcol, int scol, std::string* out, bool* present) {
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

// MultiGet's statement for n keys of one space (at most kMultiGetBatch): one row per
// asked key, in any order; its first column says which (0..n-1).
struct Statement {
  std::string sql;
  std::vector<Param> params;
};
template <typename KeyAt>
Statement MultiGetStatement(Cf space, size_t n, const KeyAt& key_at) {
  Statement st;
  st.sql = "SELECT q.i, b.v, b.k IS NOT NULL, " + SumColumn(space, "$1", "q.k") + " FROM (VALUES ";
  st.params.push_back(Int2(static_cast<int>(space)));
  for (size_t j = 0; j < n; j++) {
    st.sql += (j ? ", ($" : "($") + std::to_string(j + 2) + "::bytea, " + std::to_string(j) +
              "::int8)";
    st.params.push_back(Bytes(key_at(j)));
  }
  st.sql += ") AS q(k, i) LEFT JOIN " + PostgresEngine::TableName(space) + " b ON b.k = q.k";
  return st;
}
// Its answer: (*rows)[j] for the j-th key asked.
inline Status MultiGetRows(const PGresult* res, size_t n, std::vector<ServerRow>* rows) {
  if (PQntuples(res) != static_cast<int>(n)) {
    return Status::IOError("metadata multiget: wrong number of rows from the server");
  }
  rows->assign(n, ServerRow{});
  for (int row = 0; row < PQntuples(res); row++) {
    const int64_t j = ReadInt8(PQgetvalue(res, row, 0));
    if (j < 0 || static_cast<size_t>(j) >= n) {
      return Status::IOError("metadata multiget: bad row from the server");
    }
    ServerRow& sr = (*rows)[static_cast<size_t>(j)];
    sr.row = PQgetvalue(res, row, 2)[0] != 0;
    RETURN_IF_ERROR(Decode(res, row, 1, 3, &sr.value, &sr.has_value));
  }
  return Status::OK();
}

inline Result<ServerRow> GetRow(PostgresEngine* e, Conn* c, Cf space, std::string_view key) {
  std::string t = PostgresEngine::TableName(space);
  std::string sql = "SELECT b.v, b.k IS NOT NULL, " + SumColumn(space, "$1", "$2") +
                    " FROM (SELECT 1) AS one LEFT JOIN " + t + " b ON b.k = $2";
  Wire w(e, c);
  ASSIGN_OR_RETURN(Res r, w.Query(sql, {Int2(static_cast<int>(space)), Bytes(key)}, "metadata get"));
  if (!r || PQntuples(r.get()) != 1) return Status::IOError("metadata get: no row from the server");
  ServerRow out;
  out.row = PQgetvalue(r.get(), 0, 1)[0] != 0;
  RETURN_IF_ERROR(Decode(r.get(), 0, 0, 2, &out.value, &out.has_value));
  return out;
}

}  // namespace pg
}  // namespace snapfs::kv
