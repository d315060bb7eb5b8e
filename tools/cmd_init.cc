// snapfs init STORE: create a store.
#include <iostream>

#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdInit(const Args& args) {
  po::options_description opts("options");
  std::string dir, cmin = "16K", cavg = "64K", cmax = "256K", markers = "_metadata";
  opts.add_options()("store", po::value(&dir)->required(), "folder to create the store in")(
      "chunk-min", po::value(&cmin)->default_value(cmin), "smallest chunk")(
      "chunk-avg", po::value(&cavg)->default_value(cavg), "average chunk (a power of two)")(
      "chunk-max", po::value(&cmax)->default_value(cmax), "largest chunk")(
      "verify-dedup", po::bool_switch(), "byte-compare chunks on every dedup hit")(
      "markers", po::value(&markers)->default_value(markers),
      "comma-separated names of snapshot marker files");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  if (auto rc = Parse("init", "STORE [options]", args, opts, pos, &vm,
                      {"snapfs init /var/lib/snapfs",
                       "snapfs init /var/lib/snapfs --markers _metadata,_SUCCESS"})) {
    return *rc;
  }

  InitOptions io;
  for (auto [text, field] :
       {std::pair{&cmin, &io.chunker.min_size}, std::pair{&cavg, &io.chunker.avg_size},
        std::pair{&cmax, &io.chunker.max_size}}) {
    auto n = ParseSize(*text);
    if (!n.ok()) return Fail("init", n.status());
    if (*n > (1u << 30)) return Fail("init", Status::InvalidArgument("chunk size too large"));
    *field = static_cast<uint32_t>(*n);
  }
  io.verify_dedup = vm["verify-dedup"].as<bool>();
  io.marker_names = markers;
  Status s = Store::Init(dir, io);
  if (!s.ok()) return Fail("init", s);
  std::cout << "initialised snapfs store in " << dir << " (chunks " << cmin << "/" << cavg << "/"
            << cmax << ")\n";
  return kExitOk;
}

}  // namespace snapfs::cli
