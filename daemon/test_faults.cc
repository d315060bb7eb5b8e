#include "daemon/test_faults.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "base/log.h"

namespace snapfs {

Result<std::unique_ptr<TestFaults>> TestFaults::FromEnv(const std::string& store_dir,
                                                         OpenOptions* opts) {
  const char* file = std::getenv(kEnv);
  if (file == nullptr || *file == '\0') return std::unique_ptr<TestFaults>();
  const std::string why = std::string(kEnv) + "=" + file + ": ";
  struct stat st {};
  if (::stat((store_dir + "/packs").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(why + "test faults are for folder stores only");
  }
  if (::lstat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(why + "not a regular file");
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    return Status::InvalidArgument(why + "must be owned by this user and writable by no one else");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> local, OpenLocalBackend(store_dir + "/packs"));
  auto fault = std::make_unique<FaultInjectionBackend>(std::move(local));
  std::unique_ptr<TestFaults> t(new TestFaults(file, fault.get()));
  opts->backend = std::move(fault);
  SNAPFS_LOG_WARN("TEST FAULTS ENABLED (" + why + "pack I/O may fail or stall on purpose)");
  return t;
}

TestFaults::~TestFaults() { Stop(); }

void TestFaults::Start() {
  Poll();  // the knobs already in the file hold from the first request on
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      Poll();
    }
  });
}

void TestFaults::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void TestFaults::Poll() {
  std::ifstream in(file_);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text == applied_) return;
  Apply(text);
  applied_ = text;
}

void TestFaults::Apply(const std::string& text) {
  std::set<PackId> fail_reads;
  bool all_reads = false, fail_appends = false, fail_syncs = false;
  long long delay_us = 0;
  std::string gen;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "gen") {
      gen = value;
    } else if (key == "fail_reads") {
      std::istringstream ids(value);
      for (std::string id; std::getline(ids, id, ',');) {
        if (id == "all") {
          all_reads = true;
        } else if (!id.empty()) {
          fail_reads.insert(std::strtoull(id.c_str(), nullptr, 10));
        }
      }
    } else if (key == "fail_appends") {
      fail_appends = value == "1";
    } else if (key == "fail_syncs") {
      fail_syncs = value == "1";
    } else if (key == "delay_us") {
      delay_us = std::strtoll(value.c_str(), nullptr, 10);
    }
  }
  backend_->FailReads(all_reads);
  backend_->FailReadsOf(std::move(fail_reads));
  backend_->FailAppends(fail_appends);
  backend_->FailSyncs(fail_syncs);
  backend_->SetDelay(std::chrono::microseconds(delay_us));
  SNAPFS_LOG_WARN("test faults now: " + text);
  // The test waits for this before it relies on the knobs (write, then rename: whole).
  std::string tmp = file_ + ".applied.tmp";
  if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(gen.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), (file_ + ".applied").c_str());
  }
}

}  // namespace snapfs
