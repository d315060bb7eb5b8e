// What only a remote store does, against the test radosgw (tests/util/s3_env.h): faults
// injected by a small HTTP proxy between the client and the server (500s, SlowDown
// throttling, a server slower than the deadline, truncated bodies), spool replay after a
// crash, multipart uploads, paged listings; and the parsing of S3 URLs and credentials.
// The conformance suite (backend_conformance_test.cc) covers the Backend contract.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/s3_backend.h"
#include "backends/s3_client.h"
#include "tests/util/s3_env.h"
#include "tests/util/temp_dir.h"

namespace snapfs {
namespace {

using test::TempDir;

// ---- A fault-injecting HTTP/1.1 proxy -------------------------------------------------
//
// One request per client connection (it answers with Connection: close; curl reconnects).
// Requests are forwarded verbatim, so SigV4 signatures stay valid: the Host header is
// signed, and the server checks it against what it receives, not against its own port.
class FaultProxy {
 public:
  enum class Action { kForward, kDelay, kError500, kSlowDown, kStall, kTruncate };
  // Decides what happens to request number `n` (1-based) with this request line.
  using Policy = std::function<Action(int n, const std::string& request_line)>;

  explicit FaultProxy(const std::string& upstream_endpoint) {
    // "http://127.0.0.1:PORT"
    const size_t colon = upstream_endpoint.rfind(':');
    upstream_port_ = std::stoi(upstream_endpoint.substr(colon + 1));
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("proxy: bind/listen failed");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~FaultProxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::lock_guard l(mu_);
    for (auto& t : workers_) t.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void SetPolicy(Policy p) {
    std::lock_guard l(mu_);
    policy_ = std::move(p);
  }
  int requests() const { return count_.load(); }
  std::vector<std::string> seen() {
    std::lock_guard l(mu_);
    return seen_;
  }
  // How long a stalled request is held before the connection is dropped.
  void SetStall(std::chrono::milliseconds d) { stall_ms_ = static_cast<int>(d.count()); }

 private:
  void AcceptLoop() {
    for (;;) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stop_) return;
        continue;
      }
      std::lock_guard l(mu_);
      workers_.emplace_back([this, c] { Serve(c); });
    }
  }

