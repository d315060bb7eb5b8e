#include "daemon/control.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

namespace snapfs::fuse {

namespace {
constexpr size_t kMaxRequest = 1 << 20;  // longer requests are refused unread
}  // namespace

std::string ControlSocketPath(const std::string& store_dir) { return store_dir + "/control.sock"; }

ControlServer::~ControlServer() { Stop(); }

Status ControlServer::Start(const std::string& store_dir, ControlHandler handler) {
  handler_ = std::move(handler);
  // A socket file left by a killed daemon is replaced: we hold the store lock.
  RETURN_IF_ERROR(listener_.ListenUnix(ControlSocketPath(store_dir)));
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void ControlServer::Stop() {
  if (!listener_.listening()) return;
  listener_.Stop();
  if (thread_.joinable()) thread_.join();
  listener_.Close();
}

void ControlServer::Loop() {
  for (int c; (c = listener_.Accept()) >= 0; ::close(c)) {
    // Only the store's owner (or root) may drive the daemon.
    ucred cred;
    socklen_t len = sizeof cred;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != ::geteuid() && cred.uid != 0)) {
      SendAll(c, "{\"error\":\"permission denied\"}\n");
      continue;
    }
    std::string req;
    char buf[4096];
    // One client at a time: one that stops sending, or never reads its answer, must not
    // hold the socket for longer than this.
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (req.find('\n') == std::string::npos && req.size() < kMaxRequest) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    // Nothing more is read: a client still sending gets EPIPE at once, instead of both
    // sides waiting for the other to read.
    ::shutdown(c, SHUT_RD);
    if (auto nl = req.find('\n'); nl != std::string::npos) {
      req.resize(nl);
    } else if (req.size() >= kMaxRequest) {
      SendAll(c, "{\"error\":\"control request longer than 1 MiB: invalid argument\",\"code\":" +
                     std::to_string(static_cast<int>(Code::kInvalidArgument)) +
                     ",\"message\":\"control request longer than 1 MiB\"}\n");
      continue;
    }
    SendAll(c, handler_(req));
  }
}

Result<std::string> CallDaemon(const std::string& store_dir, const std::string& request) {
  sockaddr_un a;
  RETURN_IF_ERROR(MakeUnixAddress(ControlSocketPath(store_dir), &a));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError("socket", errno);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    if (e == ENOENT || e == ECONNREFUSED) {
      return Status::NotFound("no snapfs daemon serves " + store_dir);
    }
    return PosixError("connect to the daemon of " + store_dir, e);
  }
  std::string out;
  if (!SendAll(fd, request + "\n")) {
    ::close(fd);
    return Status::IOError("the daemon closed the control connection");
  }
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (out.empty()) return Status::IOError("empty answer from the daemon");
  return out;
}

}  // namespace snapfs::fuse
