// Runs a mount test against an S3-backed store on the test radosgw (tests/util/s3_env.h):
//   class MountFlinkS3 : public test::OnS3<MountFlink> {};
// `snapfs init` gets --data s3://BUCKET/<fresh prefix>, the endpoint, and a 0600
// credentials file in the test's folder (so the keys never reach the config, and the
// daemon needs no AWS_* environment).
//
// Thread-safety: that of the fixture it extends.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/util/s3_env.h"

namespace snapfs::test {

// The `snapfs init` arguments of packs under `prefix` in the test bucket; the keys go to a
// 0600 credentials file in `dir`.
inline std::vector<std::string> S3DataArgs(const S3TestEnv& env, const std::string& dir,
                                           const std::string& prefix) {
  const std::string cred = dir + "/s3.cred";
  std::ofstream(cred) << "[default]\naws_access_key_id = " << env.access_key
                      << "\naws_secret_access_key = " << env.secret_key << "\n";
  EXPECT_EQ(::chmod(cred.c_str(), 0600), 0);
  return {"--data", "s3://" + env.bucket + "/" + prefix, "--s3-endpoint", env.endpoint,
          "--s3-credentials", cred};
}

template <class Base>
class OnS3 : public Base {
 protected:
  void SetUp() override {
    SNAPFS_REQUIRE_S3_OR_SKIP();
    env_ = *GetS3TestEnv();
    prefix_ = UniqueS3Prefix("mount");
    Base::SetUp();
  }

  std::vector<std::string> InitExtraArgs() override {
    return S3DataArgs(env_, this->tmp(), prefix_);
  }

  std::string data_url() const { return "s3://" + env_.bucket + "/" + prefix_; }

  S3TestEnv env_;
  std::string prefix_;
};

}  // namespace snapfs::test
