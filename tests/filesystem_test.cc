// POSIX semantics of the engine's Filesystem API, without FUSE: every namespace and data
// operation, its error codes (Linux's choices where POSIX allows several), and that
// everything survives a reopen of the store.
#include "core/filesystem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace snapfs {
namespace {

using test::kKiB;
using test::kMiB;
using test::RandomBytes;

// Makes the next timestamp strictly later than any taken before.
void Tick() { std::this_thread::sleep_for(std::chrono::milliseconds(3)); }

class FilesystemTest : public ::testing::Test {
 protected:
  Filesystem& fs() { return t.fs(); }
  const Caller& who() { return t.who(); }
  Attr Stat(uint64_t ino) { return MUST(fs().GetAttr(ino)); }
  std::map<std::string, DirEntry> ListMap(uint64_t dir) {
    std::map<std::string, DirEntry> m;
    for (auto& e : t.List(dir)) EXPECT_TRUE(m.emplace(e.name, e).second) << "twice: " << e.name;
    return m;
  }
  uint64_t DotDot(uint64_t dir) {
    uint64_t r = 0;
    MUST(fs().ReadDir(dir, 0, [&](const DirEntry& e) {
      if (e.name == "..") r = e.ino;
      return true;
    }));
    return r;
  }
  Attr SetSize(uint64_t ino, uint64_t size) {
    SetAttrRequest r;
    r.set_size = true;
    r.size = size;
    return MUST(fs().SetAttr(ino, r));
  }

