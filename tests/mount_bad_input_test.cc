// Bad input wherever a user or a program reaches snapfs (issue 13, "Faults and bad
// input"):
//   - every CLI verb with missing or extra arguments, unknown options, bad sizes,
//     durations and fractions, a store that does not exist, a foreign folder, and a store
//     whose snapfs.conf is cut off, from a newer snapfs, or not ours: the exit code of the
//     README table and a message on stderr that names the verb;
//   - control-socket requests that are malformed, truncated, huge, not UTF-8, or never
//     sent: an error answer (JSON) and a daemon that keeps serving;
//   - through the mount: names at NAME_MAX and over, paths at PATH_MAX and beyond it
//     (through openat), a 10,000-deep tree, writes at sparse offsets up to 2^63, xattr
//     name and value limits: the errno Linux gives, never a crash.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>

#include <climits>
#include <map>
#include <random>
#include <set>

#include "tests/util/flink_sim.h"

namespace snapfs::mounttest {
namespace {

class BadInput : public MountFixture {
 protected:
  // The daemon is alive and answers a CLI verb through its socket.
  void ExpectServing(const std::string& after) {
    ASSERT_FALSE(ProcessGone(daemon_pid())) << "the daemon died after " << after << DaemonLog();
    CmdResult r = Snapfs({"stats", mnt()});
    EXPECT_EQ(r.code, 0) << "after " << after << ":\n" << r.Describe();
  }

  // A second store in tmp()/NAME whose snapfs.conf is replaced by `conf` (if given).
  std::string StoreWithConfig(const std::string& name, const std::optional<std::string>& conf) {
    std::string dir = tmp() + "/" + name;
    CmdResult r = Snapfs({"init", dir});
    EXPECT_EQ(r.code, 0) << r.Describe();
    if (conf) {
      EXPECT_EQ(WriteFile(dir + "/snapfs.conf", *conf), 0);
    }
    return dir;
  }
};

// Random bytes without a '=' (so no line of it looks like "key = value").
std::string Garbage() {
  std::string g = RandomBytes(300, 5);
  std::replace(g.begin(), g.end(), '=', '-');
  return g;
}

// Sends `data` on a fresh connection to the control socket, then (with `shut`) closes
// the sending side; returns what came back before EOF. A send the daemon cut short is
// not an error (it reads at most 1 MiB of a request).
std::string RawControl(const std::string& store, std::string_view data, bool shut = true) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  UniqueFd c(fd);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string path = store + "/control.sock";
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << ErrnoName(errno);
    return "";
  }
  timeval tv{30, 0};
  ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // (a daemon that stopped
                                                                   // reading hung us here)
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(c.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (shut) ::shutdown(c.get(), SHUT_WR);
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::recv(c.get(), buf, sizeof buf, 0)) > 0;) out.append(buf, n);
  return out;
}

