// snapfs fsck STORE [--verify]: recompute and compare.
#include <iostream>

#include "core/fsck.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdFsck(const Args& args) {
  po::options_description opts("options");
  std::string dir;
  opts.add_options()("store", po::value(&dir)->required(), "the store folder")(
      "verify", po::bool_switch(), "also re-hash every chunk's bytes");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  if (auto rc = Parse("fsck", "STORE [--verify]", args, opts, pos, &vm)) return *rc;

  auto store = Store::Open(dir);
  if (!store.ok()) return Fail("fsck", store.status());
  FsckOptions fo;
  fo.verify_data = vm["verify"].as<bool>();
  auto r = Fsck(**store, fo);
  if (!r.ok()) return Fail("fsck", r.status());
  printf("checked %llu inodes, %llu entries, %llu extents, %llu chunks in %llu packs%s\n",
         static_cast<unsigned long long>(r->inodes), static_cast<unsigned long long>(r->dentries),
         static_cast<unsigned long long>(r->extents), static_cast<unsigned long long>(r->chunks),
         static_cast<unsigned long long>(r->packs), fo.verify_data ? " (data verified)" : "");
  for (const auto& p : r->problems) printf("PROBLEM: %s\n", p.c_str());
  if (!r->ok()) {
    printf("%zu problem(s) found\n", r->problems.size());
    return kExitProblems;
  }
  printf("no problems found\n");
  return kExitOk;
}

}  // namespace snapfs::cli
