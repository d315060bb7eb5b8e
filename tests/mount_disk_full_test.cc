// Disk full (issue 13, "Faults and bad input"): the whole store folder (RocksDB and packs)
// on a 512 MiB tmpfs (64 MiB packs), a mounted snapfs filled until writers get
// ENOSPC. Committed data must stay intact and readable while the disk is full, and after
// `rm` of the filler + `snapfs gc` writing must work again on the same mount (the metadata
// engine must not be left read-only, the daemon must not die). Then fsck of the unmounted
// store is clean. Also: `snapfs gc` on a disk filled outside snapfs while it copies, and a
// `_metadata` written on a full disk (ENOSPC to the writer, no snapshot, and both work
// again once space is free, without a remount).
//
// Mounting a tmpfs needs CAP_SYS_ADMIN (scripts/test.sh runs as root); without it the test
// is skipped with a loud message.
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

class DiskFull : public MountFixture {
 protected:
  std::vector<std::string> InitExtraArgs() override {
    if (::mkdir(store().c_str(), 0700) != 0) {
      ADD_FAILURE() << "mkdir " << store() << ": " << ErrnoName(errno);
      return {};
    }
    std::string opts = "size=" + TmpfsSize() + ",mode=0700";
    if (::mount("tmpfs", store().c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      int e = errno;
      std::cerr << "\n*** DiskFull: cannot mount a tmpfs (" << ErrnoName(e)
                << "; needs CAP_SYS_ADMIN): the disk-full test did NOT run\n";
      skip_ = true;
      return {};
    }
    tmpfs_ = true;
    return {};
  }
  void SetUp() override {
    MountFixture::SetUp();
    if (skip_) GTEST_SKIP() << "no tmpfs: disk-full test NOT run";
  }
  void TearDown() override {
    if (tmpfs_) {
      if (IsMounted(mnt())) {
        CmdResult u = Snapfs({"umount", mnt()}, 60);
        if (u.code != 0) Run({"fusermount3", "-u", "-z", mnt()}, 30);
      }
      ::umount2(store().c_str(), MNT_DETACH);
    }
    MountFixture::TearDown();
  }

  virtual std::string TmpfsSize() const { return "512m"; }

  void FillRemoveGcWriteAgain();
  std::string FillMetadataLog(ContentMap* content, std::mt19937_64& rng);
  int FillData();
  uint64_t StoreFree() const;

  bool skip_ = false;
  bool tmpfs_ = false;
};

// The same on a 64 MiB disk: one pack (64 MiB target) holds the committed data and the
// filler together, so GC must copy the live chunks before it can free anything, and
// there is no byte left to copy them into: `snapfs gc` fails with ENOSPC ("append chunk
// to pack: No space left on device") and the store stays full until something outside
// snapfs frees space. A limit of the design (GC needs free space for the live bytes of
// the packs it rewrites), not a consistency bug: nothing committed is lost, fsck is clean.
// Still disabled: snapfs now refuses new pack bytes while 128 MiB are free
// (core/space_guard.h), which on a 64 MiB disk means no file data at all; GC's copies may
// use that reserve, so on a disk larger than the reserve this case is covered by the
// reserve (DiskFull.*).
class DiskFullOnePack : public DiskFull {
 protected:
  std::string TmpfsSize() const override { return "64m"; }
};

TEST_F(DiskFull, EnospcKeepsCommittedDataAndWritingResumesAfterRmAndGc) {
  FillRemoveGcWriteAgain();
}

TEST_F(DiskFullOnePack, DISABLED_GcFreesSpaceWhenLiveAndDeadDataShareTheOnlyPack) {
  FillRemoveGcWriteAgain();
}

void DiskFull::FillRemoveGcWriteAgain() {
  ContentMap content;
  FlinkJob job(mnt(), "job", 7, &content);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(3, 256 * kKiB), "");
  const std::string chk = job.Path(job.retained().back().name);

