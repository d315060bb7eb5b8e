#include "fuse/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace snapfs::fuse {

namespace {

Status MakeAddr(const std::string& path, sockaddr_un* a) {
  std::memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (path.size() >= sizeof a->sun_path) {
    return Status::NameTooLong("control socket path too long: " + path);
  }
  std::memcpy(a->sun_path, path.c_str(), path.size() + 1);
  return Status::OK();
}

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string ControlSocketPath(const std::string& store_dir) { return store_dir + "/control.sock"; }

ControlServer::~ControlServer() { Stop(); }

Status ControlServer::Start(const std::string& store_dir, ControlHandler handler) {
  handler_ = std::move(handler);
  path_ = ControlSocketPath(store_dir);
  sockaddr_un a;
  RETURN_IF_ERROR(MakeAddr(path_, &a));
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return PosixError("control socket", errno);
  ::unlink(path_.c_str());     // stale from a killed daemon: we hold the store lock
  mode_t old = ::umask(0077);  // owner-only from the start
  int rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::umask(old);
  if (rc != 0 || ::listen(fd_, 16) != 0) {
    Status s = PosixError("bind " + path_, errno);
    ::close(fd_);
    fd_ = -1;
    return s;
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void ControlServer::Stop() {
  if (fd_ < 0) return;
  stop_ = true;
  ::shutdown(fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
  fd_ = -1;
  ::unlink(path_.c_str());
}

void ControlServer::Loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, 500);
    if (r <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // Only the store's owner (or root) may drive the daemon.
    ucred cred;
    socklen_t len = sizeof cred;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != ::geteuid() && cred.uid != 0)) {
      WriteAll(c, "{\"error\":\"permission denied\"}\n");
      ::close(c);
      continue;
    }
    std::string req;
    char buf[4096];
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (req.find('\n') == std::string::npos && req.size() < (1 << 20)) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    if (auto nl = req.find('\n'); nl != std::string::npos) req.resize(nl);
    WriteAll(c, handler_(req));
    ::close(c);
  }
}

Result<std::string> CallDaemon(const std::string& store_dir, const std::string& request) {
  sockaddr_un a;
  RETURN_IF_ERROR(MakeAddr(ControlSocketPath(store_dir), &a));
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
  if (!WriteAll(fd, request + "\n")) {
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
