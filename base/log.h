// Logging facade: the core and the FUSE layer log through these macros and never see
// the sink (a file, syslog, stderr: chosen once by the daemon with Configure).
// Until Configure is called nothing is logged, so CLI verbs that open a store directly
// keep their output to what they print themselves.
//
//   SNAPFS_LOG_INFO("gc freed " + HumanBytes(n));   // the argument is built only if enabled
//
// Thread-safety: all functions are thread-safe; Configure and Shutdown are meant to be
// called once each, by the daemon, around its life.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace snapfs::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

struct Options {
  Level level = Level::kInfo;
  // "stderr", "syslog", or a file path (size-rotated: FILE, FILE.1 .. FILE.<files-1>).
  std::string dest = "stderr";
  size_t max_bytes = 10u << 20;
  size_t files = 3;
};

// "trace" | "debug" | "info" | "warn" | "error" -> Level; InvalidArgument otherwise.
Result<Level> ParseLevel(std::string_view s);
Status Configure(const Options& opts);
// Flushes and closes the sink; later messages are dropped.
void Shutdown();

bool Enabled(Level level);
void Write(Level level, std::string_view msg);

}  // namespace snapfs::log

#define SNAPFS_LOG(level, msg)                                           \
  do {                                                                   \
    if (::snapfs::log::Enabled(level)) ::snapfs::log::Write(level, msg); \
  } while (0)
#define SNAPFS_LOG_TRACE(msg) SNAPFS_LOG(::snapfs::log::Level::kTrace, msg)
#define SNAPFS_LOG_DEBUG(msg) SNAPFS_LOG(::snapfs::log::Level::kDebug, msg)
#define SNAPFS_LOG_INFO(msg) SNAPFS_LOG(::snapfs::log::Level::kInfo, msg)
#define SNAPFS_LOG_WARN(msg) SNAPFS_LOG(::snapfs::log::Level::kWarn, msg)
#define SNAPFS_LOG_ERROR(msg) SNAPFS_LOG(::snapfs::log::Level::kError, msg)