  test::TestFs t;
};

TEST_F(FilesystemTest, LookupMissingIsNotFound) {
  EXPECT_CODE(fs().Lookup(kRootIno, "nope"), Code::kNotFound);
  uint64_t f = t.WriteFile(kRootIno, "f", "x");
  EXPECT_CODE(fs().Lookup(f, "x"), Code::kNotDirectory);
  EXPECT_CODE(fs().GetAttr(987654), Code::kNotFound);
}

TEST_F(FilesystemTest, ExistingNameIsAlreadyExists) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  uint64_t f = t.WriteFile(kRootIno, "f", "data");
  const int excl = O_RDWR | O_CREAT | O_EXCL;
  EXPECT_CODE(fs().Mkdir(kRootIno, "d", 0755, who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Mkdir(kRootIno, "f", 0755, who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Create(kRootIno, "d", 0644, excl, who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Create(kRootIno, "f", 0644, excl, who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Symlink("t", kRootIno, "f", who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Mknod(kRootIno, "f", S_IFREG | 0644, 0, who()), Code::kAlreadyExists);
  EXPECT_CODE(fs().Link(f, kRootIno, "d"), Code::kAlreadyExists);
  EXPECT_EQ(t.InoOf(kRootIno, "d"), d);
  EXPECT_EQ(t.ReadAll(f), "data");
  EXPECT_EQ(Stat(kRootIno).nlink, 3u);
  EXPECT_EQ(Stat(f).nlink, 1u);
}

TEST_F(FilesystemTest, NamesOver255BytesAreNameTooLong) {
  const std::string ok(255, 'a'), bad(256, 'b');
  uint64_t f = t.WriteFile(kRootIno, ok, "x");
  EXPECT_EQ(t.InoOf(kRootIno, ok), f);
  EXPECT_CODE(fs().Lookup(kRootIno, bad), Code::kNameTooLong);
  EXPECT_CODE(fs().Mkdir(kRootIno, bad, 0755, who()), Code::kNameTooLong);
  EXPECT_CODE(fs().Create(kRootIno, bad, 0644, O_RDWR | O_CREAT, who()), Code::kNameTooLong);
  EXPECT_CODE(fs().Mknod(kRootIno, bad, S_IFREG | 0644, 0, who()), Code::kNameTooLong);
  EXPECT_CODE(fs().Symlink("t", kRootIno, bad, who()), Code::kNameTooLong);
  EXPECT_CODE(fs().Link(f, kRootIno, bad), Code::kNameTooLong);
  EXPECT_CODE(fs().Rename(kRootIno, ok, kRootIno, bad), Code::kNameTooLong);
  EXPECT_EQ(t.List(kRootIno).size(), 1u);
  EXPECT_EQ(Stat(f).nlink, 1u);
}

TEST_F(FilesystemTest, CreateThenLookup) {
  auto [attr, fh] = MUST(fs().Create(kRootIno, "f", 0640, O_RDWR | O_CREAT | O_EXCL, who()));
  EXPECT_NE(attr.ino, kRootIno);
  EXPECT_EQ(attr.mode, S_IFREG | 0640u);
  EXPECT_EQ(attr.nlink, 1u);
  EXPECT_EQ(attr.size, 0u);
  EXPECT_EQ(attr.uid, who().uid);
  EXPECT_EQ(attr.gid, who().gid);
  Attr l = MUST(fs().Lookup(kRootIno, "f"));
  EXPECT_EQ(l.ino, attr.ino);
  EXPECT_EQ(l.mode, attr.mode);
  EXPECT_OK(fs().Release(fh));
  // The kernel passes the type bits in the mode of create; the result is the same.
  auto [a2, fh2] = MUST(fs().Create(kRootIno, "g", S_IFREG | 0600, O_RDWR | O_CREAT, who()));
  EXPECT_EQ(a2.mode, S_IFREG | 0600u);
  EXPECT_OK(fs().Release(fh2));
  auto names = ListMap(kRootIno);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names["f"].ino, attr.ino);
  EXPECT_EQ(names["g"].mode & S_IFMT, static_cast<uint32_t>(S_IFREG));
}

TEST_F(FilesystemTest, GetAttrFieldsAndTimes) {
  Attr root = Stat(kRootIno);
  EXPECT_EQ(root.ino, kRootIno);
  EXPECT_TRUE(S_ISDIR(root.mode));
  EXPECT_EQ(root.nlink, 2u);
  Tick();
  const int64_t before = NowNs();
  Attr d = MUST(fs().Mkdir(kRootIno, "d", 0750, who()));
  EXPECT_EQ(d.mode, S_IFDIR | 0750u);
  EXPECT_EQ(d.nlink, 2u);
  EXPECT_EQ(d.uid, who().uid);
  EXPECT_EQ(d.gid, who().gid);
  EXPECT_GE(d.mtime_ns, before);
  EXPECT_GE(d.ctime_ns, before);
  EXPECT_GE(d.atime_ns, before);
  Attr root2 = Stat(kRootIno);
  EXPECT_EQ(root2.nlink, 3u) << "a subfolder's '..' links the parent";
  EXPECT_GT(root2.mtime_ns, root.mtime_ns);
  EXPECT_GT(root2.ctime_ns, root.ctime_ns);
  t.Mkdir(d.ino, "e");
  EXPECT_EQ(Stat(d.ino).nlink, 3u);

  Tick();
  auto [f, fh] = MUST(fs().Create(d.ino, "f", 0644, O_RDWR | O_CREAT | O_EXCL, who()));
  EXPECT_EQ(Stat(d.ino).nlink, 3u) << "files do not link their folder";
  EXPECT_GT(f.mtime_ns, root2.mtime_ns);
  EXPECT_EQ(f.blocks, 0u);
  Tick();
  t.WriteAll(fh, 0, std::string(1000, 'z'));
  Attr written = Stat(f.ino);  // before any flush: the buffered size and times
  EXPECT_EQ(written.size, 1000u);
  EXPECT_GT(written.mtime_ns, f.mtime_ns);
  EXPECT_GT(written.ctime_ns, f.ctime_ns);
  EXPECT_OK(fs().Release(fh));
  Attr closed = Stat(f.ino);
  EXPECT_EQ(closed.size, 1000u);
  EXPECT_GE(closed.blocks * 512, 1000u);
  EXPECT_GE(closed.mtime_ns, written.mtime_ns);

  Attr dir_before = Stat(d.ino);
  Tick();
  EXPECT_OK(fs().Unlink(d.ino, "f"));
  Attr dir_after = Stat(d.ino);
  EXPECT_GT(dir_after.mtime_ns, dir_before.mtime_ns);
  EXPECT_GT(dir_after.ctime_ns, dir_before.ctime_ns);
}

TEST_F(FilesystemTest, SetAttrModeOwnerTimes) {
  uint64_t f = t.WriteFile(kRootIno, "f", "abc");
  Attr a0 = Stat(f);
  Tick();
  SetAttrRequest r;
  r.set_mode = true;
  r.mode = S_IFREG | 04711;  // the kernel passes the type bits along
  Attr a1 = MUST(fs().SetAttr(f, r));
  EXPECT_EQ(a1.mode, S_IFREG | 04711u);
  EXPECT_GT(a1.ctime_ns, a0.ctime_ns);
  EXPECT_EQ(a1.mtime_ns, a0.mtime_ns);
  r.mode = 0600;  // permission bits only: the type stays
  EXPECT_EQ(MUST(fs().SetAttr(f, r)).mode, S_IFREG | 0600u);

  Tick();
  SetAttrRequest c;
  c.set_uid = c.set_gid = true;
  c.uid = 42;
  c.gid = 43;
  Attr a2 = MUST(fs().SetAttr(f, c));
  EXPECT_EQ(a2.uid, 42u);
  EXPECT_EQ(a2.gid, 43u);
  EXPECT_GT(a2.ctime_ns, a1.ctime_ns);

  SetAttrRequest u;
  u.set_atime = u.set_mtime = true;
  u.atime_ns = 1'000'000'005;
  u.mtime_ns = 2'000'000'007;
  Attr a3 = MUST(fs().SetAttr(f, u));
  EXPECT_EQ(a3.atime_ns, 1'000'000'005);
  EXPECT_EQ(a3.mtime_ns, 2'000'000'007);
  EXPECT_GE(a3.ctime_ns, a2.ctime_ns);
  const int64_t before = NowNs();
  u.atime_now = u.mtime_now = true;
  Attr a4 = MUST(fs().SetAttr(f, u));
  EXPECT_GE(a4.atime_ns, before);
  EXPECT_GE(a4.mtime_ns, before);
  EXPECT_LE(a4.mtime_ns, NowNs());

  uint64_t d = t.Mkdir(kRootIno, "d");
  r.mode = 0700;
  EXPECT_EQ(MUST(fs().SetAttr(d, r)).mode, S_IFDIR | 0700u);

  t.Reopen();
  Attr p = Stat(f);
  EXPECT_EQ(p.mode, S_IFREG | 0600u);
  EXPECT_EQ(p.uid, 42u);
  EXPECT_EQ(p.gid, 43u);
  EXPECT_EQ(p.mtime_ns, a4.mtime_ns);
  EXPECT_EQ(p.atime_ns, a4.atime_ns);
  EXPECT_EQ(t.ReadAll(f), "abc");
}

TEST_F(FilesystemTest, TruncateGrowShrinkAndZero) {
  const std::string data = RandomBytes(100 * kKiB, 1);
  uint64_t f = t.WriteFile(kRootIno, "f", data);
  Attr a0 = Stat(f);
  Tick();
  Attr grown = SetSize(f, 150 * kKiB);
  EXPECT_EQ(grown.size, 150 * kKiB);
  EXPECT_GT(grown.mtime_ns, a0.mtime_ns);
  EXPECT_GT(grown.ctime_ns, a0.ctime_ns);
  EXPECT_EQ(t.ReadAll(f), data + std::string(50 * kKiB, '\0'));

  // Into the middle of a chunk (chunks are 1-16 KiB here); the cut-off bytes must not
  // come back when the file grows again.
  EXPECT_EQ(SetSize(f, 12345).size, 12345u);
  EXPECT_EQ(t.ReadAll(f), data.substr(0, 12345));
  SetSize(f, 20000);
  const std::string expect = data.substr(0, 12345) + std::string(20000 - 12345, '\0');
  EXPECT_EQ(t.ReadAll(f), expect);
  t.Reopen();
  EXPECT_EQ(t.ReadAll(f), expect);

  Attr zero = SetSize(f, 0);
  EXPECT_EQ(zero.size, 0u);
  EXPECT_EQ(zero.blocks, 0u);
  EXPECT_EQ(t.ReadAll(f), "");
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);

  uint64_t d = t.Mkdir(kRootIno, "d");
  SetAttrRequest r;
  r.set_size = true;
  r.size = 10;
  EXPECT_CODE(fs().SetAttr(d, r), Code::kIsDirectory);
  r.size = kMaxFileSize + 1;
  EXPECT_CODE(fs().SetAttr(f, r), Code::kFileTooBig);
}

TEST_F(FilesystemTest, TruncateOpenFileWithBufferedWrites) {
  auto [a, fh] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  const std::string data = RandomBytes(50 * kKiB, 2);
  t.WriteAll(fh, 0, data);
  SetSize(a.ino, 1000);
  EXPECT_EQ(t.ReadFh(fh, a.ino), data.substr(0, 1000));
  t.WriteAll(fh, 3000, "xyz");
  const std::string expect = data.substr(0, 1000) + std::string(2000, '\0') + "xyz";
  EXPECT_EQ(t.ReadFh(fh, a.ino), expect);
  EXPECT_OK(fs().Release(fh));
  EXPECT_EQ(t.ReadAll(a.ino), expect);
}

TEST_F(FilesystemTest, UnlinkAndRmdirErrors) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  t.WriteFile(d, "f", "x");
  uint64_t e = t.Mkdir(kRootIno, "e");
  t.Mkdir(e, "sub");
  EXPECT_EQ(Stat(kRootIno).nlink, 4u);
  EXPECT_CODE(fs().Unlink(kRootIno, "d"), Code::kIsDirectory);
  EXPECT_CODE(fs().Rmdir(d, "f"), Code::kNotDirectory);
  EXPECT_CODE(fs().Rmdir(kRootIno, "d"), Code::kNotEmpty);
  EXPECT_CODE(fs().Rmdir(kRootIno, "e"), Code::kNotEmpty);
  EXPECT_CODE(fs().Unlink(kRootIno, "missing"), Code::kNotFound);
  EXPECT_CODE(fs().Rmdir(kRootIno, "missing"), Code::kNotFound);

  EXPECT_OK(fs().Unlink(d, "f"));
  EXPECT_CODE(fs().Lookup(d, "f"), Code::kNotFound);
  Attr before = Stat(kRootIno);
  Tick();
  EXPECT_OK(fs().Rmdir(kRootIno, "d"));
  Attr after = Stat(kRootIno);
  EXPECT_EQ(after.nlink, before.nlink - 1);
  EXPECT_GT(after.mtime_ns, before.mtime_ns);
  EXPECT_CODE(fs().Lookup(kRootIno, "d"), Code::kNotFound);
  EXPECT_CODE(fs().GetAttr(d), Code::kNotFound) << "nothing references it any more";
  EXPECT_OK(fs().Rmdir(e, "sub"));
  EXPECT_EQ(Stat(e).nlink, 2u);
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, RenameSimpleAndAcrossFolders) {
  uint64_t d1 = t.Mkdir(kRootIno, "d1"), d2 = t.Mkdir(kRootIno, "d2");
  uint64_t f = t.WriteFile(d1, "a", "payload");
  Attr before = Stat(d1);
  Tick();
  EXPECT_OK(fs().Rename(d1, "a", d1, "b"));
  EXPECT_CODE(fs().Lookup(d1, "a"), Code::kNotFound);
  EXPECT_EQ(t.InoOf(d1, "b"), f);
  EXPECT_GT(Stat(d1).mtime_ns, before.mtime_ns);
  EXPECT_OK(fs().Rename(d1, "b", d2, "c"));
  EXPECT_TRUE(t.List(d1).empty());
  EXPECT_EQ(t.InoOf(d2, "c"), f);
  EXPECT_EQ(t.ReadAll(f), "payload");
  EXPECT_EQ(Stat(f).nlink, 1u);
  EXPECT_CODE(fs().Rename(d1, "missing", d2, "x"), Code::kNotFound);

  // A folder moved to another parent: its ".." and both parents' link counts follow.
  uint64_t sub = t.Mkdir(d1, "sub");
  EXPECT_EQ(Stat(d1).nlink, 3u);
  EXPECT_OK(fs().Rename(d1, "sub", d2, "sub2"));
  EXPECT_EQ(Stat(d1).nlink, 2u);
  EXPECT_EQ(Stat(d2).nlink, 3u);
  EXPECT_EQ(DotDot(sub), d2);
  t.Reopen();
  EXPECT_EQ(DotDot(sub), d2);
  EXPECT_EQ(Stat(d2).nlink, 3u);
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, RenameOverExistingFileFreesItsData) {
  const std::string a = RandomBytes(200 * kKiB, 1), b = RandomBytes(200 * kKiB, 2);
  uint64_t ia = t.WriteFile(kRootIno, "a", a);
  uint64_t ib = t.WriteFile(kRootIno, "b", b);
  FsckReport r0 = t.Check();
  EXPECT_FSCK_OK(r0);
  EXPECT_EQ(r0.garbage_chunks, 0u);
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "b"));
  EXPECT_CODE(fs().Lookup(kRootIno, "a"), Code::kNotFound);
  EXPECT_EQ(t.InoOf(kRootIno, "b"), ia);
  EXPECT_CODE(fs().GetAttr(ib), Code::kNotFound);
  EXPECT_EQ(t.ReadAll(ia), a);
  FsckReport r1 = t.Check();
  EXPECT_FSCK_OK(r1);
  EXPECT_GT(r1.garbage_chunks, 0u) << "the replaced file's chunks have refcount 0";
  MUST(RunGc(t.store()));
  FsckReport r2 = t.Check(true);
  EXPECT_FSCK_OK(r2);
  EXPECT_EQ(r2.garbage_chunks, 0u);
  EXPECT_LT(r2.chunks, r1.chunks);
  EXPECT_LE(r2.stored_bytes + 190 * kKiB, r0.stored_bytes);
  EXPECT_EQ(t.ReadAll(ia), a);
}

TEST_F(FilesystemTest, RenameNoReplace) {
  uint64_t a = t.WriteFile(kRootIno, "a", "A");
  uint64_t b = t.WriteFile(kRootIno, "b", "B");
  EXPECT_CODE(fs().Rename(kRootIno, "a", kRootIno, "b", kRenameNoReplace), Code::kAlreadyExists);
  EXPECT_EQ(t.InoOf(kRootIno, "a"), a);
  EXPECT_EQ(t.InoOf(kRootIno, "b"), b);
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "c", kRenameNoReplace));
  EXPECT_EQ(t.InoOf(kRootIno, "c"), a);
  EXPECT_CODE(fs().Rename(kRootIno, "c", kRootIno, "b", kRenameNoReplace | kRenameExchange),
              Code::kInvalidArgument);
}