TEST_F(BadInput, EveryVerbRefusesBadArgumentsWithTheDocumentedExitCode) {
  const std::string plain = tmp() + "/plain", nostore = tmp() + "/nostore";
  const std::string other_mnt = tmp() + "/other-mnt", dest = tmp() + "/dest";
  ASSERT_EQ(::mkdir(plain.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(other_mnt.c_str(), 0755), 0);
  std::string good = StoreWithConfig("good", std::nullopt);
  std::string conf = ReadFile(good + "/snapfs.conf");
  ASSERT_NE(conf.find("format_version = 1"), std::string::npos) << conf;
  std::string future = conf;
  future.replace(future.find("format_version = 1"), 18, "format_version = 99");
  struct BadStore {
    std::string dir;
    int code;
    std::string needle;
  };
  std::vector<BadStore> stores = {
      {nostore, 5, "does not exist|no such file|neither inside"},
      {plain, 5, "not a snapfs store|neither"},
      // Cut off in the middle of its magic line, and before it (only the comment left).
      {StoreWithConfig("cut", conf.substr(0, conf.find("magic") + 4)), 5, "not a snapfs store"},
      {StoreWithConfig("cut-early", conf.substr(0, conf.find("magic"))), 5, "not a snapfs store"},
      {StoreWithConfig("empty", ""), 5, "not a snapfs store"},
      {StoreWithConfig("notours", "[core]\nname = value\n"), 5, "not a snapfs store"},
      {StoreWithConfig("future", future), 1, "newer snapfs"},
      {StoreWithConfig("newkey", conf + "frobnicate = 1\n"), 1, "unknown config key"},
      {StoreWithConfig("garbage", Garbage()), 5, "not a snapfs store"},
      {StoreWithConfig("cut-late", conf.substr(0, conf.find("chunk_avg") + 5)), 1, "snapfs.conf"},
      {StoreWithConfig("nover", conf.substr(0, conf.find("format_version"))), 1, "format_version"},
  };
  // Verbs that take a store (or a path in one): how each names it.
  auto store_args = [&](const std::string& s) {
    return std::vector<std::vector<std::string>>{{"status", s},
                                                 {"stats", s},
                                                 {"fsck", s, "--verify"},
                                                 {"gc", s},
                                                 {"ls", s},
                                                 {"du", s + "/job"},
                                                 {"why", s + "/job/x"},
                                                 {"orphans", s},
                                                 {"prune", s + "/job", "--keep-last", "1"},
                                                 {"rm", s + "/job/chk-1"},
                                                 {"export", s + "/job/chk-1", dest},
                                                 {"mount", s, other_mnt}};
  };
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string needle;
  };
  std::vector<Case> cases;
  const std::vector<std::string> verbs = {"init",   "mount", "umount", "status", "ls",
                                          "du",     "rm",    "prune",  "why",    "orphans",
                                          "export", "stats", "fsck",   "gc",     "version"};
  for (const auto& v : verbs) {
    if (v != "ls" && v != "version") cases.push_back({{v}, 2, "missing argument"});
    cases.push_back({{v, "--bogus"}, 2, "unrecognised option '--bogus'"});
    if (v != "init" && v != "mount" && v != "umount") {
      cases.push_back({{v, "--json", "--json"}, 2, "more than once"});
    }
  }
  for (auto args : store_args(good)) {
    if (args[0] == "export") continue;  // takes two; "a b c" below
    args.push_back("extra-argument");
    if (args[0] == "prune" || args[0] == "rm") continue;  // take any number of paths
    cases.push_back({args, 2, "too many arguments"});
  }
  cases.push_back({{"export", "a", "b", "c"}, 2, "too many arguments"});
  cases.push_back({{"init", tmp() + "/x", "y"}, 2, "too many arguments"});
  cases.push_back({{"umount", mnt(), "y"}, 2, "too many arguments"});
  cases.push_back({{"version", "y"}, 2, "too many arguments"});
  // Sizes, durations, fractions, counts, names.
  const std::string fresh = tmp() + "/never-made";
  for (const auto& [args, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"init", fresh, "--chunk-avg", "1T"}, "1T"},
           {{"init", fresh, "--chunk-avg", "banana"}, "banana"},
           {{"init", fresh, "--chunk-min", "0"}, "min_size"},
           {{"init", fresh, "--chunk-min", "64K", "--chunk-max", "16K"}, "min_size"},
           {{"init", fresh, "--chunk-max", "99999999999999999999"}, "9999"},
           {{"init", fresh, "--markers", ""}, "--markers"},
           {{"init", fresh, "--markers", "_metadata,"}, "--markers"},
           {{"init", fresh, "--markers", "a/b"}, "--markers"},
           {{"init", fresh, "--markers", "_metadata\ndata = s3://x"}, "--markers"},
           {{"init", fresh, "--s3-region", "eu"}, "--data"},
           {{"mount", good, other_mnt, "--cache-size", "4Q"}, "4Q"},
           {{"mount", good, other_mnt, "--threads", "0"}, "--threads"},
           {{"mount", good, other_mnt, "--gc-interval", "-1"}, "--gc-interval"},
           {{"mount", good, other_mnt, "--session-timeout", "-1"}, "--session-timeout"},
           {{"mount", good, other_mnt, "--entry-timeout", "soon"}, "entry-timeout"},
           {{"mount", good, other_mnt, "--metrics", "nonsense"}, "nonsense"},
           {{"mount", good, other_mnt, "--log-level", "loud"}, "loud"},
           {{"mount", good, other_mnt, "--db-connections", "0"}, "--db-connections"},
           {{"gc", good, "--max-unused", "150%"}, "--max-unused"},
           {{"gc", good, "--max-unused", "abc"}, "--max-unused"},
           {{"gc", good, "--rewrite-below", "2"}, "--rewrite-below"},
           {{"fsck", good, "--verify", "--subset", "1.5G"}, "--subset"},
           {{"fsck", good, "--verify", "--subset"}, "--subset"},
           {{"prune", good + "/job", "--keep-last", "-1"}, "--keep-last"},
           {{"prune", good + "/job", "--keep-last", "abc"}, "keep-last"},
           {{"prune", good + "/job", "--keep-within", "5x"}, "5x"},
           {{"orphans", good, "--older-than", "banana"}, "banana"},
           {{"orphans", good, "--older-than", "-1h"}, "duration"},
           {{"export", good + "/job/chk-1", dest, "--relocate", "--rewrite-prefix", "a=b"},
            "--relocate"},
       }) {
    cases.push_back({args, 2, needle});
  }
  // Missing, foreign and damaged stores: every verb that opens one.
  for (const auto& s : stores) {
    for (const auto& args : store_args(s.dir)) cases.push_back({args, s.code, s.needle});
  }

  int checked = 0;
  for (const auto& c : cases) {
    CmdResult r = Snapfs(c.args, 60);
    std::string what = ShellJoin(c.args);
    EXPECT_EQ(r.code, c.code) << what << "\n" << r.Describe();
    EXPECT_NE(r.err.find("snapfs " + c.args[0]), std::string::npos)
        << what << ": the message should name the verb\n"
        << r.Describe();
    bool said = false;  // needle: alternatives separated by '|'
    for (size_t from = 0, bar; !said && from <= c.needle.size(); from = bar + 1) {
      bar = std::min(c.needle.find('|', from), c.needle.size());
      said = r.err.find(c.needle.substr(from, bar - from)) != std::string::npos;
    }
    EXPECT_TRUE(said) << what << ": the message should say " << c.needle << "\n" << r.Describe();
    checked++;
  }
  // With --json the same codes, and the error as JSON on stdout.
  for (const auto& s : stores) {
    CmdResult r = Snapfs({"stats", s.dir, "--json"});
    EXPECT_EQ(r.code, s.code) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.value("code", 0) == s.code) << r.Describe();
    checked++;
  }
  std::cout << checked << " bad command lines, each with its exit code and message" << std::endl;
  EXPECT_FALSE(IsMounted(other_mnt)) << "a refused mount mounted something";
  EXPECT_FALSE(Exists(fresh)) << "a refused init created the store";
  EXPECT_FALSE(Exists(dest)) << "a refused export wrote something";
  ExpectServing("the bad command lines");
}