  static bool ReadRequest(int fd, std::string* req) {
    char buf[65536];
    size_t header_end = std::string::npos;
    while ((header_end = req->find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      req->append(buf, static_cast<size_t>(n));
    }
    size_t body = 0;
    std::string lower = req->substr(0, header_end);
    for (auto& ch : lower) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    if (size_t p = lower.find("\r\ncontent-length:"); p != std::string::npos) {
      body = std::stoull(lower.substr(p + 17));
    }
    const bool expect = lower.find("100-continue") != std::string::npos;
    if (expect) {
      const char* cont = "HTTP/1.1 100 Continue\r\n\r\n";
      (void)!::send(fd, cont, strlen(cont), MSG_NOSIGNAL);
    }
    while (req->size() < header_end + 4 + body) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      req->append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  static void SendAll(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

  std::string Forward(std::string req) {
    // Drop any Expect (we already said 100 Continue) and ask the server to close, so the
    // response ends at EOF and needs no parsing.
    const size_t eol = req.find("\r\n");
    req.insert(eol + 2, "Connection: close\r\n");
    if (size_t p = req.find("Expect: 100-continue\r\n"); p != std::string::npos) req.erase(p, 22);
    int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    std::string resp;
    if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      SendAll(u, req);
      char buf[65536];
      for (;;) {
        ssize_t n = ::recv(u, buf, sizeof buf, 0);
        if (n <= 0) break;
        resp.append(buf, static_cast<size_t>(n));
      }
    }
    ::close(u);
    return resp;
  }

  void Serve(int c) {
    std::string req;
    if (ReadRequest(c, &req)) {
      const int n = ++count_;
      const std::string line = req.substr(0, req.find("\r\n"));
      Action act;
      {
        std::lock_guard l(mu_);
        act = policy_ ? policy_(n, line) : Action::kForward;
        seen_.push_back(line);
      }
      const std::string close = "Connection: close\r\n";
      switch (act) {
        case Action::kForward:
          SendAll(c, Forward(req));
          break;
        case Action::kDelay:  // held for the stall time, then answered normally
          for (int waited = 0; waited < stall_ms_ && !stop_; waited += 10) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
          SendAll(c, Forward(req));
          break;
        case Action::kError500: {
          const std::string body = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
          SendAll(c, "HTTP/1.1 500 Internal Server Error\r\n" + close + "Content-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body);
          break;
        }
        case Action::kSlowDown: {
          const std::string body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
          SendAll(c, "HTTP/1.1 503 Slow Down\r\n" + close + "Content-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body);
          break;
        }
        case Action::kStall:
          for (int waited = 0; waited < stall_ms_ && !stop_; waited += 10) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
          break;
        case Action::kTruncate: {
          std::string resp = Forward(req);
          const size_t hdr = resp.find("\r\n\r\n");
          if (hdr != std::string::npos) {
            const size_t body = resp.size() - hdr - 4;
            resp.resize(hdr + 4 + body / 2);  // Content-Length still promises all of it
          }
          SendAll(c, resp);
          break;
        }
      }
    }
    ::shutdown(c, SHUT_RDWR);
    ::close(c);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  int upstream_port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> count_{0};
  std::atomic<int> stall_ms_{5000};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;  // GUARDED_BY(mu_)
  Policy policy_;                     // GUARDED_BY(mu_)
  std::vector<std::string> seen_;     // GUARDED_BY(mu_)
};

std::vector<uint8_t> Bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class S3FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SNAPFS_REQUIRE_S3_OR_SKIP();
    env_ = *test::GetS3TestEnv();
    proxy_ = std::make_unique<FaultProxy>(env_.endpoint);
    opts_ = test::S3TestClientOptions(env_);
    opts_.endpoint = proxy_->endpoint();
    opts_.max_attempts = 4;
    prefix_ = test::UniqueS3Prefix("fault");
  }

  std::unique_ptr<S3Client> Client(const S3ClientOptions& o) {
    auto c = S3Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  test::S3TestEnv env_;
  std::unique_ptr<FaultProxy> proxy_;
  S3ClientOptions opts_;
  std::string prefix_;
};

TEST_F(S3FaultTest, A500OnTheThirdAttemptIsRetried) {
  auto c = Client(opts_);
  ASSERT_NE(c, nullptr);
  const auto data = Bytes(100000, 1);
  ASSERT_TRUE(c->PutBytes(prefix_ + "/a", data, true).ok());
  // The GET fails twice, then succeeds on its third attempt... and a later request's
  // third attempt fails too: every third request answers 500.
  proxy_->SetPolicy([](int n, const std::string&) {
    return n % 3 == 0 ? FaultProxy::Action::kError500 : FaultProxy::Action::kForward;
  });
  for (int i = 0; i < 6; ++i) {
    std::vector<uint8_t> got(data.size());
    Status st = c->GetRange(prefix_ + "/a", 0, got.size(), got.data());
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(got, data);
  }
  EXPECT_GE(c->stats().retries, 2u);
}

TEST_F(S3FaultTest, PersistentErrorsFailWithIOErrorNamingTheObject) {
  auto c = Client(opts_);
  ASSERT_NE(c, nullptr);
  proxy_->SetPolicy([](int, const std::string&) { return FaultProxy::Action::kError500; });
  std::vector<uint8_t> buf(10);
  Status st = c->GetRange(prefix_ + "/missing", 0, buf.size(), buf.data());
  EXPECT_TRUE(st.Is(Code::kIOError)) << st.ToString();
  EXPECT_NE(st.message().find(prefix_ + "/missing"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("gave up after 4 attempts"), std::string::npos) << st.message();
  EXPECT_EQ(proxy_->requests(), 4);
}

TEST_F(S3FaultTest, SlowDownThrottlingIsRetried) {
  auto c = Client(opts_);
  ASSERT_NE(c, nullptr);
  const auto data = Bytes(5000, 2);
  // The first three attempts of the PUT are throttled.
  proxy_->SetPolicy([](int n, const std::string&) {
    return n <= 3 ? FaultProxy::Action::kSlowDown : FaultProxy::Action::kForward;
  });
  ASSERT_TRUE(c->PutBytes(prefix_ + "/b", data, true).ok());
  EXPECT_EQ(c->stats().retries, 3u);
  std::vector<uint8_t> got(data.size());
  ASSERT_TRUE(c->GetRange(prefix_ + "/b", 0, got.size(), got.data()).ok());
  EXPECT_EQ(got, data);
}

TEST_F(S3FaultTest, ASlowServerHitsTheDeadlineInsteadOfHanging) {
  S3ClientOptions o = opts_;
  o.request_timeout_ms = 300;
  o.max_attempts = 2;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  proxy_->SetStall(std::chrono::milliseconds(5000));
  proxy_->SetPolicy([](int, const std::string&) { return FaultProxy::Action::kStall; });
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> buf(100);
  Status st = c->GetRange(prefix_ + "/c", 0, buf.size(), buf.data());
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(st.Is(Code::kIOError)) << st.ToString();
  EXPECT_NE(st.message().find("imeout"), std::string::npos) << st.message();  // "Timeout was reached"
  EXPECT_LT(took, std::chrono::seconds(3)) << "two attempts of 300 ms each";
  proxy_->SetStall(std::chrono::milliseconds(0));  // lets the proxy's threads end
}

TEST_F(S3FaultTest, ATruncatedBodyIsRetried) {
  auto c = Client(opts_);
  ASSERT_NE(c, nullptr);
  const auto data = Bytes(300000, 3);
  ASSERT_TRUE(c->PutBytes(prefix_ + "/d", data, true).ok());
  const int before = proxy_->requests();
  proxy_->SetPolicy([before](int n, const std::string&) {
    return n == before + 1 ? FaultProxy::Action::kTruncate : FaultProxy::Action::kForward;
  });
  std::vector<uint8_t> got(data.size());
  Status st = c->GetRange(prefix_ + "/d", 0, got.size(), got.data());
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, data);
  EXPECT_EQ(c->stats().retries, 1u);
}

TEST_F(S3FaultTest, CreateIfAbsentAndHead) {
  auto c = Client(opts_);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->PutBytes(prefix_ + "/e", Bytes(10, 4), true).ok());
  Status again = c->PutBytes(prefix_ + "/e", Bytes(10, 4), true);
  EXPECT_TRUE(again.Is(Code::kAlreadyExists)) << again.ToString();  // If-None-Match: * -> 412
  auto head = c->Head(prefix_ + "/e");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(*head, 10u);
  EXPECT_TRUE(c->Head(prefix_ + "/nothing").status().Is(Code::kNotFound));
}

TEST_F(S3FaultTest, BackendReadsAndUploadsThroughFaults) {
  TempDir tmp;
  S3BackendOptions bo = test::S3TestBackendOptions(env_, tmp.path() + "/spool", prefix_);
  bo.client = opts_;
  // Each distinct request fails twice (500, then SlowDown) before it goes through: every
  // call of the backend meets both faults, and none runs out of attempts, however the
  // upload threads' requests interleave (a count over all requests did, once in a while).
  auto seen = std::make_shared<std::pair<std::mutex, std::map<std::string, int>>>();
  proxy_->SetPolicy([seen](int, const std::string& line) {
    std::lock_guard l(seen->first);
    switch (seen->second[line]++) {
      case 0: return FaultProxy::Action::kError500;
      case 1: return FaultProxy::Action::kSlowDown;
      default: return FaultProxy::Action::kForward;
    }
  });
  auto b = OpenS3Backend(bo);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  for (PackId id = 1; id <= 6; ++id) {
    auto w = (*b)->Create(id);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->Append(Bytes(300000 + id, id)).ok());
    ASSERT_TRUE((*w)->Seal().ok());
  }
  ASSERT_TRUE((*b)->WaitForUploads().ok());
  EXPECT_EQ((*b)->SpooledPacks(), 0u);
  for (PackId id = 1; id <= 6; ++id) {
    std::vector<uint8_t> got(300000 + id);
    Status st = (*b)->Read(id, 0, got.size(), got.data());
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(got, Bytes(300000 + id, id));
  }
  EXPECT_GT((*b)->client_stats().retries, 0u);
}

// ---- The spool ----

class S3SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SNAPFS_REQUIRE_S3_OR_SKIP();
    env_ = *test::GetS3TestEnv();
    opts_ = test::S3TestBackendOptions(env_, tmp_.path() + "/spool", test::UniqueS3Prefix("spool"));
    opts_.block_size = 1 << 20;  // the block arithmetic below assumes 1 MiB
  }
  TempDir tmp_;
  test::S3TestEnv env_;
  S3BackendOptions opts_;
};