TEST_F(FilesystemTest, RenameExchangeFiles) {
  uint64_t a = t.WriteFile(kRootIno, "a", "AAA");
  uint64_t b = t.WriteFile(kRootIno, "b", "BB");
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "b", kRenameExchange));
  EXPECT_EQ(t.InoOf(kRootIno, "a"), b);
  EXPECT_EQ(t.InoOf(kRootIno, "b"), a);
  EXPECT_EQ(t.ReadAll(t.InoOf(kRootIno, "a")), "BB");
  EXPECT_EQ(Stat(a).nlink, 1u);
  EXPECT_EQ(Stat(b).nlink, 1u);
  EXPECT_CODE(fs().Rename(kRootIno, "a", kRootIno, "zz", kRenameExchange), Code::kNotFound);
  EXPECT_CODE(fs().Rename(kRootIno, "zz", kRootIno, "a", kRenameExchange), Code::kNotFound);
  EXPECT_EQ(t.InoOf(kRootIno, "a"), b);
  EXPECT_CODE(fs().Lookup(kRootIno, "zz"), Code::kNotFound);
}

TEST_F(FilesystemTest, RenameExchangeFileAndDirAcrossFolders) {
  uint64_t d1 = t.Mkdir(kRootIno, "d1"), d2 = t.Mkdir(kRootIno, "d2");
  uint64_t sub = t.Mkdir(d1, "sub");
  uint64_t inner = t.WriteFile(sub, "inner", "in");
  uint64_t file = t.WriteFile(d2, "file", "f");
  EXPECT_EQ(Stat(d1).nlink, 3u);
  EXPECT_EQ(Stat(d2).nlink, 2u);
  EXPECT_OK(fs().Rename(d1, "sub", d2, "file", kRenameExchange));
  EXPECT_EQ(t.InoOf(d1, "sub"), file);
  EXPECT_EQ(t.InoOf(d2, "file"), sub);
  EXPECT_EQ(t.InoOf(sub, "inner"), inner);
  EXPECT_EQ(DotDot(sub), d2);
  EXPECT_EQ(Stat(d1).nlink, 2u);
  EXPECT_EQ(Stat(d2).nlink, 3u);
  EXPECT_EQ(Stat(kRootIno).nlink, 4u);
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
  t.Reopen();
  EXPECT_EQ(DotDot(sub), d2);
  EXPECT_EQ(Stat(d1).nlink, 2u);
  EXPECT_EQ(Stat(d2).nlink, 3u);
  EXPECT_EQ(t.ReadAll(t.InoOf(d1, "sub")), "f");
}

