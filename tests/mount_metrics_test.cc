// Operating a real mount: /metrics scraped with a real HTTP client (curl) while files are
// written and fsync'd, a metrics port that is taken, bad --metrics values, and the log.
// GCC 12 reports std::regex internals as maybe-uninitialized when building with the
// sanitizers (a false positive inside libstdc++, not in this file).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <regex>
#include <set>

#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

// Listens on 127.0.0.1:port itself (the port is then taken); -1 on failure.
int Occupy(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 1) != 0) {
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A parsed exposition: sample "name{labels}" -> value. Problems with the format are
// test failures, named with the offending line.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram
  std::set<std::string> helps;

  double Get(const std::string& key) const {
    auto it = samples.find(key);
    if (it == samples.end()) {
      ADD_FAILURE() << "no sample " << key;
      return -1;
    }
    return it->second;
  }
};

Scrape Parse(const std::string& text) {
  Scrape s;
  static const std::regex kSample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? ([^ ]+)$)re");
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> names;
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.empty()) continue;
    if (std::regex_match(line, m, kHelp)) {
      s.helps.insert(m[1]);
    } else if (std::regex_match(line, m, kType)) {
      EXPECT_EQ(s.types.count(m[1]), 0u) << "TYPE given twice: " << line;
      s.types[m[1]] = m[2];
    } else if (std::regex_match(line, m, kSample)) {
      char* end = nullptr;
      std::string v = m[3];
      double d = v == "+Inf" ? INFINITY : std::strtod(v.c_str(), &end);
      EXPECT_TRUE(v == "+Inf" || (end && *end == '\0')) << "bad value in: " << line;
      std::string key = std::string(m[1]) + std::string(m[2]);
      EXPECT_EQ(s.samples.count(key), 0u) << "sample given twice: " << line;
      s.samples[key] = d;
      names.push_back(m[1]);
    } else {
      ADD_FAILURE() << "not an exposition line: '" << line << "'";
    }
  }
  for (const auto& n : names) {
    std::string family = n;
    if (!s.types.count(n)) {
      for (const char* suf : {"_bucket", "_sum", "_count"}) {
        if (n.ends_with(suf)) family = n.substr(0, n.size() - strlen(suf));
      }
      EXPECT_EQ(s.types[family], "histogram") << n << " has no TYPE line";
    }
    EXPECT_TRUE(s.helps.count(family)) << family << " has no HELP line";
    EXPECT_TRUE(family.starts_with("snapfs_")) << family;
    if (s.types[family] == "counter") {
      EXPECT_TRUE(family.ends_with("_total")) << family;
    }
  }
  return s;
}

class MountMetrics : public MountFixture {
 protected:
  static CmdResult Curl(const std::string& url) {
    return Run({"curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", url}, 60);
  }

