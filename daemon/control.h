// The daemon's control socket: STORE/control.sock, owner-only, one request per
// connection. The CLI uses it for a store that a daemon has open (and locked).
//   request:  one line, a verb and its arguments (e.g. "stats"), at most 1 MiB (a longer
//             one is answered with an error, unread)
//   response: the handler's text (JSON), then EOF
// A client gets 5 s to send its request and 5 s to take each part of the answer.
// Thread-safety: Start and Stop from one thread; one accept thread, handlers run on it,
// one at a time.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "base/status.h"
#include "daemon/listener.h"

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
  Listener listener_;
  ControlHandler handler_;
  std::thread thread_;
};

// Client side: sends `request` to the daemon serving `store_dir`, returns its answer.
// NotFound if no daemon listens there.
Result<std::string> CallDaemon(const std::string& store_dir, const std::string& request);

std::string ControlSocketPath(const std::string& store_dir);

}  // namespace snapfs::fuse