TEST_F(FilesystemTest, RenameExchangeDirsAcrossFolders) {
  uint64_t d1 = t.Mkdir(kRootIno, "d1"), d2 = t.Mkdir(kRootIno, "d2");
  uint64_t x = t.Mkdir(d1, "x"), y = t.Mkdir(d2, "y");
  t.Mkdir(x, "xx");
  EXPECT_OK(fs().Rename(d1, "x", d2, "y", kRenameExchange));
  EXPECT_EQ(t.InoOf(d1, "x"), y);
  EXPECT_EQ(t.InoOf(d2, "y"), x);
  EXPECT_EQ(DotDot(x), d2);
  EXPECT_EQ(DotDot(y), d1);
  EXPECT_EQ(Stat(d1).nlink, 3u);
  EXPECT_EQ(Stat(d2).nlink, 3u);
  EXPECT_EQ(Stat(x).nlink, 3u);
  // Exchanging a folder with its own descendant would detach a loop.
  EXPECT_CODE(fs().Rename(kRootIno, "d2", x, "xx", kRenameExchange), Code::kInvalidArgument);
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, RenameDirErrors) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  t.WriteFile(d, "x", "xdata");
  uint64_t s = t.Mkdir(d, "s");
  t.Mkdir(kRootIno, "empty");
  uint64_t full = t.Mkdir(kRootIno, "full");
  t.WriteFile(full, "y", "");
  t.WriteFile(kRootIno, "g", "g");
  EXPECT_CODE(fs().Rename(kRootIno, "d", kRootIno, "full"), Code::kNotEmpty);
  EXPECT_CODE(fs().Rename(kRootIno, "g", kRootIno, "empty"), Code::kIsDirectory);
  EXPECT_CODE(fs().Rename(kRootIno, "d", kRootIno, "g"), Code::kNotDirectory);
  EXPECT_CODE(fs().Rename(kRootIno, "d", s, "z"), Code::kInvalidArgument);
  EXPECT_CODE(fs().Rename(kRootIno, "d", d, "z"), Code::kInvalidArgument);
  EXPECT_CODE(fs().Lookup(s, "z"), Code::kNotFound);
  EXPECT_EQ(Stat(kRootIno).nlink, 5u);
  // A folder over an empty folder replaces it.
  EXPECT_OK(fs().Rename(kRootIno, "d", kRootIno, "empty"));
  EXPECT_EQ(t.InoOf(kRootIno, "empty"), d);
  EXPECT_EQ(t.ReadAll(t.InoOf(d, "x")), "xdata");
  EXPECT_EQ(Stat(kRootIno).nlink, 4u);
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, RenameOntoSameInodeIsNoop) {
  uint64_t a = t.WriteFile(kRootIno, "a", "data");
  MUST(fs().Link(a, kRootIno, "b"));
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "b"));
  EXPECT_EQ(t.InoOf(kRootIno, "a"), a);
  EXPECT_EQ(t.InoOf(kRootIno, "b"), a);
  EXPECT_EQ(Stat(a).nlink, 2u);
  EXPECT_OK(fs().Rename(kRootIno, "a", kRootIno, "a"));
  EXPECT_EQ(t.InoOf(kRootIno, "a"), a);
  EXPECT_EQ(t.ReadAll(a), "data");
  auto report = t.Check();
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, HardLinks) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  const std::string data = RandomBytes(64 * kKiB, 3);
  uint64_t a = t.WriteFile(kRootIno, "a", data);
  Attr a0 = Stat(a);
  Tick();
  Attr l = MUST(fs().Link(a, d, "b"));
  EXPECT_EQ(l.ino, a);
  EXPECT_EQ(l.nlink, 2u);
  EXPECT_EQ(Stat(a).nlink, 2u);
  EXPECT_GT(Stat(a).ctime_ns, a0.ctime_ns);
  EXPECT_CODE(fs().Link(d, kRootIno, "dirlink"), Code::kPermission);
  EXPECT_CODE(fs().Link(a, a, "x"), Code::kNotDirectory);
  EXPECT_OK(fs().Unlink(kRootIno, "a"));
  EXPECT_EQ(Stat(a).nlink, 1u);
  EXPECT_EQ(t.ReadAll(t.InoOf(d, "b")), data);
  FsckReport r = t.Check();
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.garbage_chunks, 0u);
  EXPECT_OK(fs().Unlink(d, "b"));
  EXPECT_CODE(fs().GetAttr(a), Code::kNotFound);
}

TEST_F(FilesystemTest, SymlinkAndReadlink) {
  const std::string target = "../some/where/file";
  Attr l = MUST(fs().Symlink(target, kRootIno, "l", who()));
  EXPECT_TRUE(S_ISLNK(l.mode));
  EXPECT_EQ(l.size, target.size());
  EXPECT_EQ(l.uid, who().uid);
  EXPECT_EQ(l.nlink, 1u);
  EXPECT_EQ(MUST(fs().Readlink(l.ino)), target);
  EXPECT_EQ(t.InoOf(kRootIno, "l"), l.ino);
  EXPECT_EQ(ListMap(kRootIno)["l"].mode & S_IFMT, static_cast<uint32_t>(S_IFLNK));
  uint64_t f = t.WriteFile(kRootIno, "f", "x");
  EXPECT_CODE(fs().Readlink(f), Code::kInvalidArgument);
  t.Reopen();
  EXPECT_EQ(MUST(fs().Readlink(l.ino)), target);
  EXPECT_OK(fs().Unlink(kRootIno, "l"));
  EXPECT_CODE(fs().Lookup(kRootIno, "l"), Code::kNotFound);
}

