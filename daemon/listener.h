// A listening stream socket with a stop signal: the socket setup and accept loop shared by
// the daemon's control socket (a Unix socket, fuse/control) and the metrics server (TCP,
// fuse/metrics_server). Stop wakes a thread blocked in Accept or WaitReadable at once
// (a self-pipe), so a server stops without polling on a timer.
//
// Thread-safety: Listen*, Close and the destructor from the owning thread while no other
// thread uses the object; Accept and WaitReadable from the serving thread; Stop from any
// thread, also while the serving thread is blocked.
#pragma once

#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace snapfs::fuse {

struct ListenAddress {
  std::string host;  // an IPv4 or IPv6 literal, or a name (resolved at Listen)
  uint16_t port = 0;
  std::string ToString() const;  // "127.0.0.1:9567", "[::1]:9567"
};

class Listener {
 public:
  Listener() = default;
  ~Listener() { Close(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Listens on a Unix socket at `path`, owner-only from the start (bound under umask
  // 0077), replacing a stale socket file there (the caller makes sure no live server
  // owns it: the daemon holds the store lock). NameTooLong for a path that does not fit.
  Status ListenUnix(const std::string& path);
  // Listens on TCP `addr`: the first of the addresses it resolves to that binds, with
  // SO_REUSEADDR. `what` names the server in errors ("metrics").
  Status ListenTcp(const ListenAddress& addr, const std::string& what);

  bool listening() const { return fd_ >= 0; }
  // Blocks until a client connects and returns its descriptor (close-on-exec; the caller
  // closes it), or returns -1 once Stop has been called.
  int Accept();
  // Waits up to `timeout_ms` for `fd` to be readable: false on timeout, on Stop or on an
  // error (the caller then drops the connection).
  bool WaitReadable(int fd, int timeout_ms);
  // Makes Accept and WaitReadable return at once, now and from now on.
  void Stop();
  // Closes the socket (removing a Unix socket's file) and the stop pipe. Idempotent.
  void Close();

 private:
  Status MakeStopPipe();

  int fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::string unix_path_;  // removed by Close
};

// The address of the Unix socket at `path`; NameTooLong if it does not fit in sun_path.
Status MakeUnixAddress(const std::string& path, sockaddr_un* out);

// Sends all of `s` (retrying short sends and EINTR, no SIGPIPE); false if the peer went
// away or the send timed out.
bool SendAll(int fd, std::string_view s);

}  // namespace snapfs::fuse
