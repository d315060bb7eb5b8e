// Test-only fault injection under a real daemon (issue 13, docs/reliability.md "Faults
// through a mount"): with the environment variable SNAPFS_TEST_FAULTS naming a knob file,
// `snapfs mount` of a folder store puts its pack backend behind a FaultInjectionBackend
// (backends/fault_backend.h) and applies the knobs the test writes into that file:
//
//   gen=N               any token; echoed to FILE.applied once the knobs below are in force
//   fail_reads=1,2      pack ids whose reads fail (EIO for the files in them); "all"; empty
//   fail_appends=1      pack appends fail with an I/O error (writes give EIO at fsync/close)
//   fail_syncs=1        pack syncs and seals fail with an I/O error
//   delay_us=N          every pack call sleeps N microseconds first (slow disk)
//   fail_meta_writes=1  every write to a file of the store's RocksDB (log, tables,
//                       manifest) fails with an I/O error (a failing metadata disk)
//
// Why an environment variable and a file, not a mount option or a control verb: nothing
// about it shows in `snapfs mount --help`, the control protocol or the store's config, so
// a production mount cannot turn it on by a typo or a request; the CLI and every other
// verb ignore it; and a test can change the knobs of a running daemon without a new code
// path in the FUSE or control layers. It is refused (the mount fails) for database and S3
// stores and unless FILE is a regular file owned by the daemon's user and writable by no
// one else. The daemon logs a warning at start. The store's RocksDB is opened through a
// file system wrapper (FaultyMetaFs in test_faults.cc) for fail_meta_writes.
//
// Thread-safety: TestFaults owns a polling thread; Stop() (also the destructor) joins it.
// The backend it steers must outlive Stop().
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <rocksdb/env.h>

#include "backends/fault_backend.h"
#include "base/status.h"
#include "core/store.h"

namespace snapfs {

class TestFaults {
 public:
  static constexpr const char* kEnv = "SNAPFS_TEST_FAULTS";

  // Nothing (nullptr) unless SNAPFS_TEST_FAULTS is set; then, for the folder store at
  // `store_dir`, puts the fault backend into `opts->backend` and returns the object that
  // will steer it once Start() is called. An error refuses the mount.
  static Result<std::unique_ptr<TestFaults>> FromEnv(const std::string& store_dir,
                                                     OpenOptions* opts);
  ~TestFaults();

  // Starts polling the knob file (every 20 ms). Call once the store is open.
  void Start();
  void Stop();

 private:
  class FaultyMetaFs;
  TestFaults(std::string file, FaultInjectionBackend* backend);
  void Poll();
  void Apply(const std::string& text);

  const std::string file_;
  FaultInjectionBackend* const backend_;  // owned by the store
  // The store's RocksDB goes through these (OpenOptions::meta_env); the store must close
  // before this object goes (daemon/mount.cc declares it first).
  std::shared_ptr<FaultyMetaFs> meta_fs_;
  std::unique_ptr<rocksdb::Env> meta_env_;
  std::string applied_;                   // the file's text last applied
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace snapfs
