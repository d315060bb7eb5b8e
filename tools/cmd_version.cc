// snapfs version [--json] (also snapfs --version): the program, the store format it
// reads and writes, and the libfuse and RocksDB it runs with.
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <rocksdb/version.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/store_config.h"
#include "snapfs_version.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdVersion(const Args& args) {
  po::options_description opts("options");
  opts.add_options()("json", po::bool_switch(), "print JSON (\"schema\": 1)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (auto rc = Parse("version", "[--json]", args, opts, pos, &vm)) return *rc;
  // The libraries as loaded at run time (a shared library may be newer than its headers).
  std::string fuse = fuse_pkgversion();
  std::string rocks = rocksdb::GetRocksVersionAsString(/*with_patch=*/true);
  if (vm.count("json") && vm["json"].as<bool>()) {
    nlohmann::json j = {{"schema", 1},
                        {"version", SNAPFS_VERSION},
                        {"commit", SNAPFS_GIT_COMMIT},
                        {"store_format", StoreConfig::kFormatVersion},
                        {"libfuse", fuse},
                        {"rocksdb", rocks}};
    PrintJson(j);
    return kExitOk;
  }
  printf("snapfs %s (commit %s)\n", SNAPFS_VERSION, SNAPFS_GIT_COMMIT);
  printf("store format %u\n", StoreConfig::kFormatVersion);
  printf("libfuse %s, RocksDB %s\n", fuse.c_str(), rocks.c_str());
  return kExitOk;
}

}  // namespace snapfs::cli
