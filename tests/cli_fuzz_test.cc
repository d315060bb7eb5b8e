// A fuzzer for the snapfs CLI and the control socket (issue 13, "Bad input under a
// fuzzer"). BadInput.* (tests/mount_bad_input_test.cc) checks a table of bad command
// lines with their exact codes and messages; this one throws random combinations at
// every verb instead: options read from each verb's own --help, with hostile values
// (empty, 100,000 bytes, binary junk without NUL, negative and overflowing numbers,
// sizes, durations, paths that do not exist, are files, plain folders, another store,
// a store whose config is junk). Every run must:
//   - end by exit, not by a signal, within 60 s;
//   - exit with a code of the README's table (0-5);
//   - say something on stderr (or, with --json, print the error on stdout) if non-zero;
//   - leave the mounted store as it was: the same tree, byte for byte, the same snapshots,
//     fsck --verify clean, the daemon serving.
// Then random mutations (bytes flipped, cut, doubled, inserted) of valid control requests
// on raw connections: each gets a JSON answer and the daemon keeps serving.
//
// Destructive verbs (rm, prune, orphans, umount) and the place a verb creates something
// (init, export's DEST, mount's mount point, --log, --state-dir, --cache-dir) get only
// paths outside the mount: a valid `rm` of a real snapshot would be no bug. A mount the
// fuzzer made by chance (another store on an empty folder) is unmounted after the call.
//
// SNAPFS_CLI_FUZZ_ITERATIONS (default 150 command lines and 300 requests, ~15 s) and
// SNAPFS_CLI_FUZZ_SEED replay or lengthen it.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/util/flink_sim.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {
namespace {

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : dflt;
}

// path -> bytes of every regular file under `dir` (symlinks as "link:<target>"), folders
// as "dir"; the views under .snapshots are left out (they follow from the rest).
std::map<std::string, std::string> Tree(const std::string& dir) {
  std::map<std::string, std::string> t;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    std::string rel = it->path().string().substr(dir.size());
    if (rel.starts_with("/.snapshots")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory()) {
      t[rel] = "dir";
    } else {
      t[rel] = ReadFile(it->path().string());
    }
  }
  return t;
}

class CliFuzz : public MountFixture {
 protected:
  struct Verb {
    std::string name;
    std::vector<std::string> options;
    bool destructive = false;  // rm, prune, orphans, umount: never our mount's paths
  };

