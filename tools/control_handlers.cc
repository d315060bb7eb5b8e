// What the daemon answers on its control socket: the CLI verbs that work on a mounted
// store run here, against the daemon's own Store and Filesystem.
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/filesystem.h"
#include "core/store.h"
#include "tools/commands.h"

namespace snapfs::cli {

Result<std::string> StatsJson(Store& store);
Result<std::string> FsckJson(Store& store, bool verify);
Result<std::string> GcJson(Store& store, double fraction, bool dry_run);

std::string HandleControl(Store& store, Filesystem& fs, const std::string& request) {
  std::istringstream in(request);
  std::string verb;
  in >> verb;
  Result<std::string> r = Status::InvalidArgument("unknown control request '" + verb + "'");
  if (verb == "stats") {
    Status f = fs.FlushAll();  // count what open files have buffered too
    r = f.ok() ? StatsJson(store) : Result<std::string>(f);
  } else if (verb == "fsck") {
    std::string opt;
    in >> opt;
    Status f = fs.FlushAll();  // buffered data is committed first, as at unmount
    r = f.ok() ? FsckJson(store, opt == "--verify") : Result<std::string>(f);
  } else if (verb == "gc") {
    double fraction = 0.5;
    std::string opt;
    in >> fraction >> opt;
    r = GcJson(store, fraction, opt == "--dry-run");
  }
  if (r.ok()) return *r;
  return nlohmann::json{{"error", r.status().ToString()}}.dump() + "\n";
}

}  // namespace snapfs::cli
