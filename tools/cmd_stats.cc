// snapfs stats STORE|MOUNTPOINT: logical bytes, live and dead stored bytes, dedup ratio,
// chunks, packs. A mounted store is asked through its daemon's control socket.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fsck.h"
#include "core/chunks/gc.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

Result<std::string> StatsJson(Store& store) {
  auto r = Fsck(store);  // the same scan as fsck, without reading chunk data
  if (!r.ok()) return r.status();
  // Space from the scan GC plans on, so that `stats` and `gc` count the same dead bytes.
  auto space = MeasureSpace(store);
  if (!space.ok()) return space.status();
  // Against live bytes only: garbage waiting for GC is not what dedup saved or cost.
  double ratio = space->live_bytes ? static_cast<double>(r->logical_bytes) /
                                         static_cast<double>(space->live_bytes)
                                   : 0;
  nlohmann::json j = {{"store", store.dir()},
                      {"data", store.backend().Describe()},
                      {"logical_bytes", r->logical_bytes},
                      {"stored_bytes", space->live_bytes},
                      {"live_bytes", space->live_bytes},
                      {"dead_bytes", space->dead_bytes},
                      {"unreferenced_bytes", space->unreferenced_bytes},
                      {"pack_bytes", space->pack_bytes},
                      {"dedup_ratio", ratio},
                      {"chunks", r->chunks},
                      {"garbage_chunks", r->garbage_chunks},
                      {"packs", space->packs},
                      {"inodes", r->inodes}};
  return DumpJson(j, 2) + "\n";
}

int CmdStats(const Args& args) {
  po::options_description opts("options");
  std::string target;
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "offline", po::bool_switch(), kOfflineHelp)("json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("stats", "STORE|MOUNTPOINT [--json]", args, opts, pos, &vm,
                      {"snapfs stats /mnt/ckpt", "snapfs stats /var/lib/snapfs --json"})) {
    return *rc;
  }

  Target t = ResolveTarget(target);
  auto answer = AskStore(t, "stats", [&](Store& store) { return StatsJson(store); });
  if (!answer.ok()) return Fail("stats", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    PrintJson(j);
    return kExitOk;
  }
  auto u = [&](const char* k) { return j.value(k, uint64_t{0}); };
  auto line = [&](const char* label, const char* k, const std::string& note) {
    printf("%-15s %s (%llu)%s\n", label, HumanBytes(u(k)).c_str(),
           static_cast<unsigned long long>(u(k)), note.c_str());
  };
  printf("store           %s%s\n", j["store"].get<std::string>().c_str(),
         t.daemon_pid != 0 ? (" (mounted, daemon pid " + std::to_string(t.daemon_pid) + ")").c_str()
                           : "");
  if (j.contains("data")) printf("data            %s\n", j["data"].get<std::string>().c_str());
  line("logical bytes", "logical_bytes", "");
  line("stored bytes", "stored_bytes", ", live chunks");
  char pct[64] = "";
  if (u("pack_bytes") > 0) {
    snprintf(pct, sizeof pct, ", %.1f%% of pack bytes; 'snapfs gc' reclaims it",
             100.0 * static_cast<double>(u("dead_bytes")) / static_cast<double>(u("pack_bytes")));
  }
  line("dead bytes", "dead_bytes", pct);
  printf("pack bytes      %s in %llu packs\n", HumanBytes(u("pack_bytes")).c_str(),
         static_cast<unsigned long long>(u("packs")));
  printf("dedup ratio     %.2fx (logical / stored)\n", j["dedup_ratio"].get<double>());
  printf("chunks          %llu (%llu unreferenced, %s, dropped by the next gc)\n",
         static_cast<unsigned long long>(u("chunks")),
         static_cast<unsigned long long>(u("garbage_chunks")),
         HumanBytes(u("unreferenced_bytes")).c_str());
  printf("inodes          %llu\n", static_cast<unsigned long long>(u("inodes")));
  return kExitOk;
}

}  // namespace snapfs::cli
