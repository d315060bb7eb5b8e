// The daemon's control socket: STORE/control.sock, owner-only, one request per
// connection. The CLI uses it for a store that a daemon has open (and locked).
//   request:  one line, a verb and its arguments (e.g. "stats")
//   response: the handler's text (JSON), then EOF
// Thread-safety: one accept thread; handlers run on it, one at a time.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "core/status.h"

namespace snapfs::fuse {

using ControlHandler = std::function<std::string(const std::string& request)>;

class ControlServer {
 public:
  ~ControlServer();
  // Binds STORE/control.sock (replacing a stale one) and starts serving.
  Status Start(const std::string& store_dir, ControlHandler handler);
  void Stop();

 private:
  void Loop();
  std::string path_;
  int fd_ = -1;
  ControlHandler handler_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// Client side: sends `request` to the daemon serving `store_dir`, returns its answer.
// NotFound if no daemon listens there.
Result<std::string> CallDaemon(const std::string& store_dir, const std::string& request);

std::string ControlSocketPath(const std::string& store_dir);

}  // namespace snapfs::fuse
