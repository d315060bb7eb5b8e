// snapfs gc STORE [--dry-run]: reclaim the space of unreferenced chunks now.
#include <iostream>

#include "core/gc.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdGc(const Args& args) {
  po::options_description opts("options");
  std::string dir;
  double fraction = 0.5;
  opts.add_options()("store", po::value(&dir)->required(), "the store folder")(
      "dry-run,n", po::bool_switch(), "only print what would be done")(
      "rewrite-below", po::value(&fraction)->default_value(fraction),
      "rewrite packs whose live fraction is below this");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  if (auto rc = Parse("gc", "STORE [--dry-run]", args, opts, pos, &vm)) return *rc;
  if (fraction < 0 || fraction > 1) {
    return Fail("gc", Status::InvalidArgument("--rewrite-below must be between 0 and 1"));
  }

  auto store = Store::Open(dir);
  if (!store.ok()) return Fail("gc", store.status());
  GcOptions go;
  go.rewrite_below_live_fraction = fraction;
  auto plan = PlanGc(**store, go);
  if (!plan.ok()) return Fail("gc", plan.status());
  printf("%zu unreferenced chunks (%s), %zu packs to rewrite (%s to copy, %s to free)\n",
         plan->dead_chunks.size(), HumanBytes(plan->dead_bytes).c_str(), plan->rewrite.size(),
         HumanBytes(plan->bytes_to_copy).c_str(), HumanBytes(plan->bytes_to_free).c_str());
  if (vm["dry-run"].as<bool>()) return kExitOk;
  auto r = ExecuteGc(**store, *plan);
  if (!r.ok()) return Fail("gc", r.status());
  printf("deleted %llu chunks, removed %llu packs, copied %s, freed %s\n",
         static_cast<unsigned long long>(r->chunks_deleted),
         static_cast<unsigned long long>(r->packs_removed), HumanBytes(r->bytes_copied).c_str(),
         HumanBytes(r->bytes_freed).c_str());
  return kExitOk;
}

}  // namespace snapfs::cli