TEST_F(S3SpoolTest, SyncedPacksOfACrashedRunAreUploadedAtOpen) {
  {
    auto b = OpenS3Backend(opts_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    auto w = (*b)->Create(10);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Bytes(70000, 10)).ok());
    ASSERT_TRUE((*w)->Sync().ok());
    // The "crash": neither Seal nor upload; what Sync made durable is in the spool.
    struct stat st;
    ASSERT_EQ(::stat((opts_.spool_dir + "/000000000000000a.pack").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 70000);
    EXPECT_EQ((*b)->SpooledPacks(), 1u);
    w->reset();
  }
  auto b = OpenS3Backend(opts_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_TRUE((*b)->WaitForUploads().ok());
  EXPECT_EQ((*b)->SpooledPacks(), 0u);
  struct stat st;
  EXPECT_NE(::stat((opts_.spool_dir + "/000000000000000a.pack").c_str(), &st), 0)
      << "the spool file stays after its upload";
  auto c = S3Client::Create(opts_.client);
  ASSERT_TRUE(c.ok());
  auto size = (*c)->Head((*b)->PackKey(10));
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, 70000u);
  std::vector<uint8_t> got(70000);
  ASSERT_TRUE((*b)->Read(10, 0, got.size(), got.data()).ok());
  EXPECT_EQ(got, Bytes(70000, 10));
  EXPECT_EQ((*b)->PackKey(10), opts_.prefix + "/packs/0a/000000000000000a.pack");
}