  // Options of `snapfs VERB --help` (its usage text), but those that keep a mount in the
  // foreground.
  static std::vector<std::string> OptionsOf(const std::string& verb) {
    CmdResult h = Snapfs({verb, "--help"}, 30);
    std::set<std::string> opts;
    const std::string text = h.out + h.err;
    // "-x" or "--long-name" after a blank, ',' or '[' (std::regex trips -Werror in the
    // sanitizer build)
    auto alpha = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; };
    for (size_t i = 0; i + 1 < text.size(); i++) {
      if (text[i] != '-' || (i > 0 && !std::isspace(static_cast<unsigned char>(text[i - 1])) &&
                             text[i - 1] != ',' && text[i - 1] != '[')) {
        continue;
      }
      size_t j = text[i + 1] == '-' ? i + 2 : i + 1;
      if (j >= text.size() || !alpha(text[j])) continue;
      auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; };
      while (j < text.size() && word(text[j])) j++;
      std::string o = text.substr(i, j - i);
      if (o == "-f" || o == "--foreground" || o == "-d" || o == "--debug") continue;
      opts.insert(o);
    }
    return {opts.begin(), opts.end()};
  }

  std::string Junk(std::mt19937_64& rng, size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(1 + rng() % 255);  // no NUL: argv cannot hold it
    return s;
  }

  // A hostile value: `inside` allows paths in our mount (read-only verbs only).
  std::string Value(std::mt19937_64& rng, bool inside) {
    static const std::vector<std::string> kNumbers = {
        "-1", "0", "-0", "1e999", "9223372036854775807", "9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "99999999999999999999999999", "0x10",
        "1.5", "NaN", "inf", "-inf", "1K", "1T", "16E", "1Q", "5x", "-1h", "1h", "0s", "2d",
        "100%", "150%", "-5%", " 1", "1 ", "+1", "1,5", "a=b", "=", "file:/x=file:/y", "-",
        "--", "-x", "--=", "--json"};
    switch (rng() % 8) {
      case 0: return "";
      case 1: return std::string(100000, "a/."[rng() % 3]);
      case 2: return Junk(rng, 1 + rng() % 64);
      case 3:
      case 4: return kNumbers[rng() % kNumbers.size()];
      default: {
        std::vector<std::string> paths = hostile_paths_;
        if (inside) paths.insert(paths.end(), inside_paths_.begin(), inside_paths_.end());
        std::string p = paths[rng() % paths.size()];
        if (rng() % 8 == 0) p += "/" + Junk(rng, 1 + rng() % 8);
        return p;
      }
    }
  }

  std::vector<std::string> Argv(std::mt19937_64& rng, const Verb& v) {
    std::vector<std::string> a = {v.name};
    // read-only verbs may name our mount, but a verb that creates what it names may not
    // (init, mount's mount point, export's DEST: the second positional)
    const bool inside_ok = !v.destructive && v.name != "init" && v.name != "mount";
    int positional = 0;
    // Mostly few arguments and few options, so that most lines get past the parser into
    // the verb (random option soup would only test the parser).
    // (most verbs need a positional argument first, or they stop at "missing argument")
    const int n = static_cast<int>(rng() % 4);
    for (int i = 0; i < n; i++) {
      const bool first_positional = i == 0 && rng() % 4 != 0;
      if (!first_positional && rng() % 2 == 0 && !v.options.empty()) {
        std::string o = v.options[rng() % v.options.size()];
        if (rng() % 6 == 0) o += "=" + Value(rng, false);
        a.push_back(o);
        if (rng() % 3 != 0) a.push_back(Value(rng, false));  // options' values: never inside
      } else {
        bool dest = v.name == "export" && positional == 1;
        a.push_back(Value(rng, inside_ok && !dest));
        positional++;
      }
    }
    if (rng() % 10 == 0) a.push_back("--json");
    return a;
  }

  // Unmounts whatever a fuzzed `mount` mounted below tmp() (not our mount).
  void UnmountStrays() {
    for (const auto& mp : MountsBelow(tmp())) {
      if (mp == mnt()) continue;
      strays_++;
      CmdResult u = Snapfs({"umount", mp}, 60);
      if (u.code != 0) Run({"fusermount3", "-u", "-z", mp}, 30);
    }
  }

  std::vector<std::string> hostile_paths_, inside_paths_;
  int strays_ = 0;
};

