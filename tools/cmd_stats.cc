// snapfs stats STORE|MOUNTPOINT: logical bytes, stored bytes, dedup ratio, chunks, packs.
// A mounted store is asked through its daemon's control socket.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fsck.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

Result<std::string> StatsJson(Store& store) {
  auto r = Fsck(store);  // the same scan as fsck, without reading chunk data
  if (!r.ok()) return r.status();
  auto packs = store.backend().List();
  if (!packs.ok()) return packs.status();
  uint64_t pack_bytes = 0;
  for (const auto& p : *packs) pack_bytes += p.size;
  double ratio = r->stored_bytes ? static_cast<double>(r->logical_bytes) / r->stored_bytes : 0;
  nlohmann::json j = {{"store", store.dir()},
                      {"logical_bytes", r->logical_bytes},
                      {"stored_bytes", r->stored_bytes},
                      {"pack_bytes", pack_bytes},
                      {"dedup_ratio", ratio},
                      {"chunks", r->chunks},
                      {"garbage_chunks", r->garbage_chunks},
                      {"packs", r->packs},
                      {"inodes", r->inodes}};
  return j.dump(2) + "\n";
}

int CmdStats(const Args& args) {
  po::options_description opts("options");
  std::string target;
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("stats", "STORE|MOUNTPOINT [--json]", args, opts, pos, &vm)) return *rc;

  Target t = ResolveTarget(target);
  auto answer = AskStore(t, "stats", [&](Store& store) { return StatsJson(store); });
  if (!answer.ok()) return Fail("stats", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  auto u = [&](const char* k) { return j[k].get<uint64_t>(); };
  printf("store           %s%s\n", j["store"].get<std::string>().c_str(),
         t.daemon_pid != 0 ? (" (mounted, daemon pid " + std::to_string(t.daemon_pid) + ")").c_str()
                           : "");
  printf("logical bytes   %s (%llu)\n", HumanBytes(u("logical_bytes")).c_str(),
         static_cast<unsigned long long>(u("logical_bytes")));
  printf("stored bytes    %s (%llu)\n", HumanBytes(u("stored_bytes")).c_str(),
         static_cast<unsigned long long>(u("stored_bytes")));
  printf("pack bytes      %s in %llu packs\n", HumanBytes(u("pack_bytes")).c_str(),
         static_cast<unsigned long long>(u("packs")));
  printf("dedup ratio     %.2fx\n", j["dedup_ratio"].get<double>());
  printf("chunks          %llu (%llu unreferenced, reclaimed by gc)\n",
         static_cast<unsigned long long>(u("chunks")),
         static_cast<unsigned long long>(u("garbage_chunks")));
  printf("inodes          %llu\n", static_cast<unsigned long long>(u("inodes")));
  return kExitOk;
}

}  // namespace snapfs::cli