  // Fill with incompressible, never-repeating data until the store's disk is full.
  ASSERT_EQ(::mkdir(Path("fill").c_str(), 0755), 0) << ErrnoName(errno);
  std::mt19937_64 rng(11);
  int filled = 0, enospc = 0, other = 0;
  std::string other_err;
  for (int i = 0; i < 100 && enospc == 0; i++) {  // 100 x 4 MiB: well past 256 MiB
    std::string path = Path("fill/f" + std::to_string(i));
    std::string e = UploadLikeFlink(path, RandomBytes(rng, 4 * kMiB), rng);
    if (e.empty()) {
      filled++;
    } else if (e.find("ENOSPC") != std::string::npos) {
      enospc++;
    } else {
      other++;
      other_err = e;
      break;
    }
  }
  EXPECT_EQ(other, 0) << "a full disk gave another error than ENOSPC: " << other_err;
  ASSERT_EQ(enospc, 1) << "never ran out of space after " << filled << " files of 4 MiB";
  std::cout << "disk full after " << filled << " files of 4 MiB" << std::endl;

  // Metadata on the full disk too: empty files (no pack bytes, only RocksDB writes) until
  // their creation or fsync fails.
  int created = 0, meta_errors = 0;
  std::string meta_err;
  for (int i = 0; i < 2000 && meta_errors == 0; i++) {
    std::string path = Path("fill/empty" + std::to_string(i));
    int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::fsync(fd) != 0) {
      meta_errors++;
      meta_err = ErrnoName(errno);
    } else {
      created++;
    }
    if (fd >= 0) ::close(fd);
  }
  std::cout << "metadata: " << created << " empty files created and fsync'd on the full disk"
            << (meta_errors ? ", then " + meta_err : std::string()) << std::endl;
  if (meta_errors) {
    EXPECT_NE(meta_err.find("ENOSPC"), std::string::npos) << meta_err;
  }

  // While full: the daemon serves, committed data reads back whole.
  ASSERT_TRUE(IsMounted(mnt(), true));
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "") << "while the disk is full";
  EXPECT_GE(ListDir(Path("fill")).size(), static_cast<size_t>(filled + 1 + created));

  // Free space: delete the filler, then gc, on the same mount.
  for (const auto& name : ListDir(Path("fill"))) {
    EXPECT_EQ(::unlink(Path("fill/" + name).c_str()), 0) << name << ": " << ErrnoName(errno);
  }
  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc.code, 0) << gc.Describe();

  // Writing works again without a remount: a new file and a whole new checkpoint.
  std::string again = RandomBytes(rng, 2 * kMiB);
  std::string e = UploadLikeFlink(Path("after-gc"), again, rng);
  EXPECT_EQ(e, "") << "writing after rm + gc";
  int err = 0;
  EXPECT_TRUE(ReadFile(Path("after-gc"), &err) == again) << ErrnoName(err);
  EXPECT_EQ(job.TakeCheckpoint(2, 128 * kKiB), "") << "a checkpoint after rm + gc";
  const std::string chk2 = job.Path(job.retained().back().name);
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "");

  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "") << "after a remount";
}