TEST_F(BadInput, ControlSocketAnswersBadRequestsAndKeepsServing) {
  ASSERT_EQ(::mkdir(Path("job").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(Path("job/chk-1").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(Path("job/chk-1/_metadata"), "no references", true), 0);
  const std::string huge_path = "snap-ls {\"path\":\"" + std::string(3 << 20, 'a') + "\"}\n";
  const std::vector<std::pair<std::string, std::string>> requests = {
      {"empty line", "\n"},
      {"unknown verb", "bogus\n"},
      {"not UTF-8", "\xff\xfe garbage\n"},
      {"NUL bytes", std::string("stats\0\0\0x\n", 10)},
      {"gc with a bad number", "gc 0.5 max-unused=abc\n"},
      {"fsck with a bad subset", "fsck --verify banana\n"},
      {"fsck with an overflowing subset", "fsck --verify 1e999\n"},
      {"JSON cut off", "snap-ls {\"path\":\n"},
      {"JSON not an object", "snap-ls [1,2]\n"},
      {"JSON wrong type", "snap-ls {\"path\":5}\n"},
      {"JSON not UTF-8", "snap-why {\"path\":\"\xff\"}\n"},
      {"path outside the mount", "snap-ls {\"path\":\"../../etc\"}\n"},
      {"paths not a list", "snap-rm {\"paths\":\"job/chk-1\",\"dry_run\":false}\n"},
      {"paths not strings", "snap-rm {\"paths\":[1,{}],\"dry_run\":false}\n"},
      {"negative count", "snap-prune {\"paths\":[\"job\"],\"keep_last\":-3,\"dry_run\":true}\n"},
      {"huge count", "snap-prune {\"paths\":[\"job\"],\"keep_last\":1e30,\"dry_run\":true}\n"},
      {"files not a list", "snap-unlink {\"files\":\"x\"}\n"},
      {"file entries wrong", "snap-unlink {\"files\":[{\"path\":1}],\"older_than_ns\":0}\n"},
      {"age a string", "snap-orphans {\"path\":\"\",\"older_than_ns\":\"x\"}\n"},
      {"deeply nested JSON", "snap-ls " + std::string(100000, '[') + "\n"},
      {"3 MiB path", huge_path},
  };
  int answered = 0;
  for (const auto& [what, req] : requests) {
    std::string a = RawControl(store(), req);
    auto j = nlohmann::json::parse(a, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j.contains("code"))
        << what << ": expected an error answer, got: " << a.substr(0, 300);
    if (j.is_object()) answered++;
    ASSERT_NO_FATAL_FAILURE(ExpectServing(what));
  }
  // A request cut off before its newline (the client closed its side), 5 MiB without
  // one (the daemon reads 1 MiB and answers), a client that connects and says nothing,
  // one that goes away at once: no answer is owed, but the daemon must serve on.
  EXPECT_NE(RawControl(store(), "snap-ls {\"pa").find("error"), std::string::npos);
  {
    // Before, the daemon echoed the 1 MiB it read in its error while this client still
    // sent: both blocked in send(), and the control socket was dead for good.
    std::string a = RawControl(store(), std::string(5 << 20, 'x'));
    EXPECT_NE(a.find("longer than 1 MiB"), std::string::npos) << a.substr(0, 300);
  }
  {
    std::string a = RawControl(store(), "", /*shut=*/true);
    EXPECT_NE(a.find("unknown control request"), std::string::npos) << a;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectServing("cut-off and oversized requests"));
  // The snapshot is untouched by all of it.
  nlohmann::json ls = SnapfsJsonObject({"ls", mnt()});
  EXPECT_EQ(ls["snapshots"].size(), 1u) << ls.dump(2);
  std::cout << requests.size() << " bad requests, " << answered << " answered with an error"
            << std::endl;
}

// File names are bytes: the verbs that print them (as JSON too) must not fail or crash on
// one that is not UTF-8.
TEST_F(BadInput, NamesThatAreNotUtf8) {
  ContentMap content;
  FlinkJob job(mnt(), "job", 4, &content);
  ASSERT_EQ(job.Init(), "");
  const std::string bad = "bad-\xff\xfe-name";
  ASSERT_EQ(WriteFile(job.Path("shared/" + bad), "bytes", true), 0);
  ASSERT_EQ(job.TakeCheckpoint(1, 10 * kKiB), "");
  ASSERT_EQ(WriteFile(job.Path(job.retained().back().name + "/" + bad), "own", true), 0);
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"ls", mnt()},
                                             {"ls", mnt(), "--hidden"},
                                             {"du", job.Dir()},
                                             {"orphans", mnt(), "--older-than", "0"},
                                             {"fsck", mnt(), "--verify"}}) {
    CmdResult h = Snapfs(args);
    EXPECT_EQ(h.code, 0) << ShellJoin(args) << "\n" << h.Describe();
    args.push_back("--json");
    CmdResult j = Snapfs(args);
    EXPECT_LT(j.code, 2) << ShellJoin(args) << "\n" << j.Describe();
    EXPECT_TRUE(nlohmann::json::parse(j.out, nullptr, false).is_object()) << ShellJoin(args) << "\n"
                                                                          << j.Describe();
  }
  CmdResult o = Snapfs({"orphans", mnt(), "--older-than", "0", "--json"});
  EXPECT_NE(o.out.find("bad-\xEF\xBF\xBD\xEF\xBF\xBD-name"), std::string::npos) << o.out;
  // A request naming such a file cannot carry its bytes (JSON is UTF-8): it names
  // another file, which does not exist. Finding 11.
  CmdResult w = Snapfs({"why", job.Path("shared/" + bad)});
  EXPECT_EQ(w.code, 5) << w.Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectServing("names that are not UTF-8"));
}

