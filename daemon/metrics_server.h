// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers the text
// exposition format (0.0.4); any other path is 404, any other method 405. One connection
// at a time, closed after each answer; a client that does not send its request within
// the read timeout is dropped, so a stuck client cannot block the scrapes after it.
// Bound to the address given (the default is loopback only: the metrics carry no secrets
// but need not be public).
//
// Thread-safety: Start and Stop from one thread; the body callback runs on the server's
// own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "base/status.h"
#include "daemon/listener.h"

namespace snapfs::fuse {

// "127.0.0.1:9567", "[::1]:9567", "localhost:9567" -> host and port. InvalidArgument on
// anything else (no port, a port that is not a number in 1..65535).
Result<ListenAddress> ParseListenAddress(const std::string& s);

class MetricsServer {
 public:
  static constexpr int kReadTimeoutMs = 2000;
  ~MetricsServer();
  // Binds and starts serving; an error (e.g. the port is taken) leaves nothing running.
  Status Start(const ListenAddress& addr, std::function<std::string()> body);
  void Stop();

 private:
  void Loop();
  void Serve(int fd);
  Listener listener_;
  std::function<std::string()> body_;
  std::thread thread_;
};

}  // namespace snapfs::fuse