// The metadata itself out of space: a 48 MiB ballast file beside the store (on the same
// tmpfs), the disk filled with pack data, then big xattrs (metadata only: each a RocksDB
// write of ~60 KiB) until one fails (SpaceGuard's metadata reserve).
// Returns the checkpoint written first.
std::string DiskFull::FillMetadataLog(ContentMap* content, std::mt19937_64& rng) {
  FlinkJob job(mnt(), "job", 7, content);
  EXPECT_EQ(job.Init(), "");
  EXPECT_EQ(job.TakeCheckpoint(3, 256 * kKiB), "");
  const std::string chk = job.Path(job.retained().back().name);
  EXPECT_EQ(WriteFile(store() + "/ballast", RandomBytes(rng, 48 * kMiB), true), 0);
  EXPECT_EQ(::mkdir(Path("fill").c_str(), 0755), 0) << ErrnoName(errno);
  for (int i = 0; i < 100; i++) {
    if (!UploadLikeFlink(Path("fill/f" + std::to_string(i)), RandomBytes(rng, 4 * kMiB), rng)
             .empty()) {
      break;
    }
  }
  EXPECT_EQ(WriteFile(Path("x"), "x", true), 0);
  int set = 0, err = 0;
  std::string value = RandomBytes(rng, 60 * kKiB);
  for (int i = 0; i < 2000; i++) {
    std::string name = "user.big" + std::to_string(i);
    if (::setxattr(Path("x").c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      err = errno;
      break;
    }
    set++;
  }
  EXPECT_EQ(err, ENOSPC) << "after " << set << " xattrs of 60 KiB: " << ErrnoName(err);
  EXPECT_GT(set, 0) << "the data reserve left no room for metadata";
  std::cout << "metadata full after " << set << " xattrs of 60 KiB" << std::endl;
  // The daemon still serves, and what was committed reads back.
  EXPECT_TRUE(IsMounted(mnt(), true));
  EXPECT_EQ(Restore(chk, chk, *content, InPlace), "") << "while the metadata log is full";
  return chk;
}

// The disk filled up by file data and then by metadata: SpaceGuard (core/space_guard.h)
// stops new pack bytes while 64 MiB are free and metadata growth while 32 MiB are, so the
// metadata log never runs out (finding 4: it used to, and the store was wedged until space
// was freed outside snapfs). While full: deletes work, the store is not wedged (fsck opens
// it and finds it clean after an unmount), the checkpoint restores, and `df` shows no room
// for data.
TEST_F(DiskFull, MetadataLogOutOfSpaceLosesNothing) {
  ContentMap content;
  std::mt19937_64 rng(11);
  const std::string chk = FillMetadataLog(&content, rng);
  ASSERT_FALSE(HasFailure());
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(mnt().c_str(), &vfs), 0) << ErrnoName(errno);
  EXPECT_LT(static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize, 4 * kMiB)
      << "df of a full mount should show (almost) no room for data";
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << "the full store must open and be clean:\n" << fsck.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "") << "after a remount while full";
  EXPECT_EQ(::unlink(Path("fill/f0").c_str()), 0) << "a delete on a full disk: " << ErrnoName(errno);
}

// What the issue asks for: after the metadata ran out of space, `rm` + `gc` on the same
// mount free space and writing works again, without help from outside.
TEST_F(DiskFull, MetadataLogOutOfSpaceRecoversAfterRmAndGc) {
  ContentMap content;
  std::mt19937_64 rng(11);
  const std::string chk = FillMetadataLog(&content, rng);
  ASSERT_FALSE(HasFailure());
  for (const auto& name : ListDir(Path("fill"))) {
    ASSERT_EQ(::unlink(Path("fill/" + name).c_str()), 0) << name << ": " << ErrnoName(errno);
  }
  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  std::string again = RandomBytes(rng, 2 * kMiB);
  EXPECT_EQ(UploadLikeFlink(Path("after"), again, rng), "");
  EXPECT_TRUE(ReadFile(Path("after")) == again);
  EXPECT_EQ(::setxattr(Path("x").c_str(), "user.after", "v", 1, 0), 0) << ErrnoName(errno);
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

// Fills the mount with 4 MiB files of incompressible bytes (RandomBytes(4 MiB, seed i),
// Flink-style upload) until one fails; returns how many were written (ENOSPC expected).
int DiskFull::FillData() {
  EXPECT_EQ(::mkdir(Path("fill").c_str(), 0755), 0) << ErrnoName(errno);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200; i++) {
    std::string e = UploadLikeFlink(Path("fill/f" + std::to_string(i)),
                                    RandomBytes(4 * kMiB, 1000 + i), rng);
    if (!e.empty()) {
      EXPECT_NE(e.find("ENOSPC"), std::string::npos) << "a full disk gave another error: " << e;
      ::unlink(Path("fill/f" + std::to_string(i)).c_str());
      return i;
    }
  }
  ADD_FAILURE() << "never ran out of space";
  return 200;
}