TEST_F(BadInput, NameMaxAndPathMax) {
  const std::string n255(NAME_MAX, 'n'), n256(NAME_MAX + 1, 'n');
  ASSERT_EQ(WriteFile(Path(n255), "at NAME_MAX"), 0);
  EXPECT_EQ(ReadFile(Path(n255)), "at NAME_MAX");
  auto names = ListDir(mnt());
  EXPECT_NE(std::find(names.begin(), names.end(), n255), names.end());
  EXPECT_ERRNO(::open(Path(n256).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  EXPECT_ERRNO(::mkdir(Path(n256).c_str(), 0755), ENAMETOOLONG);
  EXPECT_ERRNO(::rename(Path(n255).c_str(), Path(n256).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(::symlink("x", Path(n256).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(::link(Path(n255).c_str(), Path(n256).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(::setxattr(Path(n255).c_str(), ("user." + n256).c_str(), "v", 1, 0), ERANGE);
  const std::string target(PATH_MAX - 1, 't');
  ASSERT_SYS(::symlink(target.c_str(), Path("long-link").c_str()));
  char buf[PATH_MAX + 1];
  EXPECT_EQ(::readlink(Path("long-link").c_str(), buf, sizeof buf), PATH_MAX - 1);
  EXPECT_ERRNO(::symlink((target + "t").c_str(), Path("too-long-link").c_str()), ENAMETOOLONG);

  // Folders of 250-byte names down to a path of exactly PATH_MAX - 1 bytes.
  std::string dir = mnt();
  const std::string seg(250, 'd');
  while (dir.size() + 1 + seg.size() + 1 + 10 < PATH_MAX) {
    dir += "/" + seg;
    ASSERT_SYS(::mkdir(dir.c_str(), 0755));
  }
  const std::string last(PATH_MAX - 1 - dir.size() - 1, 'f');
  const std::string at_max = dir + "/" + last;
  ASSERT_EQ(at_max.size(), static_cast<size_t>(PATH_MAX - 1));
  ASSERT_EQ(WriteFile(at_max, "at PATH_MAX"), 0) << at_max.size();
  EXPECT_EQ(ReadFile(at_max), "at PATH_MAX");
  EXPECT_ERRNO(::open((at_max + "x").c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  // Beyond PATH_MAX through openat: the filesystem has no limit on a whole path.
  UniqueFd d(::open(dir.c_str(), O_DIRECTORY | O_RDONLY));
  ASSERT_TRUE(d.ok()) << ErrnoName(errno);
  for (int i = 0; i < 20; i++) {
    ASSERT_SYS(::mkdirat(d.get(), seg.c_str(), 0755));
    d = UniqueFd(::openat(d.get(), seg.c_str(), O_DIRECTORY | O_RDONLY));
    ASSERT_TRUE(d.ok()) << i << ": " << ErrnoName(errno);
  }
  UniqueFd f(::openat(d.get(), "deep", O_CREAT | O_WRONLY, 0644));
  ASSERT_TRUE(f.ok()) << ErrnoName(errno);
  ASSERT_EQ(WriteAllFd(f.get(), "beyond PATH_MAX"), 0);
  ASSERT_SYS(::fsync(f.get()));
  f.Reset();
  d.Reset();
  CmdResult o = Snapfs({"orphans", mnt(), "--older-than", "0", "--json"});
  EXPECT_EQ(o.code, 0) << o.Describe();
  EXPECT_NE(o.out.find("/deep\""), std::string::npos)
      << "orphans should list the file beyond PATH_MAX\n"
      << o.out.substr(0, 500);
  ASSERT_NO_FATAL_FAILURE(ExpectServing("paths beyond PATH_MAX"));
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(ReadFile(at_max), "at PATH_MAX");
  CmdResult fsck = Snapfs({"fsck", mnt()});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

// A snapshot in the folder `dir`: chk-1 with a 64 KiB file and a _metadata naming it,
// committed by its close. Returns close()'s result for the marker (0 or the errno).
int MakeSnapshotAt(int dir) {
  if (::mkdirat(dir, "chk-1", 0755) != 0) return errno;
  UniqueFd c(::openat(dir, "chk-1", O_DIRECTORY | O_RDONLY));
  if (!c.ok()) return errno;
  for (const char* name : {"state", "_metadata"}) {
    UniqueFd f(::openat(c.get(), name, O_CREAT | O_WRONLY, 0644));
    if (!f.ok()) return errno;
    int e = WriteAllFd(f.get(), name[0] == 's' ? RandomBytes(64 * kKiB, 3) : "refs: state");
    if (e != 0) return e;
    if (::fsync(f.get()) != 0 || f.Close() != 0) return errno;
  }
  return 0;
}

// A chain of `depth` folders "d" under MNT/deep; returns the deepest one open (and the
// one at `snap_at` gets a snapshot, if > 0).
UniqueFd MakeDeepTree(const std::string& top, int depth, int snap_at = 0) {
  EXPECT_EQ(::mkdir(top.c_str(), 0755), 0);
  UniqueFd d(::open(top.c_str(), O_DIRECTORY | O_RDONLY));
  for (int i = 1; i <= depth && d.ok(); i++) {
    EXPECT_EQ(::mkdirat(d.get(), "d", 0755), 0) << "depth " << i << ": " << ErrnoName(errno);
    d = UniqueFd(::openat(d.get(), "d", O_DIRECTORY | O_RDONLY));
    EXPECT_TRUE(d.ok()) << "depth " << i << ": " << ErrnoName(errno);
    if (i == snap_at) {
      int e = MakeSnapshotAt(d.get());
      EXPECT_EQ(e, 0) << "snapshot at depth " << i << ": " << ErrnoName(e);
    }
  }
  return d;
}

// 10,000 nested folders (the whole path far beyond PATH_MAX), made, walked, used by the
// snapshot verbs and removed one level at a time with *at() calls. A snapshot sits at
// depth 3,000 (about 6,000 bytes of path).
TEST_F(BadInput, TenThousandDeepTree) {
  constexpr int kDepth = 10000, kSnapAt = 3000;
  auto t0 = std::chrono::steady_clock::now();
  auto lap = [&](const char* what) {
    std::cout << what << " "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s" << std::endl;
  };
  UniqueFd d = MakeDeepTree(Path("deep"), kDepth, kSnapAt);

  ASSERT_TRUE(d.ok());
  ASSERT_FALSE(HasFailure());
  {
    UniqueFd f(::openat(d.get(), "bottom", O_CREAT | O_WRONLY, 0644));
    ASSERT_EQ(WriteAllFd(f.get(), "at depth 10,000"), 0);
    ASSERT_SYS(::fsync(f.get()));
  }
  d.Reset();
  ASSERT_NO_FATAL_FAILURE(Remount());  // cold caches: every level is looked up again

  d = UniqueFd(::open(Path("deep").c_str(), O_DIRECTORY | O_RDONLY));
  for (int i = 1; i <= kDepth; i++) {
    struct stat st;
    ASSERT_SYS(::fstatat(d.get(), "d", &st, 0)) << " at depth " << i;
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    d = UniqueFd(::openat(d.get(), "d", O_DIRECTORY | O_RDONLY));
    ASSERT_TRUE(d.ok()) << "depth " << i << ": " << ErrnoName(errno);
  }
  {
    UniqueFd f(::openat(d.get(), "bottom", O_RDONLY));
    EXPECT_EQ(ReadFd(f.get()), "at depth 10,000");
  }
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"ls", mnt(), "--json"},
                                             {"du", mnt(), "--json"},
                                             {"orphans", mnt(), "--older-than", "0", "--json"},
                                             {"fsck", mnt(), "--verify", "--json"},
                                             {"gc", mnt(), "--json"}}) {
    CmdResult r = Snapfs(args);
    EXPECT_EQ(r.code, 0) << ShellJoin(args) << "\n" << r.Describe().substr(0, 2000);
    ASSERT_NO_FATAL_FAILURE(ExpectServing(ShellJoin(args)));
  }
  nlohmann::json ls = SnapfsJsonObject({"ls", mnt()});
  ASSERT_EQ(ls["snapshots"].size(), 1u);
  EXPECT_GT(ls["snapshots"][0].value("path", "").size(), 2u * kSnapAt);
  // Remove it all, bottom up.
  lap("made, walked and used by the verbs");
  double rm_s = 0;
  ASSERT_SYS(::unlinkat(d.get(), "bottom", 0));
  for (int level = kDepth; level > 0; level--) {
    if (level == kSnapAt) {
      for (const char* n : {"chk-1/_metadata", "chk-1/state"})
        ASSERT_SYS(::unlinkat(d.get(), n, 0));
      ASSERT_SYS(::unlinkat(d.get(), "chk-1", AT_REMOVEDIR));
    }
    UniqueFd up(::openat(d.get(), "..", O_DIRECTORY | O_RDONLY));
    ASSERT_TRUE(up.ok()) << ErrnoName(errno);
    d = std::move(up);
    auto b = std::chrono::steady_clock::now();
    ASSERT_SYS(::unlinkat(d.get(), "d", AT_REMOVEDIR)) << " at depth " << level;
    rm_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - b).count();
  }
  d.Reset();
  lap("removed");
  // Each rmdir used to seek through the tombstones of every folder removed before it:
  // 10,000 of them took 33-55 s (3-5 ms each, growing with the depth); now about 1 s.
  std::cout << kDepth << " rmdirs in " << rm_s << " s" << std::endl;
  EXPECT_LT(rm_s, 15.0) << "rmdir is linear in the depth again?";
  EXPECT_TRUE(ListDir(Path("deep")).empty());
  EXPECT_EQ(SnapfsJsonObject({"ls", mnt()})["snapshots"].size(), 0u);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult f = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(f.code, 0) << f.Describe();
}

// Finding 10 (docs/reliability.md): the namespace walks up at most 4,096 folders (loop
// protection), so a marker committed deeper is not a snapshot and its close fails with
// ELOOP; a folder moved within such a tree fails the same way.
TEST_F(BadInput, DISABLED_MarkerDeeperThan4096FoldersMakesASnapshot) {
  UniqueFd d = MakeDeepTree(Path("deep"), 5000);
  ASSERT_TRUE(d.ok());
  int e = MakeSnapshotAt(d.get());
  EXPECT_EQ(e, 0) << ErrnoName(e);
  EXPECT_EQ(SnapfsJsonObject({"ls", mnt()})["snapshots"].size(), 1u);
  ASSERT_SYS(::mkdirat(d.get(), "a", 0755));
  ASSERT_SYS(::mkdirat(d.get(), "b", 0755));
  EXPECT_SYS(::renameat(d.get(), "a", d.get(), "b/a"));
}

// Whole snapshot commits of hostile markers through the mount (issue 13: the libFuzzer
// target runs the marker scan alone; SnapshotPins.MutatedMarkersCommitAndPinOnlyFiles
// TheyName does this in-process). Flink-shaped `_metadata` bytes naming real shared files,
// missing ones and escapes, then mutated at random (bytes flipped, cut short, junk in,
// pieces repeated, references spliced in anywhere), committed by rename after fsync or
// written in place. Whatever the bytes: the commit succeeds and the marker reads back
// as written, the daemon serves, a file is pinned only by snapshots whose marker names
// it (`snapfs why`), `snapfs ls` measures each snapshot as `snapfs du` of it alone does,
// retention by `snapfs rm` loses no other file, and the store is fsck --verify clean.
// SNAPFS_MARKER_FUZZ_ROUNDS sets the rounds (default 30).
TEST_F(BadInput, MutatedMarkersCommittedThroughTheMount) {
  const char* env = std::getenv("SNAPFS_MARKER_FUZZ_ROUNDS");
  const int rounds = env && *env ? std::atoi(env) : 30;
  std::mt19937_64 rng(20261207);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  ASSERT_SYS(::mkdir(Path("job").c_str(), 0755));
  ASSERT_SYS(::mkdir(Path("job/shared").c_str(), 0755));
  std::map<std::string, std::string> shared;  // name -> bytes, as written
  auto upload = [&] {
    std::string name = RandomUuid(rng);
    std::string data = RandomBytes(2048 + pick(40000), rng());
    EXPECT_EQ(WriteFile(Path("job/shared/" + name), data, /*fsync_it=*/true), 0);
    shared[name] = data;
  };
  for (int i = 0; i < 6; i++) upload();
  std::map<std::string, std::string> markers;  // "job/chk-N" -> its bytes
  std::vector<std::string> live;                // snapshots, oldest first
  size_t pins_seen = 0;
  for (int round = 1; round <= rounds; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string chk = "job/chk-" + std::to_string(round);
    ASSERT_SYS(::mkdir(Path(chk).c_str(), 0755));
    ASSERT_EQ(WriteFile(Path(chk + "/own"), RandomBytes(1 + pick(20000), rng()), true), 0);
    std::vector<std::string> names;
    for (const auto& [n, d] : shared) names.push_back(n);
    JavaDataOutput o;
    o.WriteInt(static_cast<int32_t>(kMetadataMagic));
    o.WriteInt(3);
    o.WriteLong(round);
    o.WriteInt(static_cast<int32_t>(pick(300)));
    o.Write(RandomBytes(pick(300), rng()));  // inline state
    for (size_t k = pick(5); k > 0; k--) o.WriteUTF("file:" + mnt() + "/job/shared/" + names[pick(names.size())]);
    o.WriteUTF("own");
    if (pick(2)) o.WriteUTF("file:" + mnt() + "/job/shared/" + RandomUuid(rng));  // missing
    if (pick(3) == 0) o.WriteUTF("file:" + mnt() + "/job/../../etc/" + names[0]);
    std::string b = o.bytes();
    for (size_t k = pick(6); k > 0 && !b.empty(); k--) {
      switch (pick(5)) {
        case 0:
          b[pick(b.size())] ^= static_cast<char>(1 + pick(255));
          break;
        case 1:
          b.resize(pick(b.size() + 1));
          break;
        case 2:
          b.insert(pick(b.size() + 1), RandomBytes(1 + pick(64), rng()));
          break;
        case 3: {
          size_t from = pick(b.size()), len = std::min<size_t>(1 + pick(200), b.size() - from);
          b.insert(pick(b.size() + 1), b.substr(from, len));
          break;
        }
        default: {
          std::string ref = "file:" + mnt() + "/job/shared/" + names[pick(names.size())];
          JavaDataOutput r;
          r.WriteUTF(pick(4) == 0 ? ref.substr(0, pick(ref.size() + 1)) : ref);
          b.insert(pick(b.size() + 1), r.bytes());
          break;
        }
      }
    }
    if (pick(2)) {
      std::string tmp = Path(chk + "/._metadata.inprogress." + RandomUuid(rng));
      ASSERT_EQ(WriteFile(tmp, b, /*fsync_it=*/true), 0);
      ASSERT_SYS(::rename(tmp.c_str(), Path(chk + "/_metadata").c_str()));
    } else {
      ASSERT_EQ(WriteFile(Path(chk + "/_metadata"), b), 0);  // in place: its close commits
    }
    markers[chk] = b;
    live.push_back(chk);
    EXPECT_TRUE(ReadFile(Path(chk + "/_metadata")) == b) << "the marker reads back as written";
    if (round % 5 == 0 || round == rounds) {
      ASSERT_NO_FATAL_FAILURE(ExpectServing("round " + std::to_string(round)));
      // Pins: every snapshot pinning a shared file has a marker naming it.
      for (const auto& [name, data] : shared) {
        nlohmann::json w = SnapfsJsonObject({"why", Path("job/shared/" + name)});
        for (const auto& p : w["pinned_by"]) {
          std::string snap = p["snapshot"]["path"].get<std::string>();
          ASSERT_TRUE(markers.count(snap)) << "pinned by " << snap << ", not a snapshot made here";
          EXPECT_NE(markers[snap].find(name), std::string::npos)
              << snap << " pins " << name << ", which its marker's bytes do not name";
          pins_seen++;
        }
      }
      // Each snapshot measured in `snapfs ls` (one pass over all) as measuring it alone
      // does (`snapfs rm --dry-run`, MeasureSnapshots), and `du`'s total as the dry run
      // of removing all of them.
      nlohmann::json ls = SnapfsJsonObject({"ls", Path("job")});
      ASSERT_EQ(ls["snapshots"].size(), live.size()) << ls.dump(1);
      std::vector<std::string> all_rm = {"rm", "--dry-run"};
      for (const auto& s : ls["snapshots"]) {
        std::string path = Path(s["path"].get<std::string>());
        nlohmann::json dry = SnapfsJsonObject({"rm", "--dry-run", path});
        EXPECT_EQ(dry["report"]["bytes_freed"], s["freed_if_deleted"]) << s.dump() << dry.dump();
        all_rm.push_back(path);
      }
      nlohmann::json du = SnapfsJsonObject({"du", Path("job")});
      nlohmann::json dry_all = SnapfsJsonObject(all_rm);
      EXPECT_EQ(du["total"]["freed_if_deleted"], dry_all["report"]["bytes_freed"]) << du.dump() << dry_all.dump();
      // Retention: the oldest go. `snapfs rm` also deletes the shared files that only
      // the removed snapshots pinned (as Flink's subsumption would); every other file
      // keeps its bytes.
      std::string removed_bytes;
      while (live.size() > 6) {
        CmdResult rm = Snapfs({"rm", Path(live.front())});
        ASSERT_EQ(rm.code, 0) << rm.Describe();
        removed_bytes += markers[live.front()];
        live.erase(live.begin());
      }
      for (auto it = shared.begin(); it != shared.end();) {
        int err = 0;
        std::string got = ReadFile(Path("job/shared/" + it->first), &err);
        if (err == ENOENT) {
          EXPECT_NE(removed_bytes.find(it->first), std::string::npos)
              << it->first << " went with snapshots that did not name it";
          it = shared.erase(it);
          continue;
        }
        EXPECT_TRUE(got == it->second) << it->first;
        ++it;
      }
      // One deleted as Flink's subsumption does (hidden while pinned), new ones uploaded.
      if (!shared.empty()) {
        auto gone = std::next(shared.begin(), static_cast<long>(pick(shared.size())));
        ASSERT_SYS(::unlink(Path("job/shared/" + gone->first).c_str()));
        shared.erase(gone);
      }
      while (shared.size() < 6) upload();
    }
  }
  std::cout << rounds << " mutated markers committed through the mount, " << pins_seen
            << " pins checked" << std::endl;
  EXPECT_GT(pins_seen, 0u) << "no marker pinned anything: the mutations are too harsh";
  std::string last_bytes;
  for (const auto& snap : live) {
    CmdResult rm = Snapfs({"rm", Path(snap)});
    EXPECT_EQ(rm.code, 0) << rm.Describe();
    last_bytes += markers[snap];
  }
  EXPECT_EQ(SnapfsJsonObject({"ls", mnt()})["snapshots"].size(), 0u);
  for (auto it = shared.begin(); it != shared.end();) {
    bool gone = !Exists(Path("job/shared/" + it->first));
    EXPECT_TRUE(!gone || last_bytes.find(it->first) != std::string::npos) << it->first;
    it = gone ? shared.erase(it) : std::next(it);
  }
  EXPECT_FALSE(shared.empty()) << "every shared file went: the check below checks nothing";
  ASSERT_EQ(Snapfs({"gc", mnt()}).code, 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  CmdResult f = Snapfs({"fsck", store(), "--verify"});
  EXPECT_EQ(f.code, 0) << f.Describe();
  Mount();
  for (const auto& [name, data] : shared) {
    EXPECT_TRUE(ReadFile(Path("job/shared/" + name)) == data) << name;
  }
}

TEST_F(BadInput, SparseOffsetsUpTo2To63) {
  constexpr off_t kPiB = off_t{1} << 50;  // snapfs's largest file (kMaxFileSize)
  UniqueFd fd(::open(Path("sparse").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  // Inside the limit: a 5-byte file end far out, holes read as zeros.
  const off_t far = kPiB / 2;
  ASSERT_EQ(::pwrite(fd.get(), "hello", 5, far), 5) << ErrnoName(errno);
  ASSERT_SYS(::fsync(fd.get()));
  EXPECT_EQ(PreadAll(fd.get(), 5, far), "hello");
  EXPECT_EQ(PreadAll(fd.get(), 4, far / 2), std::string(4, '\0'));
  // The kernel refuses what no Linux file can hold.
  EXPECT_ERRNO(::pwrite(fd.get(), "x", 1, -1), EINVAL);
  errno = 0;
  ssize_t w = ::pwrite(fd.get(), "x", 1, std::numeric_limits<off_t>::max());
  EXPECT_TRUE(w == -1 && (errno == EINVAL || errno == EFBIG)) << w << " " << ErrnoName(errno);
  EXPECT_ERRNO(::ftruncate(fd.get(), kPiB + 1), EFBIG);
  EXPECT_ERRNO(::ftruncate(fd.get(), std::numeric_limits<off_t>::max()), EFBIG);
  errno = 0;
  int fa = ::fallocate(fd.get(), 0, std::numeric_limits<off_t>::max() - 10, 5);
  EXPECT_TRUE(fa == -1 && (errno == EFBIG || errno == EINVAL || errno == EOPNOTSUPP))
      << ErrnoName(errno);
  struct stat st;
  ASSERT_SYS(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, far + 5);
  ASSERT_SYS(fd.Close());

  // Past snapfs's limit but below Linux's: the kernel's write-back cache takes the write,
  // snapfs refuses it when the cache flushes, so the error comes with fsync or close (as
  // with ENOSPC), never as success. See docs/reliability.md, finding 9.
  for (off_t off : {kPiB, off_t{1} << 62, std::numeric_limits<off_t>::max() - 4096}) {
    UniqueFd g(::open(Path("too-far").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644));
    ASSERT_TRUE(g.ok());
    errno = 0;
    ssize_t n = ::pwrite(g.get(), "hello", 5, off);
    int pe = errno;
    int fs = n == 5 ? ::fsync(g.get()) : 0;
    int fe = errno;
    int cl = g.Close();
    int ce = errno;
    EXPECT_TRUE((n == -1 && (pe == EFBIG || pe == EINVAL)) ||
                (fs == -1 && (fe == EFBIG || fe == EIO)) || (cl == -1 && ce == EFBIG))
        << "a write at " << off << " must fail with EFBIG/EINVAL at the latest at fsync: "
        << "pwrite " << n << " " << ErrnoName(pe) << ", fsync " << fs << " " << ErrnoName(fe);
    ASSERT_NO_FATAL_FAILURE(ExpectServing("a write at " + std::to_string(off)));
  }
  // copy_file_range to a destination offset beyond the limit.
  {
    UniqueFd src(::open(Path("sparse").c_str(), O_RDONLY));
    UniqueFd dst(::open(Path("copy").c_str(), O_CREAT | O_WRONLY, 0644));
    loff_t in = far, out = std::numeric_limits<off_t>::max() - 2;
    errno = 0;
    ssize_t c = ::copy_file_range(src.get(), &in, dst.get(), &out, 5, 0);
    EXPECT_EQ(c, -1);
    EXPECT_TRUE(errno == EFBIG || errno == EINVAL || errno == EXDEV) << ErrnoName(errno);
  }
  ASSERT_NO_FATAL_FAILURE(Remount());
  ASSERT_SYS(::stat(Path("sparse").c_str(), &st));
  EXPECT_EQ(st.st_size, far + 5);
  fd = UniqueFd(::open(Path("sparse").c_str(), O_RDONLY));
  EXPECT_EQ(PreadAll(fd.get(), 5, far), "hello");
  EXPECT_EQ(PreadAll(fd.get(), 4, far - 2), std::string("\0\0he", 4));
  fd.Reset();
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"});
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

TEST_F(BadInput, XattrNameAndValueLimits) {
  const std::string f = Path("x");
  ASSERT_EQ(WriteFile(f, "x"), 0);
  const std::string name255 = "user." + std::string(XATTR_NAME_MAX - 5, 'n');
  ASSERT_SYS(::setxattr(f.c_str(), name255.c_str(), "v", 1, 0));
  EXPECT_ERRNO(::setxattr(f.c_str(), (name255 + "n").c_str(), "v", 1, 0), ERANGE);
  const std::string big = RandomBytes(XATTR_SIZE_MAX, 8);
  ASSERT_SYS(::setxattr(f.c_str(), "user.big", big.data(), big.size(), 0));
  EXPECT_ERRNO(::setxattr(f.c_str(), "user.big2", big.data(), big.size() + 1, 0), E2BIG);
  ASSERT_SYS(::setxattr(f.c_str(), "user.empty", "", 0, 0));
  const std::string nul("a\0b\0", 4);
  ASSERT_SYS(::setxattr(f.c_str(), "user.nul", nul.data(), nul.size(), 0));
  char one[1];
  EXPECT_ERRNO(::getxattr(f.c_str(), "user.big", one, 1), ERANGE);
  EXPECT_ERRNO(::listxattr(f.c_str(), one, 1), ERANGE);
  EXPECT_ERRNO(::getxattr(f.c_str(), "user.none", one, 1), ENODATA);
  // Names adding up past what listxattr can return (64 KiB): Linux filesystems either
  // refuse more names (ENOSPC) or fail the listing with E2BIG; never a crash.
  const std::string g = Path("many");
  ASSERT_EQ(WriteFile(g, ""), 0);
  int set = 0, set_err = 0;
  for (int i = 0; i < 1200; i++) {
    char n[80];
    std::snprintf(n, sizeof n, "user.%070d", i);
    if (::setxattr(g.c_str(), n, "v", 1, 0) != 0) {
      set_err = errno;
      break;
    }
    set++;
  }
  EXPECT_TRUE(set_err == 0 || set_err == ENOSPC || set_err == E2BIG) << ErrnoName(set_err);
  std::vector<char> list(XATTR_LIST_MAX);
  errno = 0;
  ssize_t n = ::listxattr(g.c_str(), list.data(), list.size());
  if (set * 77 > XATTR_LIST_MAX) {
    EXPECT_TRUE(n == -1 && (errno == E2BIG || errno == ERANGE)) << n << " " << ErrnoName(errno);
  } else {
    EXPECT_EQ(n, set * 77);
  }
  ASSERT_NO_FATAL_FAILURE(ExpectServing("xattrs past the list limit"));
  ASSERT_NO_FATAL_FAILURE(Remount());
  std::string got(XATTR_SIZE_MAX, '\0');
  EXPECT_EQ(::getxattr(f.c_str(), "user.big", got.data(), got.size()), XATTR_SIZE_MAX);
  EXPECT_EQ(got, big);
  char nb[8];
  EXPECT_EQ(::getxattr(f.c_str(), "user.nul", nb, sizeof nb), 4);
  EXPECT_EQ(std::string(nb, 4), nul);
  EXPECT_EQ(::getxattr(f.c_str(), "user.empty", nb, sizeof nb), 0);
}

}  // namespace
}  // namespace snapfs::mounttest
