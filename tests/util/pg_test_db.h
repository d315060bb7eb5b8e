// A fresh PostgreSQL database for one test, on the throwaway server scripts/test.sh starts
// (scripts/pg-test-server.sh) and names in SNAPFS_TEST_PG: a libpq conninfo in keyword
// form without dbname ("host=/tmp/x port=54329 user=snapfs"). Without the variable (ctest
// run by hand) the PostgreSQL cases skip, loudly.
//
// Thread-safety: functions only; each call makes its own connection.
#pragma once

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

namespace snapfs::test {

inline const char* PgTestServer() {
  const char* v = std::getenv("SNAPFS_TEST_PG");
  return v && *v ? v : nullptr;
}

inline constexpr const char* kNoPgServer =
    "\n###########################################################################\n"
    "## SKIPPED: SNAPFS_TEST_PG is not set, so no PostgreSQL to test against. ##\n"
    "## scripts/test.sh starts one (scripts/pg-test-server.sh up DIR).        ##\n"
    "###########################################################################";

// Runs one statement on the server's `postgres` database; throws on failure.
inline void PgAdmin(const std::string& sql) {
  std::string ci = std::string(PgTestServer()) + " dbname=postgres";
  PGconn* c = PQconnectdb(ci.c_str());
  std::string err;
  if (PQstatus(c) != CONNECTION_OK) {
    err = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      err = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(c);
  if (!err.empty()) throw std::runtime_error("test PostgreSQL: " + sql + ": " + err);
}

// Creates an empty database and returns the conninfo of it ("" when there is no server).
// Databases are left for the server's end (its whole data folder goes).
inline std::string NewPgTestDatabase() {
  if (!PgTestServer()) return "";
  // Random, not the pid alone: a server kept across runs (a developer's) has seen pids.
  static std::atomic<int> n{0};
  std::string name = "t_" + std::to_string(getpid()) + "_" + std::to_string(std::random_device{}()) +
                     "_" + std::to_string(n++);
  PgAdmin("CREATE DATABASE " + name);
  return std::string(PgTestServer()) + " dbname=" + name;
}

}  // namespace snapfs::test