// Free bytes on the store's disk (the tmpfs), as statvfs says.
uint64_t DiskFull::StoreFree() const {
  struct statvfs v {};
  EXPECT_EQ(::statvfs(store().c_str(), &v), 0) << ErrnoName(errno);
  return static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
}

// ENOSPC during GC: packs half dead (every second filler file deleted), so `gc --max-unused
// 0` must copy live chunks into new packs, and the disk filled outside snapfs (a ballast
// file beside the store, as another program on the same disk would) until only 4 MiB
// are free, far less than the live bytes GC must copy. GC must fail with a clear message
// and exit 1 (README: the operation failed), losing nothing: every file still reads back,
// fsck --verify through the daemon is clean, the daemon serves. Once the ballast is
// deleted, the same `snapfs gc` on the same mount succeeds and writing works again.
TEST_F(DiskFull, GcOutOfSpaceFailsCleanlyAndRunsOnceSpaceIsFree) {
  ContentMap content;
  FlinkJob job(mnt(), "job", 7, &content);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(3, 256 * kKiB), "");
  const std::string chk = job.Path(job.retained().back().name);
  const int filled = FillData();
  ASSERT_GT(filled, 20);
  for (int i = 0; i < filled; i += 2) {
    ASSERT_EQ(::unlink(Path("fill/f" + std::to_string(i)).c_str()), 0) << ErrnoName(errno);
  }
  const uint64_t free_before = StoreFree();
  ASSERT_GT(free_before, 64 * kMiB);
  const uint64_t ballast = free_before - 4 * kMiB;
  {
    int fd = ::open((store() + "/ballast").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << ErrnoName(errno);
    std::string chunk = RandomBytes(1 * kMiB, 99);
    for (uint64_t done = 0; done < ballast; done += chunk.size()) {
      const size_t n = std::min<uint64_t>(chunk.size(), ballast - done);
      ASSERT_EQ(WriteAllFd(fd, std::string_view(chunk).substr(0, n)), 0);
    }
    ::close(fd);
  }
  std::cout << "free before gc: " << StoreFree() / kMiB << " MiB (ballast "
            << ballast / kMiB << " MiB)" << std::endl;

  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  std::cout << "gc on the full disk: exit " << gc.code << ": " << gc.err << std::endl;
  EXPECT_EQ(gc.code, 1) << gc.Describe();
  EXPECT_NE(gc.err.find("gc"), std::string::npos) << "the message names the verb: " << gc.err;
  EXPECT_NE(gc.err.find("space"), std::string::npos) << "the message says why: " << gc.err;

  // Nothing committed is lost, the daemon serves, the store is consistent.
  ASSERT_TRUE(IsMounted(mnt(), true));
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "") << "after gc failed";
  for (int i = 1; i < filled; i += 2) {
    EXPECT_TRUE(ReadFile(Path("fill/f" + std::to_string(i))) == RandomBytes(4 * kMiB, 1000 + i))
        << "fill/f" << i << " after gc failed";
  }
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << "after gc failed:\n" << fsck.Describe();

  // Space freed outside snapfs: the same gc now runs, writing works, no remount.
  ASSERT_EQ(::unlink((store() + "/ballast").c_str()), 0) << ErrnoName(errno);
  CmdResult gc2 = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc2.code, 0) << "gc once space is free: " << gc2.Describe();
  EXPECT_EQ(job.TakeCheckpoint(2, 128 * kKiB), "") << "a checkpoint after gc";
  const std::string chk2 = job.Path(job.retained().back().name);
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "");
  for (int i = 1; i < filled; i += 2) {
    EXPECT_TRUE(ReadFile(Path("fill/f" + std::to_string(i))) == RandomBytes(4 * kMiB, 1000 + i))
        << "fill/f" << i << " after the second gc";
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck2 = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck2.code, 0) << fsck2.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "") << "after a remount";
  EXPECT_EQ(Restore(chk2, chk2, content, InPlace), "") << "after a remount";
}

