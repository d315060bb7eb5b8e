#include "daemon/listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace snapfs::fuse {

std::string ListenAddress::ToString() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Status Listener::MakeStopPipe() {
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    Status s = PosixError("stop pipe", errno);
    Close();
    return s;
  }
  return Status::OK();
}

Status MakeUnixAddress(const std::string& path, sockaddr_un* out) {
  std::memset(out, 0, sizeof *out);
  out->sun_family = AF_UNIX;
  if (path.size() >= sizeof out->sun_path) {
    return Status::NameTooLong("socket path too long: " + path);
  }
  std::memcpy(out->sun_path, path.c_str(), path.size() + 1);
  return Status::OK();
}

Status Listener::ListenUnix(const std::string& path) {
  sockaddr_un a;
  RETURN_IF_ERROR(MakeUnixAddress(path, &a));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError("socket " + path, errno);
  ::unlink(path.c_str());      // stale from a killed server
  mode_t old = ::umask(0077);  // owner-only from the start
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    Status s = PosixError("bind " + path, errno);
    ::close(fd);
    return s;
  }
  fd_ = fd;
  unix_path_ = path;
  return MakeStopPipe();
}

Status Listener::ListenTcp(const ListenAddress& addr, const std::string& what) {
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int gai = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    return Status::InvalidArgument(what + " address " + addr.ToString() + ": " + gai_strerror(gai));
  }
  Status last = Status::IOError(what + " address " + addr.ToString() + ": no address to bind");
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = PosixError(what + " socket", errno);
      continue;
    }
    int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
      last = PosixError(what + ": cannot listen on " + addr.ToString(), errno);
      ::close(fd);
      continue;
    }
    fd_ = fd;
    break;
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) return last;
  return MakeStopPipe();
}

int Listener::Accept() {
  while (true) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[1].revents) return -1;
    if (!(p[0].revents & POLLIN)) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) return c;
  }
}

bool Listener::WaitReadable(int fd, int timeout_ms) {
  while (true) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int r = ::poll(p, 2, timeout_ms);
    if (r < 0 && errno == EINTR) continue;  // restarts the full wait: signals are rare here
    return r > 0 && !p[1].revents;
  }
}

void Listener::Stop() {
  if (stop_pipe_[1] < 0) return;
  char c = 0;
  if (::write(stop_pipe_[1], &c, 1) < 0) {
    // The pipe is only ever written once or twice; a full or closed pipe means the
    // serving thread is already waking up or gone.
  }
}

void Listener::Close() {
  if (fd_ >= 0) ::close(fd_);
  for (int& p : stop_pipe_) {
    if (p >= 0) ::close(p);
    p = -1;
  }
  fd_ = -1;
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  unix_path_.clear();
}

bool SendAll(int fd, std::string_view s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace snapfs::fuse
