#include "base/log.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace snapfs::log {

namespace {

std::atomic<int> g_level{static_cast<int>(Level::kOff)};
std::mutex g_mu;
std::shared_ptr<spdlog::logger> g_logger;  // GUARDED_BY(g_mu) for replacement

spdlog::level::level_enum ToSpd(Level l) {
  switch (l) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      break;
  }
  return spdlog::level::off;
}

std::shared_ptr<spdlog::logger> Current() {
  std::lock_guard l(g_mu);
  return g_logger;
}

}  // namespace

Result<Level> ParseLevel(std::string_view s) {
  if (s == "trace") return Level::kTrace;
  if (s == "debug") return Level::kDebug;
  if (s == "info") return Level::kInfo;
  if (s == "warn" || s == "warning") return Level::kWarn;
  if (s == "error") return Level::kError;
  return Status::InvalidArgument("log level '" + std::string(s) +
                                 "' is not one of trace, debug, info, warn, error");
}

Status Configure(const Options& opts) {
  std::shared_ptr<spdlog::logger> lg;
  try {
    spdlog::sink_ptr sink;
    if (opts.dest == "stderr") {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else if (opts.dest == "syslog") {
      sink = std::make_shared<spdlog::sinks::syslog_sink_mt>("snapfs", LOG_PID, LOG_DAEMON,
                                                             /*enable_formatting=*/false);
    } else {
      // Owner-only, like the rest of the store folder (paths in it may be private).
      int fd = ::open(opts.dest.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);
      sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(opts.dest, opts.max_bytes,
                                                                    opts.files - 1);
    }
    lg = std::make_shared<spdlog::logger>("snapfs", std::move(sink));
  } catch (const std::exception& e) {
    return Status::IOError("log " + opts.dest + ": " + e.what());
  }
  // Local time with its UTC offset, milliseconds, the level, the thread.
  lg->set_pattern(opts.dest == "syslog" ? "%v" : "%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %v");
  lg->set_level(ToSpd(opts.level));
  // Lines at info and above (rare) reach the sink at once; trace and debug are buffered.
  lg->flush_on(spdlog::level::info);
  {
    std::lock_guard l(g_mu);
    g_logger = std::move(lg);
  }
  g_level.store(static_cast<int>(opts.level));
  return Status::OK();
}

void Shutdown() {
  g_level.store(static_cast<int>(Level::kOff));
  std::shared_ptr<spdlog::logger> lg;
  {
    std::lock_guard l(g_mu);
    lg = std::move(g_logger);
  }
  if (lg) lg->flush();
}

bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed) && level != Level::kOff;
}

void Write(Level level, std::string_view msg) {
  auto lg = Current();
  if (!lg) return;
  try {
    lg->log(ToSpd(level), "{}", msg);
  } catch (...) {  // a full disk must not take a request down with it
  }
}

}  // namespace snapfs::log