// ENOSPC during a marker commit: on a disk the file data filled (the data reserve
// reached), a savepoint's `_metadata` of 200 KiB (over the 16 KiB kept inline, so it needs
// pack bytes), created before the disk filled and written after, must fail with ENOSPC
// at write, fsync or close, and record no snapshot. A checkpoint whose `_metadata` was
// written and fsync'd before the disk filled commits by its rename on the full disk (a
// rename needs only metadata, which keeps its reserve). After `rm` of the filler and
// `snapfs gc` on the same mount, the savepoint's marker is written again and commits.
TEST_F(DiskFull, MarkerCommitOnAFullDiskGivesEnospcAndCommitsOnceSpaceIsFree) {
  ContentMap content;
  FlinkJob job(mnt(), "job", 7, &content);
  ASSERT_EQ(job.Init(), "");
  ASSERT_EQ(job.TakeCheckpoint(2, 128 * kKiB), "");
  const std::string chk = job.Path(job.retained().back().name);

  // A savepoint folder with one file; its _metadata opened (created) before the fill.
  const std::string sp = Path("savepoint-0a0b0c-0123456789ab");
  ASSERT_EQ(::mkdir(sp.c_str(), 0755), 0) << ErrnoName(errno);
  const std::string state = RandomBytes(64 * kKiB, 3);
  ASSERT_EQ(WriteFile(sp + "/state", state, true), 0);
  JavaDataOutput md;
  WriteMetadataHeader(md, 0, 1);
  md.WriteLong(1);
  md.WriteInt(0);
  md.WriteInt(1);
  md.WriteByte(kRelativeFileHandle);
  md.WriteUTF("state");
  md.WriteLong(state.size());
  md.WriteByte(kInlineHandle);
  md.WriteSizedBytes(RandomBytes(200 * kKiB, 4));  // big inline state: 200 KiB of marker
  const std::string marker = md.bytes();
  content[sp + "/state"] = state;
  int mfd = ::open((sp + "/_metadata").c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(mfd, 0) << ErrnoName(errno);

  // A checkpoint folder whose _metadata temp file is written and fsync'd now.
  const std::string chk9 = job.Path("chk-9");
  ASSERT_EQ(::mkdir(chk9.c_str(), 0755), 0) << ErrnoName(errno);
  const std::string priv = RandomBytes(8 * kKiB, 5);
  ASSERT_EQ(WriteFile(chk9 + "/priv", priv, true), 0);
  content[chk9 + "/priv"] = priv;
  JavaDataOutput md9;
  WriteMetadataHeader(md9, 9, 1);
  md9.WriteLong(9);
  md9.WriteInt(0);
  md9.WriteInt(1);
  md9.WriteByte(kRelativeFileHandle);
  md9.WriteUTF("priv");
  md9.WriteLong(priv.size());
  md9.WriteByte(kInlineHandle);
  md9.WriteSizedBytes(RandomBytes(100 * kKiB, 6));
  ASSERT_EQ(WriteFile(chk9 + "/._metadata.inprogress.x", md9.bytes(), true), 0);
  content[chk9 + "/_metadata"] = md9.bytes();

  const int filled = FillData();
  ASSERT_GT(filled, 0);

  // The in-place marker on the full disk: ENOSPC at the first call that fails.
  int err = WriteAllFd(mfd, marker);
  if (err == 0 && ::fsync(mfd) != 0) err = errno;
  int close_err = ::close(mfd) != 0 ? errno : 0;
  if (err == 0) err = close_err;
  EXPECT_EQ(err, ENOSPC) << "a 200 KiB marker on a full disk: " << ErrnoName(err);
  // (asked with snapfs ls, not a stat of the view: the kernel would remember the ENOENT)
  CmdResult ls = Snapfs({"ls", mnt()}, 60);
  EXPECT_EQ(ls.code, 0) << ls.Describe();
  EXPECT_EQ(ls.out.find("savepoint-0a0b0c"), std::string::npos) << ls.out;

  // The rename commit of a marker already written needs no pack bytes: it goes through.
  ASSERT_EQ(::rename((chk9 + "/._metadata.inprogress.x").c_str(), (chk9 + "/_metadata").c_str()),
            0)
      << "a rename commit on a full disk: " << ErrnoName(errno);
  struct stat st {};
  EXPECT_EQ(::stat(Path(".snapshots/job/chk-9").c_str(), &st), 0)
      << "chk-9 is a snapshot: " << ErrnoName(errno);
  EXPECT_EQ(Restore(chk9, chk9, content, InPlace), "");
  EXPECT_EQ(Restore(chk, chk, content, InPlace), "");
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << "on the full disk:\n" << fsck.Describe();

  // Space back through snapfs (rm + gc, same mount): the marker commits now.
  for (const auto& name : ListDir(Path("fill"))) {
    ASSERT_EQ(::unlink(Path("fill/" + name).c_str()), 0) << name << ": " << ErrnoName(errno);
  }
  CmdResult gc = Snapfs({"gc", mnt(), "--max-unused", "0"}, 120);
  EXPECT_EQ(gc.code, 0) << gc.Describe();
  // As Flink retries (it discards the failed file and creates it anew; a rewrite in
  // place: MarkerWhoseCommitFailedCommitsWhenRewrittenInPlace).
  EXPECT_EQ(::unlink((sp + "/_metadata").c_str()), 0) << ErrnoName(errno);
  EXPECT_EQ(WriteFile(sp + "/_metadata", marker, true), 0);
  content[sp + "/_metadata"] = marker;
  CmdResult ls2 = Snapfs({"ls", mnt()}, 60);
  EXPECT_NE(ls2.out.find("savepoint-0a0b0c"), std::string::npos)
      << "the savepoint after space came back:\n" << ls2.Describe();
  EXPECT_EQ(Restore(sp, sp, content, InPlace), "");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck2 = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck2.code, 0) << fsck2.Describe();
  ASSERT_NO_FATAL_FAILURE(Mount());
  for (const auto& d : {chk, chk9, sp}) EXPECT_EQ(Restore(d, d, content, InPlace), "") << d;
}

