// snapfs stats STORE: logical bytes, stored bytes, dedup ratio, chunks, packs.
#include <nlohmann/json.hpp>
#include <iostream>

#include "core/fsck.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdStats(const Args& args) {
  po::options_description opts("options");
  std::string dir;
  opts.add_options()("store", po::value(&dir)->required(), "the store folder")(
      "json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  if (auto rc = Parse("stats", "STORE [--json]", args, opts, pos, &vm)) return *rc;

  auto store = Store::Open(dir);
  if (!store.ok()) return Fail("stats", store.status());
  auto r = Fsck(**store);  // the same scan, without data verification
  if (!r.ok()) return Fail("stats", r.status());
  auto packs = (*store)->backend().List();
  if (!packs.ok()) return Fail("stats", packs.status());
  uint64_t pack_bytes = 0;
  for (const auto& p : *packs) pack_bytes += p.size;
  double ratio = r->stored_bytes ? static_cast<double>(r->logical_bytes) / r->stored_bytes : 0;
  if (vm["json"].as<bool>()) {
    nlohmann::json j = {{"logical_bytes", r->logical_bytes}, {"stored_bytes", r->stored_bytes},
                        {"pack_bytes", pack_bytes},          {"dedup_ratio", ratio},
                        {"chunks", r->chunks},               {"garbage_chunks", r->garbage_chunks},
                        {"packs", r->packs},                 {"inodes", r->inodes}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  printf("logical bytes   %s (%llu)\n", HumanBytes(r->logical_bytes).c_str(),
         static_cast<unsigned long long>(r->logical_bytes));
  printf("stored bytes    %s (%llu)\n", HumanBytes(r->stored_bytes).c_str(),
         static_cast<unsigned long long>(r->stored_bytes));
  printf("pack bytes      %s in %llu packs\n", HumanBytes(pack_bytes).c_str(),
         static_cast<unsigned long long>(r->packs));
  printf("dedup ratio     %.2fx\n", ratio);
  printf("chunks          %llu (%llu unreferenced, reclaimed by gc)\n",
         static_cast<unsigned long long>(r->chunks),
         static_cast<unsigned long long>(r->garbage_chunks));
  printf("inodes          %llu\n", static_cast<unsigned long long>(r->inodes));
  return kExitOk;
}

}  // namespace snapfs::cli
