// Shared plumbing of the CLI verbs: option parsing with --help, sizes, printing.
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "tools/commands.h"

namespace snapfs {
class Store;
class Filesystem;
}  // namespace snapfs

namespace snapfs::cli {

namespace po = boost::program_options;

// Parses `args` for `verb`. Returns an exit code to return immediately (help printed, or
// a usage error printed to stderr), or nullopt to go on.
//
// Options named in `pos` are the verb's positional arguments: --help shows them by their
// upper-case names (STORE, MOUNTPOINT) under "arguments", never as --store options, and
// errors name them the same way. `examples` (lines) end the help. Every unsigned option
// refuses a negative value (Boost would wrap -5 to 4294967291). A verb with a --json
// switch reports errors as JSON when it is given (see Fail); one with --offline may
// open the store of a dead mount directly (see ResolveTarget).
std::optional<int> Parse(const std::string& verb, const std::string& synopsis, const Args& args,
                         const po::options_description& opts,
                         const po::positional_options_description& pos, po::variables_map* vm,
                         const std::vector<std::string>& examples = {});

// The help text's last lines: what every exit code means.
extern const char* const kExitCodesHelp;

// True once Parse has seen --json: errors then go to stdout as JSON documents.
bool JsonOutput();
// True once Parse has seen --offline.
bool OfflineAllowed();
// The help line of --offline, the same for every verb that has it.
inline constexpr const char* kOfflineHelp =
    "if the mount's daemon is dead, open the store directly instead of failing";

// Prints a JSON document for scripts: `j` with "schema": 1 added, indented, to stdout.
void PrintJson(nlohmann::json j);
// j as text; bytes that are not UTF-8 (file names may hold any) become U+FFFD instead of
// throwing, so that no answer or output can take the daemon or the CLI down.
std::string DumpJson(const nlohmann::json& j, int indent = -1);

// "64K", "1M", "1048576" -> bytes. InvalidArgument on anything else.
Result<uint64_t> ParseSize(const std::string& s);
// 1536 -> "1.5 KiB"
std::string HumanBytes(uint64_t n);

// Reports a failure and returns its exit code (ExitCodeFor). Prints "snapfs VERB:
// message" to stderr; with --json, {"schema":1,"error":KIND,"code":EXIT,"message":...}
// on stdout instead (KIND: ErrorKind).
int Fail(const std::string& verb, const Status& s);
// A bad argument found after parsing: like Fail, with exit code 2 and a pointer to --help.
int UsageError(const std::string& verb, const std::string& message);
// 2 for bad arguments, 4 busy, 5 not found, 1 otherwise.
int ExitCodeFor(const Status& s);
// A stable word for scripts: "invalid_argument", "busy", "not_found", "corruption", ...
std::string ErrorKind(const Status& s);
// Nanoseconds since the epoch -> RFC 3339 UTC, "2026-12-01T19:23:09Z" (what jq's
// fromdateiso8601 reads).
std::string Rfc3339(int64_t ns);

// The store behind a snapfs mount point (from /proc/self/mounts), or "" if none.
std::string StoreOfMount(const std::string& mountpoint);

// What a STORE|MOUNTPOINT argument names.
struct Target {
  std::string store;   // the store folder
  int daemon_pid = 0;  // > 0: a live daemon has it open; talk to it over its socket
  // A snapfs mount whose daemon is gone (set with daemon_pid 0): asking it fails unless
  // --offline was given, in which case the store is opened directly.
  std::string dead_mount;
};
Target ResolveTarget(const std::string& arg);
// IOError naming the dead mount and what to do, unless --offline was given.
Status CheckNotDead(const Target& t);
// A snapfs mount point (in /proc/self/mounts) whose daemon is gone: the store it names
// is not locked, or the mount point answers ENOTCONN.
// Aborts the FUSE connection of the snapfs mount at `mountpoint` (fusectl; mounted first
// if need be, which needs root): a dead or hung daemon's pending requests fail and the
// daemon exits.
Status AbortFuseConnection(const std::string& mountpoint);
bool IsDeadMount(const std::string& mountpoint, const std::string& store);
// False for a pid that is gone or a zombie.
bool ProcessRunning(int pid);

// Answers `request` for the store `t` names: through its daemon's control socket when a
// daemon has it open, else by opening the store and calling `direct`. The answer is
// JSON; an {"error": ...} answer comes back as a Status.
Result<nlohmann::json> AskStore(const Target& t, const std::string& request,
                                const std::function<Result<std::string>(Store&)>& direct);

// ---- paths inside a store (the snapshot verbs) ----

// "a//b/./c/../d" relative to the current folder -> "/CWD/a/b/d". Purely lexical: ".."
// drops the previous component without looking at symlinks.
std::string LexicalAbsolute(const std::string& path);

// The live snapfs mounts visible to this process: (mount point, store folder), from
// /proc/self/mounts; a mount point mounted over twice lists the top one.
std::vector<std::pair<std::string, std::string>> SnapfsMounts();

// What a PATH argument of the snapshot verbs names.
struct PathTarget {
  Target target;
  std::string rel;         // relative to the mount root: "" for the root, no leading '/'
  std::string mountpoint;  // the live mount the store is served on ("" if none visible)
  std::string arg;         // as given, for messages
};
// Resolves PATH, which need not exist (a hidden entry is no longer listed):
//  1. a path inside a live snapfs mount: the longest fuse.snapfs mount point of
//     /proc/self/mounts that is a prefix of the absolute, lexically normalised path (if
//     none is, the same again after resolving symlinks in the part of it that exists);
//     the rest is the mount-relative path;
//  2. otherwise STORE[/rel/path]: the nearest folder at or above the path holding a
//     snapfs.conf is the store, the rest is the mount-relative path (the store is asked
//     through its daemon if one has it open, else opened directly);
//  3. a shared store's location (postgresql://...): its root, the store opened here.
// InvalidArgument if it is neither, or if it points into the read-only /.snapshots/.
Result<PathTarget> ResolvePathArg(const std::string& arg);

// A command-line argument fit to be shown or logged: a PostgreSQL location (or anything
// with a password= in it) without its password.
std::string HideSecrets(const std::string& arg);
// Overwrites, in the process's own argv (what /proc/PID/cmdline and ps show), every
// argument that holds a password with HideSecrets of it (cut to the argument's length).
// Call once the arguments are copied.
void HideSecretsInArgv(int argc, char** argv);

// Asks the store `t` names a snapshot request (tools/snap_requests.h): through its
// daemon's control socket as "VERB <json>" when a daemon has it open, else by opening
// the store and its namespace here. Errors keep their code and message either way.
Result<nlohmann::json> AskFs(const Target& t, const std::string& verb, const nlohmann::json& req);

// Opens an unmounted store and its namespace in this process.
struct OpenedFs {
  std::unique_ptr<Store> store;
  std::unique_ptr<Filesystem> fs;  // declared last: closed before the store
  OpenedFs();
  OpenedFs(OpenedFs&&) noexcept;
  OpenedFs& operator=(OpenedFs&&) noexcept;
  ~OpenedFs();
};
// `what`: what `snapfs status` says this process's session is, on a shared store.
Result<OpenedFs> OpenFsDirect(const std::string& store_dir, const std::string& what = "snapfs");

// Several requests to one store: the daemon, or one in-process opening kept for all.
class FsClient {
 public:
  explicit FsClient(Target t) : t_(std::move(t)) {}
  const Target& target() const { return t_; }
  bool mounted() const { return t_.daemon_pid != 0; }
  Result<nlohmann::json> Ask(const std::string& verb, const nlohmann::json& req);
  // Unmounted only: the namespace opened here (opened on first use).
  Result<Filesystem*> DirectFs(const std::string& what = "snapfs");