TEST_F(FilesystemTest, ReadDirListsDotsAndEntries) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  uint64_t a = t.WriteFile(d, "a", "");
  uint64_t sub = t.Mkdir(d, "sub");
  uint64_t l = MUST(fs().Symlink("a", d, "l", who())).ino;
  std::vector<DirEntry> all;
  ASSERT_OK(fs().ReadDir(d, 0, [&](const DirEntry& e) {
    all.push_back(e);
    return true;
  }));
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].name, ".");
  EXPECT_EQ(all[0].ino, d);
  EXPECT_EQ(all[1].name, "..");
  EXPECT_EQ(all[1].ino, kRootIno);
  auto m = ListMap(d);
  EXPECT_EQ(m["a"].ino, a);
  EXPECT_EQ(m["a"].mode, static_cast<uint32_t>(S_IFREG));
  EXPECT_EQ(m["sub"].ino, sub);
  EXPECT_EQ(m["sub"].mode, static_cast<uint32_t>(S_IFDIR));
  EXPECT_EQ(m["l"].ino, l);
  EXPECT_EQ(DotDot(kRootIno), kRootIno);
  EXPECT_CODE(fs().ReadDir(a, 0, [](const DirEntry&) { return true; }), Code::kNotDirectory);
}

TEST_F(FilesystemTest, ReadDirResumesFromEveryCookie) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  for (int i = 0; i < 20; i++) t.WriteFile(d, "f" + std::to_string(i), "");
  std::vector<DirEntry> all;
  ASSERT_OK(fs().ReadDir(d, 0, [&](const DirEntry& e) {
    all.push_back(e);
    return true;
  }));
  ASSERT_EQ(all.size(), 22u);
  std::set<uint64_t> cookies;
  for (auto& e : all) EXPECT_TRUE(cookies.insert(e.cookie).second) << "cookie reused";
  EXPECT_EQ(cookies.count(0), 0u) << "cookie 0 means 'from the start'";
  for (size_t i = 0; i < all.size(); i++) {
    std::vector<std::string> rest;
    ASSERT_OK(fs().ReadDir(d, all[i].cookie, [&](const DirEntry& e) {
      rest.push_back(e.name);
      return true;
    }));
    std::vector<std::string> want;
    for (size_t j = i + 1; j < all.size(); j++) want.push_back(all[j].name);
    EXPECT_EQ(rest, want) << "resuming after entry " << i;
  }
}

TEST_F(FilesystemTest, ReadDirCookiesSurviveInsertsAndDeletes) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  std::set<std::string> initial;
  for (int i = 0; i < 30; i++) {
    initial.insert("f" + std::to_string(i));
    t.WriteFile(d, "f" + std::to_string(i), "");
  }
  std::vector<std::string> seen;
  uint64_t cookie = 0;
  ASSERT_OK(fs().ReadDir(d, 0, [&](const DirEntry& e) {
    seen.push_back(e.name);
    cookie = e.cookie;
    return seen.size() < 12;
  }));
  ASSERT_EQ(seen.size(), 12u);
  std::set<std::string> removed;
  for (const auto& n : initial) {  // delete 8 not yet listed, and 2 already listed
    bool listed = std::find(seen.begin(), seen.end(), n) != seen.end();
    if ((!listed && removed.size() < 8) || (listed && n == seen[5]) || (listed && n == seen[6])) {
      ASSERT_OK(fs().Unlink(d, n));
      removed.insert(n);
    }
  }
  for (int i = 0; i < 10; i++) t.WriteFile(d, "new" + std::to_string(i), "");
  ASSERT_OK(fs().ReadDir(d, cookie, [&](const DirEntry& e) {
    seen.push_back(e.name);
    return true;
  }));
  std::map<std::string, int> count;
  for (auto& n : seen) count[n]++;
  for (auto& [n, c] : count) EXPECT_EQ(c, 1) << n << " listed " << c << " times";
  for (const auto& n : initial) {
    bool deleted_before_listed = removed.count(n) && n != seen[5] && n != seen[6];
    EXPECT_EQ(count.count(n), deleted_before_listed ? 0u : 1u) << n;
  }
}

TEST_F(FilesystemTest, ReadDirTenThousandEntries) {
  uint64_t d = t.Mkdir(kRootIno, "d");
  std::set<std::string> want;
  char name[32];
  for (int i = 0; i < 10000; i++) {
    std::snprintf(name, sizeof name, "file-%05d", i);
    want.insert(name);
    ASSERT_OK(fs().Mknod(d, name, S_IFREG | 0644, 0, who()));
  }
  std::set<std::string> got;
  uint64_t cookie = 0;
  int pages = 0, dots = 0;
  for (bool more = true; more; pages++) {  // pages of 500, as a kernel buffer would
    int n = 0;
    ASSERT_OK(fs().ReadDir(d, cookie, [&](const DirEntry& e) {
      if (e.name == "." || e.name == "..") {
        dots++;
      } else {
        EXPECT_TRUE(got.insert(e.name).second) << "duplicate " << e.name;
      }
      cookie = e.cookie;
      return ++n < 500;
    }));
    more = n == 500;
    ASSERT_LT(pages, 100);
  }
  EXPECT_EQ(dots, 2);
  EXPECT_EQ(got, want);
  EXPECT_EQ(Stat(d).nlink, 2u);
}

TEST_F(FilesystemTest, Xattrs) {
  uint64_t f = t.WriteFile(kRootIno, "f", "x");
  const std::string bin("v\0\x01\xff", 4);
  EXPECT_OK(fs().SetXattr(f, "user.a", "1", 0));
  EXPECT_OK(fs().SetXattr(f, "user.b", bin, 0));
  EXPECT_OK(fs().SetXattr(f, "user.empty", "", 0));
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.a")), "1");
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.b")), bin);
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.empty")), "");
  auto names = MUST(fs().ListXattr(f));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"user.a", "user.b", "user.empty"}));
  EXPECT_CODE(fs().SetXattr(f, "user.a", "2", kXattrCreate), Code::kAlreadyExists);
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.a")), "1");
  EXPECT_CODE(fs().SetXattr(f, "user.c", "2", kXattrReplace), Code::kNoData);
  EXPECT_CODE(fs().GetXattr(f, "user.c"), Code::kNoData);
  EXPECT_OK(fs().SetXattr(f, "user.a", "2", kXattrReplace));
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.a")), "2");
  EXPECT_OK(fs().SetXattr(f, "user.c", "3", kXattrCreate));
  Attr before = Stat(f);
  Tick();
  EXPECT_OK(fs().RemoveXattr(f, "user.a"));
  EXPECT_GT(Stat(f).ctime_ns, before.ctime_ns);
  EXPECT_CODE(fs().GetXattr(f, "user.a"), Code::kNoData);
  EXPECT_CODE(fs().RemoveXattr(f, "user.a"), Code::kNoData);
  uint64_t d = t.Mkdir(kRootIno, "d");
  EXPECT_OK(fs().SetXattr(d, "user.dir", std::string(kXattrValueMax, 'v'), 0));
  t.Reopen();
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.b")), bin);
  EXPECT_EQ(MUST(fs().GetXattr(d, "user.dir")).size(), kXattrValueMax);
  names = MUST(fs().ListXattr(f));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"user.b", "user.c", "user.empty"}));
}

