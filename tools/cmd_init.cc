// snapfs init STORE: create a store.
#include <iostream>

#include "core/meta/postgres_engine.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

int CmdInit(const Args& args) {
  po::options_description opts("options");
  std::string dir, cmin = "16K", cavg = "64K", cmax = "256K", markers = "_metadata";
  std::string data, s3_endpoint, s3_region, s3_credentials;
  opts.add_options()("store", po::value(&dir)->required(),
                     "folder to create the store in, or a postgresql:// URL (a store every "
                     "host mounts; needs --data)")(
      "chunk-min", po::value(&cmin)->default_value(cmin), "smallest chunk")(
      "chunk-avg", po::value(&cavg)->default_value(cavg), "average chunk (a power of two)")(
      "chunk-max", po::value(&cmax)->default_value(cmax), "largest chunk")(
      "verify-dedup", po::bool_switch(), "byte-compare chunks on every dedup hit")(
      "markers", po::value(&markers)->default_value(markers),
      "comma-separated names of snapshot marker files")(
      "data", po::value(&data),
      "where packs live: s3://BUCKET[/PREFIX] (default: STORE/packs), or for a database "
      "store also an absolute folder every host mounts; S3 credentials from "
      "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --s3-credentials, never stored")(
      "s3-endpoint", po::value(&s3_endpoint),
      "S3-compatible service URL, e.g. http://127.0.0.1:7480 (default: AWS_ENDPOINT_URL, else AWS)")(
      "s3-region", po::value(&s3_region), "region (default: AWS_REGION, else us-east-1)")(
      "s3-credentials", po::value(&s3_credentials),
      "file with aws_access_key_id/aws_secret_access_key lines, mode 0600; its path is "
      "recorded, not the keys")(
      "create-bucket", po::bool_switch(), "create the bucket if it does not exist");
  po::positional_options_description pos;
  pos.add("store", 1);
  po::variables_map vm;
  if (auto rc = Parse("init", "STORE [options]", args, opts, pos, &vm,
                      {"snapfs init /var/lib/snapfs",
                       "snapfs init /var/lib/snapfs --markers _metadata,_SUCCESS",
                       "snapfs init /var/lib/snapfs --data s3://checkpoints/prod",
                       "snapfs init postgresql://snapfs@db.internal/ckpt --data s3://checkpoints/prod",
                       "snapfs init /var/lib/snapfs --data s3://ckpt/job1 --s3-endpoint "
                       "http://127.0.0.1:7480 --s3-credentials /etc/snapfs/s3.cred --create-bucket"})) {
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
  // Each marker is a file name: an empty list would make no folder ever a snapshot, and a
  // line break would end up as a line of its own in snapfs.conf.
  for (size_t from = 0;;) {
    size_t comma = markers.find(',', from);
    std::string name = markers.substr(from, comma == std::string::npos ? comma : comma - from);
    if (name.empty() || name == "." || name == ".." || name.size() > 255 ||
        name.find_first_of(std::string("/\n\r\0", 4)) != std::string::npos) {
      return Fail("init", Status::InvalidArgument(
                              "--markers: '" + name +
                              "' is not a file name (comma-separated names, e.g. _metadata)"));
    }
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  io.marker_names = markers;
  io.data = data;
  io.s3_endpoint = s3_endpoint;
  io.s3_region = s3_region;
  io.s3_credentials_file = s3_credentials;
  io.create_bucket = vm["create-bucket"].as<bool>();
  if (data.empty() && (!s3_endpoint.empty() || !s3_region.empty() || !s3_credentials.empty() ||
                       io.create_bucket)) {
    return Fail("init", Status::InvalidArgument("--s3-* options and --create-bucket need --data s3://..."));
  }
  Status s = Store::Init(dir, io);
  if (!s.ok()) return Fail("init", s);
  std::string where = dir;
  if (auto url = kv::PostgresEngine::PublicUrl(dir); IsDatabaseLocation(dir) && url.ok()) where = *url;
  std::cout << "initialised snapfs store in " << where << " (chunks " << cmin << "/" << cavg << "/"
            << cmax << (data.empty() ? "" : ", data in " + data) << ")\n";
  return kExitOk;
}

}  // namespace snapfs::cli