 private:
  Target t_;
  std::optional<OpenedFs> opened_;
};

// The answer the daemon sends for a failed request: {"error", "code", "message"}; and
// back to a Status on the client side.
nlohmann::json ErrorJson(const Status& s);
Status StatusFromJson(const nlohmann::json& j);

// ---- formatting and parsing ----

// Prints rows as aligned columns under a header; `right[i]` right-aligns column i.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right);

// "30s", "15m", "1h", "2d", "0" -> nanoseconds. Strict: digits then exactly one unit.
Result<int64_t> ParseDuration(const std::string& s);
// 5400 s -> "1h30m"
std::string HumanAge(int64_t ns);
// Nanoseconds since the epoch -> "2026-11-21 14:03:05" in local time (iso: with 'T' and
// the UTC offset, "2026-11-21T14:03:05+0100").
std::string LocalTime(int64_t ns, bool iso = false);

// A one-line progress report on stderr, rewritten in place ("\r"), only when stderr is a
// terminal; silent when it is piped or redirected. At most ~10 updates a second.
class Progress {
 public:
  Progress();
  ~Progress() { Done(); }
  bool enabled() const { return enabled_; }
  void Show(const std::string& line, bool force = false);
  void Done();  // clears the line

 private:
  bool enabled_ = false;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace snapfs::cli