TEST_F(CliFuzz, RandomCommandLinesNeverCrashAndLeaveTheStoreAlone) {
  const uint64_t iterations = EnvOr("SNAPFS_CLI_FUZZ_ITERATIONS", 150);
  const uint64_t seed = EnvOr("SNAPFS_CLI_FUZZ_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_CLI_FUZZ_SEED)");
  std::mt19937_64 rng(seed);

  // What the store holds: a job with three checkpoints, a savepoint, loose files.
  ContentMap content;
  FlinkJob job(mnt(), "job", 1, &content);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 3; i++) ASSERT_EQ(job.TakeCheckpoint(2, 40 * kKiB), "");
  std::string sp_err;
  job.TakeSavepoint(2, 20 * kKiB, &sp_err);
  ASSERT_EQ(sp_err, "");
  ASSERT_EQ(WriteFile(Path("loose"), RandomBytes(70 * kKiB, 1), true), 0);
  const auto tree = Tree(mnt());
  CmdResult ls0 = Snapfs({"ls", mnt()});
  ASSERT_EQ(ls0.code, 0) << ls0.Describe();

  // Hostile places, all below tmp(); the fuzzed CLI runs in tmp()/cwd.
  const std::string t = tmp();
  ASSERT_EQ(::mkdir((t + "/plain").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((t + "/cwd").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(t + "/file", "not a store"), 0);
  ASSERT_EQ(Snapfs({"init", t + "/foreign"}).code, 0);
  ASSERT_EQ(Snapfs({"init", t + "/junkstore"}).code, 0);
  ASSERT_EQ(WriteFile(t + "/junkstore/snapfs.conf", Junk(rng, 500)), 0);
  hostile_paths_ = {t + "/nope",      t + "/nope/deeper", t + "/file",     t + "/file/sub",
                    t + "/plain",     t + "/foreign",     t + "/junkstore", t + "/cwd",
                    "relative/nope",  "",                 t + "/" + std::string(5000, 'p'),
                    t + "/foreign/job/chk-1"};
  inside_paths_ = {mnt(),
                   store(),
                   Path("job"),
                   Path("job/chk-1"),
                   Path("job/chk-3"),
                   Path("job/chk-3/_metadata"),
                   Path("job/shared"),
                   Path("loose"),
                   Path(".snapshots"),
                   Path("job/chk-99")};
  std::vector<Verb> verbs;
  for (const char* v : {"init", "mount", "umount", "status", "ls", "du", "rm", "prune", "why",
                        "orphans", "export", "stats", "fsck", "gc", "version"}) {
    std::string n = v;
    verbs.push_back({n, OptionsOf(n),
                     n == "rm" || n == "prune" || n == "orphans" || n == "umount"});
    ASSERT_FALSE(verbs.back().options.empty()) << n << " --help named no options";
  }
  char old_cwd[PATH_MAX];
  ASSERT_NE(::getcwd(old_cwd, sizeof old_cwd), nullptr);
  ASSERT_EQ(::chdir((t + "/cwd").c_str()), 0);

  std::map<int, int> codes;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < iterations && !HasFatalFailure(); i++) {
    const Verb& v = verbs[rng() % verbs.size()];
    std::vector<std::string> argv = Argv(rng, v);
    CmdResult r = Snapfs(argv, 60);
    std::string what = ShellJoin(argv);
    if (what.size() > 400) what = what.substr(0, 400) + "...";
    codes[r.code]++;
    EXPECT_FALSE(r.timed_out) << "iteration " << i << ": " << what;
    EXPECT_TRUE(r.code >= 0 && r.code <= 5)
        << "iteration " << i << ": exit " << r.code << " (128+N: killed by signal N) for "
        << what << "\n"
        << r.Describe().substr(0, 2000);
    if (r.code != 0) {
      bool json_error = r.out.find("\"error\"") != std::string::npos;
      // (status reports a degraded store on stdout, exit 1: that is its answer)
      bool status_report = v.name == "status" && r.code == 1 && !r.out.empty();
      EXPECT_TRUE(!r.err.empty() || json_error || status_report)
          << "iteration " << i << ": exit " << r.code << " without a word: " << what << "\n"
          << r.Describe().substr(0, 2000);
      if (status_report) std::cout << "iteration " << i << ": " << r.out << std::endl;
    }
    if (v.name == "mount") UnmountStrays();
  }
  ASSERT_EQ(::chdir(old_cwd), 0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "cli fuzz: " << iterations << " command lines in " << static_cast<int>(secs)
            << " s, exit codes:";
  for (const auto& [c, n] : codes) std::cout << " " << c << "x" << n;
  std::cout << "; " << strays_ << " mounts made by chance, unmounted; seed " << seed << std::endl;

  // Our store as it was.
  ASSERT_TRUE(IsMounted(mnt(), true)) << "the fuzzer unmounted the store";
  EXPECT_TRUE(Tree(mnt()) == tree) << "the tree under the mount changed";
  CmdResult ls = Snapfs({"ls", mnt()});
  EXPECT_EQ(ls.out, ls0.out) << "the snapshots changed";
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
  for (const auto& cp : job.retained()) {
    std::string dir = job.CpDir(cp);
    EXPECT_EQ(Restore(dir, dir, content, InPlace), "") << dir;
  }
}

// Random mutations of valid control requests (tests/mount_bad_input_test.cc has the
// hand-made bad ones): each connection gets an answer that is a JSON object, and the
// daemon answers `snapfs stats` at the end, the store unchanged.
TEST_F(CliFuzz, MutatedControlRequestsGetAnAnswerAndChangeNothing) {
  const uint64_t iterations = 2 * EnvOr("SNAPFS_CLI_FUZZ_ITERATIONS", 150);
  const uint64_t seed = EnvOr("SNAPFS_CLI_FUZZ_SEED", 20261206);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SNAPFS_CLI_FUZZ_SEED)");
  std::mt19937_64 rng(seed);
  ContentMap content;
  FlinkJob job(mnt(), "job", 1, &content);
  ASSERT_EQ(job.Init(), "");
  for (int i = 0; i < 2; i++) ASSERT_EQ(job.TakeCheckpoint(2, 30 * kKiB), "");
  const auto tree = Tree(mnt());
  // Valid requests that change nothing a user sees (docs: README "Control socket").
  const std::vector<std::string> valid = {
      "stats",
      "status",
      "gc 0.5",
      "fsck --verify 0.1",
      "snap-ls {\"path\":\"\"}",
      "snap-ls {\"path\":\"job\",\"hidden\":true}",
      "snap-why {\"path\":\"job/chk-1/_metadata\"}",
      "snap-files {\"path\":\"job/chk-1\"}",
      "snap-du {\"path\":\"job\"}",
      "snap-hidden {\"path\":\"\"}",
      "snap-orphans {\"path\":\"\",\"older_than_ns\":3600000000000}"};
  // (not snap-rm or snap-prune, even as dry runs: a mutation of the dry_run key would make
  // a real removal, which is no bug)
  int answered = 0;
  for (uint64_t i = 0; i < iterations; i++) {
    std::string req = valid[rng() % valid.size()];
    for (int m = 0, n = 1 + static_cast<int>(rng() % 4); m < n && !req.empty(); m++) {
      size_t at = rng() % req.size();
      switch (rng() % 5) {
        case 0: req[at] = static_cast<char>(rng() % 256); break;              // flip
        case 1: req.resize(at); break;                                        // cut
        case 2: req.insert(at, req.substr(at, 1 + rng() % 16)); break;        // double
        case 3: req.insert(at, Junk(rng, 1 + rng() % 8)); break;              // insert junk
        case 4: req.insert(at, std::string(1 + rng() % 3000, "[{\"9"[rng() % 4])); break;
      }
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    UniqueFd c(fd);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string path = store() + "/control.sock";
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
        << "iteration " << i << ": " << ErrnoName(errno) << DaemonLog();
    timeval tv{30, 0};
    ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = req + "\n";
    (void)!::send(c.get(), line.data(), line.size(), MSG_NOSIGNAL);
    ::shutdown(c.get(), SHUT_WR);
    std::string out;
    char buf[65536];
    for (ssize_t n; (n = ::recv(c.get(), buf, sizeof buf, 0)) > 0;) out.append(buf, n);
    auto j = nlohmann::json::parse(out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "iteration " << i << ": no JSON answer to "
                               << nlohmann::json(req).dump(-1, ' ', true,
                                                           nlohmann::json::error_handler_t::replace)
                                      .substr(0, 300)
                               << ": " << out.substr(0, 300);
    answered += j.is_object();
  }
  std::cout << "control fuzz: " << answered << " mutated requests answered" << std::endl;
  CmdResult st = Snapfs({"stats", mnt()});
  EXPECT_EQ(st.code, 0) << st.Describe() << DaemonLog();
  EXPECT_TRUE(Tree(mnt()) == tree) << "the tree under the mount changed";
  CmdResult fsck = Snapfs({"fsck", mnt(), "--verify"}, 120);
  EXPECT_EQ(fsck.code, 0) << fsck.Describe();
}

}  // namespace
}  // namespace snapfs::mounttest
