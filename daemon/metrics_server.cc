#include "daemon/metrics_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace snapfs::fuse {

namespace {

std::string Response(int code, const char* reason, const std::string& type,
                     const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

}  // namespace

Result<ListenAddress> ParseListenAddress(const std::string& s) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("metrics address '" + s + "': " + why +
                                   " (expected ADDR:PORT, e.g. 127.0.0.1:9567, or off)");
  };
  ListenAddress a;
  std::string port;
  if (s.starts_with("[")) {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return bad("no port");
    }
    a.host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    a.host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (a.host.find(':') != std::string::npos) return bad("put an IPv6 address in brackets");
  }
  if (a.host.empty()) return bad("no address");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos) {
    return bad("the port is not a number");
  }
  unsigned long p = std::stoul(port);
  if (p == 0 || p > 65535) return bad("the port must be between 1 and 65535");
  a.port = static_cast<uint16_t>(p);
  return a;
}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start(const ListenAddress& addr, std::function<std::string()> body) {
  body_ = std::move(body);
  RETURN_IF_ERROR(listener_.ListenTcp(addr, "metrics"));
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void MetricsServer::Stop() {
  if (!listener_.listening()) return;
  listener_.Stop();
  if (thread_.joinable()) thread_.join();
  listener_.Close();
}

void MetricsServer::Loop() {
  for (int c; (c = listener_.Accept()) >= 0; ::close(c)) Serve(c);
}

void MetricsServer::Serve(int fd) {
  timeval tv{kReadTimeoutMs / 1000, (kReadTimeoutMs % 1000) * 1000};
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // The whole request head must arrive within the timeout, however slowly it trickles.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
  std::string req;
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0 || req.size() > 16 * 1024) return;
    if (!listener_.WaitReadable(fd, static_cast<int>(left))) return;
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    req.append(buf, static_cast<size_t>(n));
  }
  // Request line: METHOD SP TARGET SP VERSION
  std::string line = req.substr(0, req.find_first_of("\r\n"));
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    SendAll(fd, Response(400, "Bad Request", "text/plain", "bad request\n"));
    return;
  }
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string path = target.substr(0, target.find('?'));
  if (path != "/metrics") {
    SendAll(fd, Response(404, "Not Found", "text/plain", "only /metrics is served here\n"));
    return;
  }
  if (method != "GET" && method != "HEAD") {
    SendAll(fd, Response(405, "Method Not Allowed", "text/plain", "use GET\n"));
    return;
  }
  std::string resp = Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body_());
  if (method == "HEAD") resp.resize(resp.find("\r\n\r\n") + 4);
  SendAll(fd, resp);
}

}  // namespace snapfs::fuse
