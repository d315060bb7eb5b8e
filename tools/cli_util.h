// Shared plumbing of the CLI verbs: option parsing with --help, sizes, printing.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/status.h"
#include "tools/commands.h"

namespace snapfs {
class Store;
}

namespace snapfs::cli {

namespace po = boost::program_options;

// Parses `args` for `verb`. Returns an exit code to return immediately (help printed, or
// a usage error printed to stderr), or nullopt to go on.
std::optional<int> Parse(const std::string& verb, const std::string& synopsis, const Args& args,
                         const po::options_description& opts,
                         const po::positional_options_description& pos, po::variables_map* vm);

// "64K", "1M", "1048576" -> bytes. InvalidArgument on anything else.
Result<uint64_t> ParseSize(const std::string& s);
// 1536 -> "1.5 KiB"
std::string HumanBytes(uint64_t n);

// Prints "snapfs VERB: message" to stderr and returns kExitFailure.
int Fail(const std::string& verb, const Status& s);

// The store behind a snapfs mount point (from /proc/self/mounts), or "" if none.
std::string StoreOfMount(const std::string& mountpoint);

// What a STORE|MOUNTPOINT argument names.
struct Target {
  std::string store;   // the store folder
  int daemon_pid = 0;  // > 0: a live daemon has it open; talk to it over its socket
};
Target ResolveTarget(const std::string& arg);

// Answers `request` for the store `t` names: through its daemon's control socket when a
// daemon has it open, else by opening the store and calling `direct`. The answer is
// JSON; an {"error": ...} answer comes back as a Status.
Result<nlohmann::json> AskStore(const Target& t, const std::string& request,
                                const std::function<Result<std::string>(Store&)>& direct);

}  // namespace snapfs::cli