TEST_F(S3SpoolTest, AFailedUploadKeepsThePackReadableAndRetries) {
  FaultProxy proxy(env_.endpoint);
  opts_.client.endpoint = proxy.endpoint();
  opts_.client.max_attempts = 2;
  auto b = OpenS3Backend(opts_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  // Every PUT fails for now.
  std::atomic<bool> fail_puts{true};
  proxy.SetPolicy([&](int, const std::string& line) {
    return fail_puts && line.starts_with("PUT") ? FaultProxy::Action::kError500
                                                : FaultProxy::Action::kForward;
  });
  auto w = (*b)->Create(5);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Bytes(1000, 5)).ok());
  ASSERT_TRUE((*w)->Seal().ok()) << "Seal does not wait for the network";
  Status up = (*b)->WaitForUploads();
  EXPECT_TRUE(up.Is(Code::kIOError)) << up.ToString();
  EXPECT_EQ((*b)->SpooledPacks(), 1u);
  std::vector<uint8_t> got(1000);
  ASSERT_TRUE((*b)->Read(5, 0, got.size(), got.data()).ok());  // from the spool
  EXPECT_EQ(got, Bytes(1000, 5));
  fail_puts = false;
  for (int i = 0; i < 100 && (*b)->SpooledPacks() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ((*b)->SpooledPacks(), 0u) << "the upload was not retried";
}

// ---- Multipart and paging ----