TEST_F(FilesystemTest, WriteAndReadAtOffsets) {
  auto [a, fh] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  EXPECT_EQ(MUST(fs().Write(fh, 0, "hello", 5)), 5u);
  EXPECT_EQ(MUST(fs().Write(fh, 10, "world", 5)), 5u);
  EXPECT_EQ(Stat(a.ino).size, 15u);
  EXPECT_EQ(t.ReadAt(fh, 3, 5), std::string("lo\0\0\0", 5));
  EXPECT_EQ(t.ReadAt(fh, 14, 10), "d");
  char buf[8];
  EXPECT_EQ(MUST(fs().Read(fh, 15, sizeof buf, buf)), 0u);
  EXPECT_EQ(MUST(fs().Read(fh, 1000, sizeof buf, buf)), 0u);
  t.WriteAll(fh, 1, "XY");
  const std::string want = std::string("hXYlo") + std::string(5, '\0') + "world";
  EXPECT_EQ(t.ReadFh(fh, a.ino), want);
  EXPECT_OK(fs().Release(fh));
  EXPECT_EQ(t.ReadAll(a.ino), want);
  t.Reopen();
  EXPECT_EQ(t.ReadAll(a.ino), want);
  fh = MUST(fs().Open(a.ino, O_RDWR));
  EXPECT_CODE(fs().Write(fh, kMaxFileSize, "x", 1), Code::kFileTooBig);
  EXPECT_OK(fs().Release(fh));
}

TEST_F(FilesystemTest, SparseFileWriteAt10MiB) {
  auto [a, fh] = MUST(fs().Create(kRootIno, "sparse", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh, 10 * kMiB, "tail");
  EXPECT_EQ(Stat(a.ino).size, 10 * kMiB + 4);
  EXPECT_EQ(t.ReadAt(fh, 10 * kMiB - 3, 100), std::string(3, '\0') + "tail");
  EXPECT_OK(fs().Release(fh));
  const std::string want = std::string(10 * kMiB, '\0') + "tail";
  EXPECT_EQ(t.ReadAll(a.ino), want);
  EXPECT_LT(Stat(a.ino).blocks * 512, 1 * kMiB) << "the hole should not be stored";
  t.Reopen();
  EXPECT_EQ(Stat(a.ino).size, 10 * kMiB + 4);
  EXPECT_EQ(t.ReadAll(a.ino), want);
}

TEST_F(FilesystemTest, OverwriteMiddleOfLargeFile) {
  std::string model = RandomBytes(3 * kMiB, 4);
  uint64_t f = t.WriteFile(kRootIno, "big", model);
  const uint64_t new0 = t.store().chunks().stats().bytes_new;
  FileHandle fh = MUST(fs().Open(f, O_RDWR));
  const std::string patch = RandomBytes(5000, 5);
  t.WriteAll(fh, 1536 * kKiB + 123, patch);
  model.replace(1536 * kKiB + 123, patch.size(), patch);
  EXPECT_OK(fs().Release(fh));
  EXPECT_LT(t.store().chunks().stats().bytes_new - new0, 128 * kKiB)
      << "only the region around the write should be re-chunked";
  EXPECT_EQ(t.ReadAll(f), model);
  fh = MUST(fs().Open(f, O_RDWR));
  const std::string wide = RandomBytes(300 * kKiB, 6);
  t.WriteAll(fh, 2 * kMiB - 7, wide);
  model.replace(2 * kMiB - 7, wide.size(), wide);
  EXPECT_EQ(t.ReadFh(fh, f), model);
  EXPECT_OK(fs().Release(fh));
  t.Reopen();
  EXPECT_EQ(t.ReadAll(f), model);
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, AppendAndTruncOnOpen) {
  uint64_t f = t.WriteFile(kRootIno, "f", "hello");
  FileHandle fh = MUST(fs().Open(f, O_WRONLY | O_APPEND));
  t.WriteAll(fh, 0, "abc");
  t.WriteAll(fh, 2, "de");
  EXPECT_OK(fs().Release(fh));
  EXPECT_EQ(t.ReadAll(f), "helloabcde");
  fh = MUST(fs().Open(f, O_WRONLY | O_TRUNC));
  EXPECT_EQ(Stat(f).size, 0u);
  t.WriteAll(fh, 0, "x");
  EXPECT_OK(fs().Release(fh));
  EXPECT_EQ(t.ReadAll(f), "x");
}

TEST_F(FilesystemTest, HandlesOfOneInodeShareUnflushedWrites) {
  auto [a, fh1] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  FileHandle fh2 = MUST(fs().Open(a.ino, O_RDWR));
  t.WriteAll(fh1, 0, "abc");
  EXPECT_EQ(t.ReadAt(fh2, 0, 10), "abc");
  t.WriteAll(fh2, 1, "Z");
  EXPECT_EQ(t.ReadAt(fh1, 0, 10), "aZc");
  FileHandle fh3 = MUST(fs().Open(a.ino, O_RDONLY));
  EXPECT_EQ(t.ReadAt(fh3, 0, 10), "aZc");
  EXPECT_EQ(Stat(a.ino).size, 3u);
  EXPECT_OK(fs().Release(fh1));
  t.WriteAll(fh2, 3, "d");
  EXPECT_EQ(t.ReadAt(fh3, 0, 10), "aZcd");
  EXPECT_OK(fs().Release(fh2));
  EXPECT_OK(fs().Release(fh3));
  EXPECT_EQ(t.ReadAll(a.ino), "aZcd");
}

TEST_F(FilesystemTest, LargeFileRoundTrip) {
  const std::string data = RandomBytes(20 * kMiB + 12345, 7);
  auto [a, fh] = MUST(fs().Create(kRootIno, "large", 0644, O_RDWR | O_CREAT, who()));
  const size_t piece = kMiB + 17;  // misaligned with everything
  for (size_t off = 0; off < data.size(); off += piece) {
    t.WriteAll(fh, off, std::string_view(data).substr(off, piece));
  }
  EXPECT_EQ(Stat(a.ino).size, data.size());
  EXPECT_TRUE(t.ReadFh(fh, a.ino) == data) << "read back through the writing handle differs";
  EXPECT_OK(fs().Release(fh));
  EXPECT_TRUE(t.ReadAll(a.ino) == data);
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(a.ino) == data);
  FsckReport r = t.Check(true);
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.logical_bytes, data.size());
}

