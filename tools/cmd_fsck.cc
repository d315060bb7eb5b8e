// snapfs fsck STORE|MOUNTPOINT [--verify]: recompute and compare; also check snapshots
// and their pins against the markers.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/filesystem.h"
#include "core/fsck.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

// Snapshots, pins and hidden entries checked against the markers (Filesystem::
// CheckSnapshots), with the daemon's namespace or, unmounted, one opened here.
Result<std::vector<std::string>> SnapshotProblems(Store& store, Filesystem* fs) {
  std::unique_ptr<Filesystem> own;
  if (!fs) {
    ASSIGN_OR_RETURN(own, Filesystem::Open(&store));
    fs = own.get();
  }
  return fs->CheckSnapshots();
}

// `fs`: the daemon's namespace, or null for an unmounted store.
Result<std::string> FsckJson(Store& store, Filesystem* fs, bool verify) {
  FsckOptions fo;
  fo.verify_data = verify;
  auto r = Fsck(store, fo);  // first, so it sees the store as it was left
  if (!r.ok()) return r.status();
  ASSIGN_OR_RETURN(auto snap_problems, SnapshotProblems(store, fs));
  std::vector<std::string> problems = r->problems;
  problems.insert(problems.end(), snap_problems.begin(), snap_problems.end());
  nlohmann::json j = {{"inodes", r->inodes},   {"dentries", r->dentries},
                      {"extents", r->extents}, {"chunks", r->chunks},
                      {"packs", r->packs},     {"verified", verify},
                      {"problems", problems},  {"snapshot_problems", snap_problems}};
  return j.dump(2) + "\n";
}

int CmdFsck(const Args& args) {
  po::options_description opts("options");
  std::string target;
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "verify", po::bool_switch(), "also re-hash every chunk's bytes")("json", po::bool_switch(),
                                                                       "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("fsck", "STORE|MOUNTPOINT [--verify]", args, opts, pos, &vm)) return *rc;
  bool verify = vm["verify"].as<bool>();

  Target t = ResolveTarget(target);
  auto answer = AskStore(t, verify ? "fsck --verify" : "fsck",
                         [&](Store& store) { return FsckJson(store, nullptr, verify); });
  if (!answer.ok()) return Fail("fsck", answer.status());
  nlohmann::json j = std::move(answer).value();
  const auto& problems = j["problems"];
  if (vm["json"].as<bool>()) {
    std::cout << j.dump(2) << "\n";
  } else {
    auto u = [&](const char* k) { return static_cast<unsigned long long>(j[k].get<uint64_t>()); };
    printf("checked %llu inodes, %llu entries, %llu extents, %llu chunks in %llu packs%s\n",
           u("inodes"), u("dentries"), u("extents"), u("chunks"), u("packs"),
           verify ? " (data verified)" : "");
    for (const auto& p : problems) printf("PROBLEM: %s\n", p.get<std::string>().c_str());
    if (problems.empty())
      printf("no problems found\n");
    else
      printf("%zu problem(s) found\n", problems.size());
  }
  return problems.empty() ? kExitOk : kExitProblems;
}

}  // namespace snapfs::cli