TEST_F(S3FaultTest, MultipartUploadAndPagedListing) {
  S3ClientOptions o = test::S3TestClientOptions(env_);
  o.multipart_threshold = 6ull << 20;
  o.part_size = 5ull << 20;
  o.list_page_size = 7;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  const auto big = Bytes(12ull << 20, 9);
  ASSERT_TRUE(c->PutBytes(prefix_ + "/big", big, true).ok());
  EXPECT_EQ(c->stats().puts, 3u) << "three parts";
  EXPECT_TRUE(c->PutBytes(prefix_ + "/big", big, true).Is(Code::kAlreadyExists));
  std::vector<uint8_t> got(big.size());
  ASSERT_TRUE(c->GetRange(prefix_ + "/big", 0, got.size(), got.data()).ok());
  EXPECT_TRUE(got == big);
  for (int i = 0; i < 19; ++i) {
    ASSERT_TRUE(c->PutBytes(prefix_ + "/l/" + std::to_string(100 + i), Bytes(i, i), false).ok());
  }
  auto list = c->List(prefix_ + "/l/");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 19u);
  for (int i = 0; i < 19; ++i) {
    EXPECT_EQ((*list)[i].key, prefix_ + "/l/" + std::to_string(100 + i));
    EXPECT_EQ((*list)[i].size, static_cast<uint64_t>(i));
  }
  EXPECT_EQ(c->stats().lists, 3u) << "19 keys in pages of 7";
}

// ---- The disk cache and prefetch ----

TEST_F(S3SpoolTest, DiskCacheServesRereadsAfterReopenAndSurvivesDamage) {
  opts_.disk_cache_dir = tmp_.path() + "/cache";
  opts_.disk_cache_bytes = 3ull << 20;  // three 1 MiB blocks (plus trailers: two fit)
  const auto data = Bytes(5ull << 20, 77);
  {
    auto b = OpenS3Backend(opts_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    auto w = (*b)->Create(1);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(data).ok());
    ASSERT_TRUE((*w)->Seal().ok());
    ASSERT_TRUE((*b)->WaitForUploads().ok());
    std::vector<uint8_t> got(data.size());
    ASSERT_TRUE((*b)->Read(1, 0, got.size(), got.data()).ok());
    EXPECT_TRUE(got == data);
  }
  // A new process: its memory cache is cold, the last blocks read are on disk.
  auto b = OpenS3Backend(opts_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const uint64_t gets_before = (*b)->client_stats().gets;
  std::vector<uint8_t> got(1 << 20);
  ASSERT_TRUE((*b)->Read(1, 4ull << 20, got.size(), got.data()).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin() + (4 << 20)));
  EXPECT_EQ((*b)->client_stats().gets, gets_before) << "block 4 should come from disk";
  EXPECT_EQ((*b)->disk_cache_hits(), 1u);
  // The size bound held: at most three blocks' files.
  uint64_t files = 0, bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(opts_.disk_cache_dir)) {
    files++;
    bytes += e.file_size();
  }
  EXPECT_LE(bytes, opts_.disk_cache_bytes);
  EXPECT_GE(files, 1u);
  // A damaged cache file is a miss, not bad bytes.
  for (const auto& e : std::filesystem::directory_iterator(opts_.disk_cache_dir)) {
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  auto b2 = OpenS3Backend(opts_);
  ASSERT_TRUE(b2.ok());
  ASSERT_TRUE((*b2)->Read(1, 4ull << 20, got.size(), got.data()).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin() + (4 << 20)));
  EXPECT_EQ((*b2)->disk_cache_hits(), 0u);
  EXPECT_EQ((*b2)->client_stats().gets, 1u);
  // Remove drops the pack's cached blocks.
  ASSERT_TRUE((*b2)->Remove(1).ok());
  EXPECT_TRUE(std::filesystem::is_empty(opts_.disk_cache_dir));
}