  // GET /metrics: asserts a 200 with the exposition content type, and parses the body.
  Scrape ScrapeOk(int port) {
    CmdResult r = Run({"curl", "-sS", "--max-time", "30", "-D", "-",
                       "http://127.0.0.1:" + std::to_string(port) + "/metrics"},
                      60);
    EXPECT_EQ(r.code, 0) << r.Describe() << DaemonLog();
    auto head_end = r.out.find("\r\n\r\n");
    EXPECT_NE(head_end, std::string::npos) << r.out;
    if (head_end == std::string::npos) return {};
    std::string head = r.out.substr(0, head_end);
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200")) << head;
    EXPECT_NE(head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << head;
    return Parse(r.out.substr(head_end + 4));
  }
};

TEST_F(MountMetrics, CountersMoveWithWritesAndFsync) {
  int port = FreePort();
  ASSERT_GT(port, 0);
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port)}));

  Scrape before = ScrapeOk(port);
  for (const char* name :
       {"snapfs_fuse_requests_total", "snapfs_fuse_request_duration_seconds",
        "snapfs_fuse_request_errors_total", "snapfs_read_bytes_total", "snapfs_written_bytes_total",
        "snapfs_dedup_bytes_total", "snapfs_chunk_cache_hits_total",
        "snapfs_chunk_cache_misses_total", "snapfs_fsync_total", "snapfs_fsync_duration_seconds",
        "snapfs_io_errors_total", "snapfs_chunk_hash_mismatches_total", "snapfs_gc_runs_total",
        "snapfs_gc_duration_seconds", "snapfs_gc_freed_bytes_total", "snapfs_build_info",
        "snapfs_start_time_seconds"}) {
    EXPECT_TRUE(before.types.count(name)) << name << " is not exported";
  }

  const std::string data = RandomBytes(3 * kMiB, 7);
  ASSERT_EQ(WriteFile(Path("job-1.bin"), data, /*fsync_it=*/true), 0);
  // The same bytes again: they are stored once, the second copy deduplicates.
  ASSERT_EQ(WriteFile(Path("job-2.bin"), data, /*fsync_it=*/true), 0);

  Scrape after = ScrapeOk(port);
  auto delta = [&](const std::string& k) { return after.Get(k) - before.Get(k); };
  EXPECT_GE(delta("snapfs_written_bytes_total"), 2.0 * data.size());
  EXPECT_GE(delta("snapfs_fsync_total"), 2);
  EXPECT_GE(delta("snapfs_fsync_duration_seconds_count"), 2);
  EXPECT_GE(delta("snapfs_fuse_requests_total{op=\"fsync\"}"), 2);
  EXPECT_GE(delta("snapfs_fuse_requests_total{op=\"write\"}"), 2);
  EXPECT_GE(delta("snapfs_fuse_requests_total{op=\"create\"}"), 2);
  EXPECT_GE(delta("snapfs_fuse_request_duration_seconds_count{op=\"write\"}"),
            delta("snapfs_fuse_requests_total{op=\"write\"}"));
  EXPECT_EQ(after.Get("snapfs_fuse_request_duration_seconds_bucket{op=\"write\",le=\"+Inf\"}"),
            after.Get("snapfs_fuse_request_duration_seconds_count{op=\"write\"}"));
  EXPECT_GE(delta("snapfs_chunk_put_bytes_total"), 2.0 * data.size());
  // Most of the second copy deduplicates (all but chunks cut differently at its end).
  EXPECT_GE(delta("snapfs_dedup_bytes_total"), data.size() / 2);
  EXPECT_EQ(after.Get("snapfs_io_errors_total"), 0);

  // A client that connects and never sends its request does not block the next scrape.
  {
    UniqueFd stuck(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    ASSERT_EQ(::connect(stuck.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::send(stuck.get(), "GET /met", 8, MSG_NOSIGNAL), 8);
    Scrape again = ScrapeOk(port);  // curl gives up after 30 s; the server drops the other
    EXPECT_GE(again.Get("snapfs_written_bytes_total"), after.Get("snapfs_written_bytes_total"));
  }

  // Only GET /metrics is served.
  CmdResult other = Curl("http://127.0.0.1:" + std::to_string(port) + "/other");
  EXPECT_TRUE(other.out.ends_with("\n404")) << other.Describe();
  CmdResult post = Run({"curl", "-sS", "-X", "POST", "-w", "\n%{http_code}",
                        "http://127.0.0.1:" + std::to_string(port) + "/metrics"},
                       60);
  EXPECT_TRUE(post.out.ends_with("\n405")) << post.Describe();

  // The gauges of the store come from a periodic count; after a GC they are fresh.
  CmdResult gc = Snapfs({"gc", mnt()});
  ASSERT_EQ(gc.code, 0) << gc.Describe();
  Scrape later = ScrapeOk(port);
  EXPECT_EQ(later.Get("snapfs_gc_runs_total{result=\"ok\"}") -
                after.Get("snapfs_gc_runs_total{result=\"ok\"}"),
            1);
}

TEST_F(MountMetrics, StoreGaugesCountWhatIsStored) {
  int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string data = RandomBytes(2 * kMiB, 11);
  ASSERT_EQ(WriteFile(Path("a.bin"), data, true), 0);
  // Mounted again, the daemon computes the gauges at start.
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port)}));
  Scrape s;
  for (int i = 0; i < 300; i++) {  // the first count runs on its own thread at start
    s = ScrapeOk(port);
    if (s.samples.count("snapfs_store_logical_bytes")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(s.Get("snapfs_store_logical_bytes"), static_cast<double>(data.size()));
  EXPECT_GE(s.Get("snapfs_store_stored_bytes"), static_cast<double>(data.size()));
  EXPECT_GE(s.Get("snapfs_store_packs"), 1);
  EXPECT_EQ(s.Get("snapfs_snapshots"), 0);
  EXPECT_GT(s.Get("snapfs_store_disk_size_bytes"), 0);
}

TEST_F(MountMetrics, PortTakenMountStillWorks) {
  int port = 0;
  UniqueFd taken(Occupy(&port));
  ASSERT_TRUE(taken.ok());
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "127.0.0.1:" + std::to_string(port)}));
  ASSERT_EQ(WriteFile(Path("f"), "still works", true), 0);
  EXPECT_EQ(ReadFile(Path("f")), "still works");
  std::string log = DaemonLog();
  EXPECT_NE(log.find("no metrics"), std::string::npos) << log;
  EXPECT_NE(log.find(std::to_string(port)), std::string::npos) << log;

  CmdResult st = Snapfs({"status", mnt(), "--json"});
  EXPECT_EQ(st.code, 1) << st.Describe();
  auto j = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << st.Describe();
  EXPECT_EQ(j["health"], "degraded");
  EXPECT_EQ(j["metrics"]["listening"], false);
  EXPECT_EQ(j["metrics"]["address"], "127.0.0.1:" + std::to_string(port));
  bool named = false;
  for (const auto& r : j["reasons"])
    named |= r.get<std::string>().find("metrics") != std::string::npos;
  EXPECT_TRUE(named) << j.dump();
}