// Finding 41: a marker created in place whose commit failed (ENOSPC at its fsync or
// close) stays a file named like a marker that is no snapshot; writing it again in place
// (open with O_TRUNC, write, close) once space is back must commit it. It did not: only
// a marker *created* in place, or one already committed, was rescanned at its close (the
// open of an existing file knows its inode, not its name).
TEST_F(DiskFull, MarkerWhoseCommitFailedCommitsWhenRewrittenInPlace) {
  ASSERT_EQ(::mkdir(Path("sp").c_str(), 0755), 0);
  int fd = ::open(Path("sp/_metadata").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  FillData();
  const std::string marker = RandomBytes(200 * kKiB, 4);
  int err = WriteAllFd(fd, marker);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  ASSERT_EQ(err, ENOSPC);
  for (const auto& name : ListDir(Path("fill"))) ::unlink(Path("fill/" + name).c_str());
  ASSERT_EQ(Snapfs({"gc", mnt(), "--max-unused", "0"}, 120).code, 0);
  ASSERT_EQ(WriteFile(Path("sp/_metadata"), marker, true), 0);
  CmdResult ls = Snapfs({"ls", mnt()}, 60);
  EXPECT_NE(ls.out.find("\nsp "), std::string::npos) << ls.Describe();
  EXPECT_EQ(ReadFile(Path("sp/_metadata")), marker);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult fsck = Snapfs({"fsck", store(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

}  // namespace
}  // namespace snapfs::mounttest