TEST_F(FilesystemTest, OpenUnlinkedFileLivesUntilRelease) {
  std::string data = RandomBytes(300 * kKiB, 8);
  auto [a, fh] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh, 0, data);
  EXPECT_OK(fs().Fsync(fh, false));
  EXPECT_OK(fs().Unlink(kRootIno, "f"));
  EXPECT_CODE(fs().Lookup(kRootIno, "f"), Code::kNotFound);
  EXPECT_EQ(Stat(a.ino).nlink, 0u);
  EXPECT_TRUE(t.ReadFh(fh, a.ino) == data);
  const std::string more = RandomBytes(50 * kKiB, 9);
  t.WriteAll(fh, data.size(), more);
  data += more;
  EXPECT_OK(fs().Fsync(fh, false));
  EXPECT_TRUE(t.ReadFh(fh, a.ino) == data);
  FsckReport open = t.Check();
  EXPECT_FSCK_OK(open);
  EXPECT_OK(fs().Release(fh));
  EXPECT_CODE(fs().GetAttr(a.ino), Code::kNotFound);
  FsckReport closed = t.Check();
  EXPECT_FSCK_OK(closed);
  EXPECT_GT(closed.garbage_chunks, 0u);
  MUST(RunGc(t.store()));
  FsckReport after = t.Check(true);
  EXPECT_FSCK_OK(after);
  EXPECT_EQ(after.garbage_chunks, 0u);
  EXPECT_EQ(after.chunks, 0u);
  EXPECT_EQ(after.extents, 0u);
}

TEST_F(FilesystemTest, UnlinkedOpenFileIsPurgedAtNextOpen) {
  const std::string keep = RandomBytes(40 * kKiB, 10);
  uint64_t k = t.WriteFile(kRootIno, "keep", keep);
  auto [a, fh] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh, 0, RandomBytes(200 * kKiB, 11));
  EXPECT_OK(fs().Fsync(fh, false));
  auto [b, fh2] = MUST(fs().Create(kRootIno, "g", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh2, 0, RandomBytes(100 * kKiB, 12));  // dirty, never flushed
  EXPECT_OK(fs().Unlink(kRootIno, "f"));
  EXPECT_OK(fs().Unlink(kRootIno, "g"));
  t.Close();  // no Release: as if the process died with the files open
  t.Open();
  EXPECT_CODE(fs().GetAttr(a.ino), Code::kNotFound);
  EXPECT_CODE(fs().GetAttr(b.ino), Code::kNotFound);
  FsckReport r = t.Check();
  EXPECT_FSCK_OK(r);
  EXPECT_EQ(r.inodes, 2u) << "root and 'keep'";
  MUST(RunGc(t.store()));
  FsckReport g = t.Check(true);
  EXPECT_FSCK_OK(g);
  EXPECT_EQ(g.garbage_chunks, 0u);
  EXPECT_EQ(g.logical_bytes, keep.size());
  EXPECT_LE(g.stored_bytes, keep.size());
  EXPECT_EQ(t.ReadAll(k), keep);
}

TEST_F(FilesystemTest, CloneRangeSharesChunks) {
  const std::string data = RandomBytes(4 * kMiB, 13);
  uint64_t src = t.WriteFile(kRootIno, "src", data);
  FsckReport r0 = t.Check();
  const uint64_t new0 = t.store().chunks().stats().bytes_new;
  FileHandle sfh = MUST(fs().Open(src, O_RDONLY));
  auto [d, dfh] = MUST(fs().Create(kRootIno, "dst", 0644, O_RDWR | O_CREAT, who()));
  EXPECT_EQ(MUST(fs().CloneRange(sfh, 0, dfh, 0, 4 * kMiB)), 4 * kMiB);
  EXPECT_EQ(Stat(d.ino).size, 4 * kMiB);
  EXPECT_OK(fs().Release(dfh));
  EXPECT_OK(fs().Release(sfh));
  EXPECT_LE(t.store().chunks().stats().bytes_new - new0, 32 * kKiB);
  FsckReport r1 = t.Check();
  EXPECT_FSCK_OK(r1);
  EXPECT_LE(r1.chunks, r0.chunks + 2);
  EXPECT_LE(r1.stored_bytes, r0.stored_bytes + 32 * kKiB);
  EXPECT_EQ(r1.logical_bytes, 8 * kMiB);
  EXPECT_TRUE(t.ReadAll(d.ino) == data);
  // Deleting the source leaves the clone intact and frees nothing it uses.
  EXPECT_OK(fs().Unlink(kRootIno, "src"));
  MUST(RunGc(t.store()));
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(d.ino) == data);
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, CloneRangeUnalignedAndShort) {
  std::string src = RandomBytes(kMiB, 14), dst = RandomBytes(600 * kKiB, 15);
  uint64_t s = t.WriteFile(kRootIno, "src", src);
  uint64_t d = t.WriteFile(kRootIno, "dst", dst);
  FileHandle sfh = MUST(fs().Open(s, O_RDWR));
  FileHandle dfh = MUST(fs().Open(d, O_RDWR));
  // Unflushed source bytes are part of what is cloned.
  t.WriteAll(sfh, 20000, std::string(100, 'X'));
  src.replace(20000, 100, std::string(100, 'X'));
  EXPECT_EQ(MUST(fs().CloneRange(sfh, 12345, dfh, 5001, 700001)), 700001u);
  dst.resize(5001 + 700001);
  dst.replace(5001, 700001, src.substr(12345, 700001));
  EXPECT_TRUE(t.ReadFh(dfh, d) == dst);
  // Past the destination's end: a hole, then the bytes.
  const uint64_t at = dst.size() + 10000;
  EXPECT_EQ(MUST(fs().CloneRange(sfh, 3, dfh, at, 5000)), 5000u);
  dst.resize(at, '\0');
  dst += src.substr(3, 5000);
  // Past the source's end: short, then nothing.
  EXPECT_EQ(MUST(fs().CloneRange(sfh, src.size() - 100, dfh, 7, 1000)), 100u);
  dst.replace(7, 100, src.substr(src.size() - 100));
  EXPECT_EQ(MUST(fs().CloneRange(sfh, src.size(), dfh, 0, 1000)), 0u);
  EXPECT_TRUE(t.ReadFh(dfh, d) == dst);
  EXPECT_OK(fs().Release(sfh));
  EXPECT_OK(fs().Release(dfh));
  EXPECT_TRUE(t.ReadAll(d) == dst);
  EXPECT_TRUE(t.ReadAll(s) == src);
  t.Reopen();
  EXPECT_TRUE(t.ReadAll(d) == dst);
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, CloneRangeWithinOneFile) {
  std::string data = RandomBytes(256 * kKiB, 16);
  uint64_t f = t.WriteFile(kRootIno, "f", data);
  FileHandle a = MUST(fs().Open(f, O_RDWR));
  FileHandle b = MUST(fs().Open(f, O_RDWR));
  // Same inode on both sides takes the inode's lock once; a second take would hang.
  auto fut = std::async(std::launch::async,
                        [&] { return fs().CloneRange(a, 0, b, 128 * kKiB, 64 * kKiB + 3); });
  if (fut.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    std::fprintf(stderr, "CloneRange within one file hangs (deadlock?)\n");
    std::abort();
  }
  EXPECT_EQ(MUST(fut.get()), 64 * kKiB + 3);
  data.replace(128 * kKiB, 64 * kKiB + 3, data.substr(0, 64 * kKiB + 3));
  EXPECT_OK(fs().Release(a));
  EXPECT_OK(fs().Release(b));
  EXPECT_TRUE(t.ReadAll(f) == data);
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);
}