TEST_F(S3SpoolTest, PrefetchFetchesAheadOfTheReader) {
  const auto data = Bytes(4ull << 20, 78);
  auto b = OpenS3Backend(opts_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto w = (*b)->Create(2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(data).ok());
  ASSERT_TRUE((*w)->Seal().ok());
  ASSERT_TRUE((*b)->WaitForUploads().ok());
  (*b)->Prefetch(2, 1 << 20, 3 << 20);  // blocks 1..3
  for (int i = 0; i < 200 && (*b)->client_stats().gets < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the last insert
  const uint64_t gets = (*b)->client_stats().gets;
  EXPECT_EQ(gets, 3u);
  std::vector<uint8_t> got(3 << 20);
  ASSERT_TRUE((*b)->Read(2, 1 << 20, got.size(), got.data()).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin() + (1 << 20)));
  EXPECT_EQ((*b)->client_stats().gets, gets) << "the prefetched blocks were fetched again";
}

// Readers of a block that is being fetched (by read-ahead or another reader) wait for that
// GET instead of issuing their own: a slow server makes sure they overlap.
TEST_F(S3SpoolTest, ReadersOfABlockBeingFetchedShareOneGet) {
  const auto data = Bytes(2ull << 20, 79);
  {
    auto b = OpenS3Backend(opts_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    auto w = (*b)->Create(3);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(data).ok());
    ASSERT_TRUE((*w)->Seal().ok());
    ASSERT_TRUE((*b)->WaitForUploads().ok());
  }
  FaultProxy proxy(env_.endpoint);
  proxy.SetStall(std::chrono::milliseconds(300));
  proxy.SetPolicy([](int, const std::string& line) {
    return line.starts_with("GET ") ? FaultProxy::Action::kDelay : FaultProxy::Action::kForward;
  });
  opts_.client.endpoint = proxy.endpoint();
  opts_.readahead_bytes = 0;  // the hint as given: block 1 alone
  auto b = OpenS3Backend(opts_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const uint64_t gets0 = (*b)->client_stats().gets;
  (*b)->Prefetch(3, 1 << 20, 1 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the prefetcher's GET is held
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, i] {
      std::vector<uint8_t> got(64 << 10);
      const uint64_t off = (1 << 20) + i * 4096;
      if ((*b)->Read(3, off, got.size(), got.data()).ok() &&
          std::equal(got.begin(), got.end(), data.begin() + static_cast<long>(off))) {
        good++;
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good.load(), 4);
  EXPECT_EQ((*b)->client_stats().gets - gets0, 1u)
      << "the prefetcher and four readers of one block made more than one GET";
}

// ---- Parsing (no server needed) ----

TEST(S3UrlTest, ParsesBucketAndPrefix) {
  auto l = ParseS3Url("s3://checkpoints/prod/job1/");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->bucket, "checkpoints");
  EXPECT_EQ(l->prefix, "prod/job1");
  l = ParseS3Url("s3://abc");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->prefix, "");
  for (const char* bad : {"s3://", "s3://ab", "s3://Upper/x", "http://b/x", "s3://-bucket/x",
                          "s3://bucket//x", "s3://bu_ck/x", "checkpoints/prod"}) {
    EXPECT_TRUE(ParseS3Url(bad).status().Is(Code::kInvalidArgument)) << bad;
  }
}

TEST(S3CredentialsTest, FileMustBeOwnerOnlyAndComplete) {
  TempDir tmp;
  const std::string f = tmp.path() + "/cred";
  std::ofstream(f) << "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n";
  ASSERT_EQ(::chmod(f.c_str(), 0644), 0);
  EXPECT_TRUE(LoadS3Credentials(f).status().Is(Code::kPermission));
  ASSERT_EQ(::chmod(f.c_str(), 0600), 0);
  auto c = LoadS3Credentials(f);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key, "AK");
  EXPECT_EQ(c->secret_key, "SK");
  std::ofstream(f) << "aws_access_key_id = AK\n";
  EXPECT_TRUE(LoadS3Credentials(f).status().Is(Code::kInvalidArgument));
  Status st = LoadS3Credentials(tmp.path() + "/none").status();
  EXPECT_TRUE(st.Is(Code::kNotFound)) << st.ToString();
}

}  // namespace
}  // namespace snapfs
