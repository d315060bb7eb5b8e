// scripts/install.sh as an operator runs it (staged with DESTDIR): the binary, the
// mount(8) helper link, the man page made from the --help texts, bash completion and
// the systemd unit all land where the README says, and they work.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/util/mount_fixture.h"
#include "tests/util/temp_dir.h"

namespace snapfs::mounttest {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Install, StagedInstallHasEverythingAndItWorks) {
  test::TempDir stage_dir("snapfs-install");  // removed also when an ASSERT returns early
  const std::string stage = stage_dir.path();
  const std::string build = std::filesystem::path(SNAPFS_BINARY).parent_path().string();
  CmdResult r = RunCmd({"env", "DESTDIR=" + stage, "bash",
                        std::string(SNAPFS_SOURCE_DIR) + "/scripts/install.sh", "--build-dir",
                        build},
                       300);
  ASSERT_EQ(r.code, 0) << r.Describe();

  const std::string bin = stage + "/usr/local/bin/snapfs";
  ASSERT_EQ(::access(bin.c_str(), X_OK), 0) << bin;
  CmdResult v = RunCmd({bin, "--version"});
  EXPECT_EQ(v.code, 0) << v.Describe();
  EXPECT_NE(v.out.find("snapfs"), std::string::npos) << v.out;

  // mount -t fuse.snapfs finds /sbin/mount.fuse.snapfs.
  std::error_code ec;
  auto target = std::filesystem::read_symlink(stage + "/sbin/mount.fuse.snapfs", ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(target.string(), "/usr/local/bin/snapfs");

  // The man page holds every verb's help.
  std::string man = Slurp(stage + "/usr/local/share/man/man1/snapfs.1");
  ASSERT_FALSE(man.empty());
  EXPECT_NE(man.find(".TH SNAPFS"), std::string::npos) << man.substr(0, 400);
  for (const char* verb : {"init", "mount", "umount", "export", "prune", "fsck", "gc"}) {
    EXPECT_NE(man.find(std::string(".SS ") + verb), std::string::npos) << verb;
  }
  CmdResult render = RunCmd({"sh", "-c", "MANWIDTH=100 man -l " + stage +
                                             "/usr/local/share/man/man1/snapfs.1 | col -b"});
  EXPECT_EQ(render.code, 0) << render.Describe();
  EXPECT_NE(render.out.find("MOUNTPOINT"), std::string::npos) << render.out.substr(0, 2000);

  // bash completion offers the verbs and a verb's options, read from the program.
  const std::string comp = stage + "/usr/share/bash-completion/completions/snapfs";
  auto complete = [&](const std::string& words, int cword) {
    return RunCmd({"bash", "-c",
                   "PATH=" + stage + "/usr/local/bin:$PATH; source " + comp + "; COMP_WORDS=(" +
                       words + "); COMP_CWORD=" + std::to_string(cword) +
                       "; _snapfs; echo \"${COMPREPLY[*]}\""});
  };
  CmdResult c1 = complete("snapfs mo", 1);
  EXPECT_NE(c1.out.find("mount"), std::string::npos) << c1.Describe();
  CmdResult c2 = complete("snapfs mount --gc", 2);
  EXPECT_NE(c2.out.find("--gc-interval"), std::string::npos) << c2.Describe();

  // The unit runs the installed binary in the foreground.
  std::string unit = Slurp(stage + "/etc/systemd/system/snapfs-mount@.service");
  EXPECT_NE(unit.find("ExecStart=/usr/local/bin/snapfs mount -f"), std::string::npos) << unit;
}

}  // namespace
}  // namespace snapfs::mounttest