TEST_F(MountMetrics, BadMetricsAndLogOptionsExit2) {
  for (std::vector<std::string> bad :
       std::vector<std::vector<std::string>>{{"--metrics", "banana"},
                                             {"--metrics", "127.0.0.1"},
                                             {"--metrics", "127.0.0.1:0"},
                                             {"--metrics", "127.0.0.1:99999"},
                                             {"--metrics", ":9567"},
                                             {"--log-level", "loud"}}) {
    CmdResult r = TryMount(bad);
    EXPECT_EQ(r.code, 2) << ShellJoin(bad) << "\n" << r.Describe();
    EXPECT_FALSE(r.err.empty()) << ShellJoin(bad);
  }
}

TEST_F(MountMetrics, LogHasStartGcAndStopLines) {
  ASSERT_NO_FATAL_FAILURE(RemountWith({"--metrics", "off"}));
  ASSERT_EQ(WriteFile(Path("x"), RandomBytes(kMiB, 3), true), 0);
  ASSERT_EQ(::unlink(Path("x").c_str()), 0);
  CmdResult gc = Snapfs({"gc", mnt()});
  ASSERT_EQ(gc.code, 0) << gc.Describe();
  CmdResult um = Snapfs({"umount", mnt()});
  ASSERT_EQ(um.code, 0) << um.Describe();

  std::string log = DaemonLog();
  // "2026-12-01T19:23:09.123+01:00 info [1234] snapfs 0.9.0 (...) pid N: store S mounted on M"
  static const std::regex kStart(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d info \[\d+\] snapfs \d+\.\d+\.\d+ .*store )" +
      store() + " mounted on " + mnt());
  EXPECT_TRUE(std::regex_search(log, kStart)) << log;
  static const std::regex kGc(R"( info \[\d+\] gc \(snapfs gc\): freed \d+ bytes in )");
  EXPECT_TRUE(std::regex_search(log, kGc)) << log;
  EXPECT_NE(log.find(" info "), std::string::npos);
  EXPECT_NE(log.find("] stopped"), std::string::npos) << log;

  // --log FILE and --log-level: only warnings and worse reach that file.
  std::string other = tmp() + "/other.log";
  CmdResult m =
      Snapfs({"mount", store(), mnt(), "--metrics", "off", "--log", other, "--log-level", "warn"});
  ASSERT_EQ(m.code, 0) << m.Describe();
  CmdResult um2 = Snapfs({"umount", mnt()});
  ASSERT_EQ(um2.code, 0) << um2.Describe();
  std::string o = ReadFile(other);
  EXPECT_EQ(o.find(" info "), std::string::npos) << o;
  ASSERT_NO_FATAL_FAILURE(Mount());  // for TearDown
}

TEST_F(MountMetrics, VersionCommand) {
  CmdResult v = Snapfs({"--version"});
  EXPECT_EQ(v.code, 0) << v.Describe();
  EXPECT_TRUE(std::regex_search(v.out, std::regex(R"(^snapfs \d+\.\d+\.\d+ \(commit )"))) << v.out;
  EXPECT_NE(v.out.find("libfuse 3."), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("RocksDB "), std::string::npos) << v.out;
  CmdResult j = Snapfs({"version", "--json"});
  EXPECT_EQ(j.code, 0) << j.Describe();
  auto doc = nlohmann::json::parse(j.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << j.out;
  EXPECT_EQ(doc["schema"], 1);
  EXPECT_TRUE(doc["version"].is_string());
  EXPECT_EQ(doc["store_format"], 1);  // StoreConfig::kFormatVersion
  EXPECT_TRUE(doc["libfuse"].get<std::string>().starts_with("3."));
  EXPECT_FALSE(doc["rocksdb"].get<std::string>().empty());
  // The store a `snapfs init` made has the format this binary reports.
  std::ifstream conf(store() + "/snapfs.conf");
  std::string text((std::istreambuf_iterator<char>(conf)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(std::regex_search(
      text, std::regex("format_version = " + std::to_string(doc["store_format"].get<int>()))))
      << text;
  CmdResult bad = Snapfs({"version", "--bogus"});
  EXPECT_EQ(bad.code, 2) << bad.Describe();
}

}  // namespace
}  // namespace snapfs::mounttest