TEST_F(FilesystemTest, FsyncAndBadHandles) {
  auto [a, fh] = MUST(fs().Create(kRootIno, "f", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh, 0, RandomBytes(40 * kKiB, 17));
  EXPECT_OK(fs().Fsync(fh, false));
  EXPECT_GT(t.Check().extents, 0u) << "fsync commits the data";
  EXPECT_OK(fs().Fsync(fh, true));
  EXPECT_OK(fs().Flush(fh));
  EXPECT_OK(fs().Release(fh));
  char buf[4];
  EXPECT_CODE(fs().Read(fh, 0, 4, buf), Code::kBadHandle);
  EXPECT_CODE(fs().Write(fh, 0, "x", 1), Code::kBadHandle);
  EXPECT_CODE(fs().Fsync(fh, false), Code::kBadHandle);
  EXPECT_CODE(fs().Release(fh), Code::kBadHandle);
  FileHandle ro = MUST(fs().Open(a.ino, O_RDONLY));
  EXPECT_CODE(fs().Write(ro, 0, "x", 1), Code::kBadHandle);
  EXPECT_OK(fs().Release(ro));
  FileHandle wo = MUST(fs().Open(a.ino, O_WRONLY));
  EXPECT_CODE(fs().Read(wo, 0, 4, buf), Code::kBadHandle);
  EXPECT_OK(fs().Release(wo));
  uint64_t d = t.Mkdir(kRootIno, "d");
  EXPECT_CODE(fs().Open(d, O_RDWR), Code::kIsDirectory);
  EXPECT_CODE(fs().Open(987654, O_RDONLY), Code::kNotFound);
}

TEST_F(FilesystemTest, StatFsIsSane) {
  FsStats s = MUST(fs().StatFs());
  EXPECT_GT(s.block_size, 0u);
  EXPECT_GT(s.blocks, 0u);
  EXPECT_LE(s.blocks_free, s.blocks);
  EXPECT_LE(s.blocks_avail, s.blocks_free);
  if (s.files > 0) {
    EXPECT_LE(s.files_free, s.files);
  }
  EXPECT_EQ(s.name_max, 255u);
}

TEST_F(FilesystemTest, EverythingSurvivesReopen) {
  uint64_t d1 = t.Mkdir(kRootIno, "d1"), d2 = t.Mkdir(d1, "d2", 0700);
  const std::string data = RandomBytes(100 * kKiB, 18);
  uint64_t f = t.WriteFile(d2, "file1", data, 0600);
  MUST(fs().Link(f, d1, "hard"));
  uint64_t l = MUST(fs().Symlink("d1/d2/file1", kRootIno, "l", who())).ino;
  uint64_t empty = t.WriteFile(kRootIno, "empty", "");
  uint64_t fifo = MUST(fs().Mknod(kRootIno, "fifo", S_IFIFO | 0644, 0, who())).ino;
  uint64_t chr = MUST(fs().Mknod(kRootIno, "chr", S_IFCHR | 0600, 0x0103, who())).ino;
  auto [sp, fh] = MUST(fs().Create(d1, "sparse", 0644, O_RDWR | O_CREAT, who()));
  t.WriteAll(fh, 3 * kMiB, "end");
  EXPECT_OK(fs().Release(fh));
  EXPECT_OK(fs().SetXattr(f, "user.k", "v", 0));
  EXPECT_OK(fs().SetXattr(d1, "user.dir", "dv", 0));
  const std::vector<uint64_t> inos = {kRootIno, d1, d2, f, l, empty, fifo, chr, sp.ino};
  std::map<uint64_t, Attr> attrs;
  for (uint64_t i : inos) attrs[i] = Stat(i);
  std::map<uint64_t, std::map<std::string, DirEntry>> lists;
  for (uint64_t i : {kRootIno, d1, d2}) lists[i] = ListMap(i);

  t.Reopen();
  for (uint64_t i : inos) {
    SCOPED_TRACE("ino " + std::to_string(i));
    Attr a = Stat(i), b = attrs[i];
    EXPECT_EQ(a.mode, b.mode);
    EXPECT_EQ(a.nlink, b.nlink);
    EXPECT_EQ(a.uid, b.uid);
    EXPECT_EQ(a.gid, b.gid);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.rdev, b.rdev);
    EXPECT_EQ(a.blocks, b.blocks);
    EXPECT_EQ(a.mtime_ns, b.mtime_ns);
    EXPECT_EQ(a.ctime_ns, b.ctime_ns);
  }
  EXPECT_EQ(Stat(chr).rdev, 0x0103u);
  EXPECT_EQ(Stat(f).nlink, 2u);
  for (uint64_t i : {kRootIno, d1, d2}) {
    auto m = ListMap(i);
    ASSERT_EQ(m.size(), lists[i].size());
    for (auto& [name, e] : m) {
      EXPECT_EQ(e.ino, lists[i][name].ino) << name;
      EXPECT_EQ(e.mode, lists[i][name].mode) << name;
    }
  }
  EXPECT_EQ(DotDot(d2), d1);
  EXPECT_EQ(t.ReadAll(t.InoOf(d1, "hard")), data);
  EXPECT_EQ(t.ReadAll(sp.ino), std::string(3 * kMiB, '\0') + "end");
  EXPECT_EQ(MUST(fs().Readlink(l)), "d1/d2/file1");
  EXPECT_EQ(MUST(fs().GetXattr(f, "user.k")), "v");
  EXPECT_EQ(MUST(fs().GetXattr(d1, "user.dir")), "dv");
  uint64_t fresh = t.WriteFile(kRootIno, "fresh", "n");
  EXPECT_EQ(std::count(inos.begin(), inos.end(), fresh), 0) << "inode number reused";
  auto report = t.Check(true);
  EXPECT_FSCK_OK(report);
}

}  // namespace
}  // namespace snapfs
