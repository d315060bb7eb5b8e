// What the daemon answers on its control socket: the CLI verbs that work on a mounted
// store run here, against the daemon's own Store and Filesystem.
//
// Requests are one line. The older verbs take words ("stats", "fsck [--verify [SUBSET]]",
// "gc FRACTION [--dry-run]"); the snapshot verbs take a JSON object after the verb word,
// since paths can hold spaces: `snap-ls {"path":"job"}` (tools/snap_requests.h lists
// them). Failures are answered as {"error": text, "code": n, "message": text}.
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/fs/filesystem.h"
#include "core/chunks/gc.h"
#include "core/store.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

Result<std::string> StatsJson(Store& store);
Result<std::string> FsckJson(Store& store, Filesystem* fs, bool verify,
                             const std::string& subset);
Result<std::string> GcJson(Store& store, Filesystem* fs, const GcOptions& go, bool dry_run);
Result<std::string> StatusJson(Store& store, Filesystem& fs);  // tools/cmd_status.cc
Result<std::string> RecordedGc(bool dry_run, const std::function<Result<std::string>()>& run);
Result<std::string> RecordedFsck(bool verify, const std::function<Result<std::string>()>& run);

namespace {

Result<std::string> Dispatch(Store& store, Filesystem& fs, const std::string& request) {
  std::istringstream in(request);
  std::string verb;
  in >> verb;
  if (verb == "stats") {
    RETURN_IF_ERROR(fs.FlushAll());  // count what open files have buffered too
    return StatsJson(store);
  }
  if (verb == "fsck") {
    std::string opt, subset;  // "fsck [--verify [SUBSET]]", SUBSET as for --subset
    in >> opt >> subset;
    RETURN_IF_ERROR(fs.FlushAll());  // buffered data is committed first, as at unmount
    bool verify = opt == "--verify";
    // The purger pauses meanwhile. It had to while fsck read the key spaces one after
    // another; fsck now reads one view of them (core/fsck.cc, snapshot_check.cc), so the
    // pause only keeps a purge's deletes from competing with the sweep.
    Result<std::string> out = Status::OK();
    fs.WithPurgesPaused(
        [&] { out = RecordedFsck(verify, [&] { return FsckJson(store, &fs, verify, subset); }); });
    return out;
  }
  if (verb == "gc") {  // "gc REWRITE_BELOW [--dry-run] [max-unused=F]" (tools/cmd_gc.cc)
    GcOptions go;
    bool dry = false;
    in >> go.rewrite_below_live_fraction;
    for (std::string w; in >> w;) {
      if (w == "--dry-run") dry = true;
      if (w.starts_with("max-unused=")) go.max_unused_fraction = std::stod(w.substr(11));
    }
    return RecordedGc(dry, [&] { return GcJson(store, &fs, go, dry); });
  }
  if (verb == "status") return StatusJson(store, fs);
  if (IsSnapRequest(verb)) {
    std::string args = request.size() > verb.size() ? request.substr(verb.size()) : "";
    auto req = args.find_first_not_of(" \t") == std::string::npos
                   ? nlohmann::json::object()
                   : nlohmann::json::parse(args, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded() || !req.is_object()) {
      return Status::InvalidArgument(verb + ": the arguments are not a JSON object");
    }
    ASSIGN_OR_RETURN(auto answer, HandleSnapRequest(fs, verb, req));
    return DumpJson(answer) + "\n";
  }
  if (verb.size() > 64) verb = verb.substr(0, 64) + "...";  // the message stays short
  return Status::InvalidArgument("unknown control request '" + verb + "'");
}

}  // namespace

std::string HandleControl(Store& store, Filesystem& fs, const std::string& request) {
  Result<std::string> r = Status::IOError("no answer");
  try {
    r = Dispatch(store, fs, request);
  } catch (const std::exception& e) {  // never let a request take the daemon down
    r = Status::IOError(std::string("control request failed: ") + e.what());
  }
  if (r.ok()) return *r;
  return DumpJson(ErrorJson(r.status())) + "\n";
}

}  // namespace snapfs::cli
