// snapfs_scale: fills a folder (a snapfs mount) with a large Flink-like store for the
// scale run of issue 13 (scripts/bench_scale.sh): many retained snapshots that share files.
//
//   snapfs_scale DIR [--jobs 10] [--checkpoints 1000] [--private 80] [--shared 8]
//                [--window 5] [--orphans 1] [--big 100000] [--shared-kib 32]
//                [--private-bytes 512] [--threads 4]
//
// What it writes:
//   DIR/big/f-NNNNNNNN              BIG empty files in one folder (open O_CREAT, close)
//   DIR/job-JJJJ/chk-N/p-NNNN       PRIVATE files of PRIVATE_BYTES per checkpoint
//                                   (under 16 KiB: kept inline in the metadata)
//   DIR/job-JJJJ/shared/s-N-K       SHARED new files of SHARED_KIB per checkpoint (in packs),
//                                   plus ORPHANS more that no checkpoint names (an upload
//                                   whose checkpoint failed: what `snapfs orphans` finds)
//   DIR/job-JJJJ/chk-N/_metadata    the marker, written to ._metadata.inprogress and
//                                   renamed, as Flink does on a local disk: it names its
//                                   private files (bare names) and the shared files of the
//                                   last WINDOW checkpoints of its job (absolute file: URIs),
//                                   so each shared file is pinned by WINDOW snapshots
// Checkpoints are retained (none is subsumed): JOBS x CHECKPOINTS snapshots in the end.
// Files are written without fsync (the store's size is the point, not durability; the
// script syncs at the end). Every file's bytes are unique. THREADS threads share the jobs.
// Prints "files N", "snapshots N", "bytes N", "seconds S" and "files_per_s R".
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct Options {
  std::string dir;
  long jobs = 10, checkpoints = 1000, priv = 80, shared = 8, window = 5, orphans = 1;
  long big = 100000, shared_kib = 32, private_bytes = 512, threads = 4;
};

std::atomic<long> g_files{0}, g_bytes{0}, g_snapshots{0};

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "snapfs_scale: %s: %s\n", what.c_str(), strerror(errno));
  exit(1);
}

// Unique bytes: a xorshift stream seeded by the file's own number.
void Fill(std::vector<char>* buf, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 88172645463325252ull;
  for (size_t k = 0; k + 8 <= buf->size(); k += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(buf->data() + k, &x, 8);
  }
}

void WriteFile(const std::string& path, const std::vector<char>& buf) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) Die(path);
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = write(fd, buf.data() + off, buf.size() - off);
    if (n <= 0) Die(path);
    off += static_cast<size_t>(n);
  }
  if (close(fd) != 0) Die(path);
  g_files++;
  g_bytes += static_cast<long>(buf.size());
}

void Mkdir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) Die(path);
}

// Java DataOutputStream.writeUTF: 2-byte big-endian length, then the (ASCII) bytes.
void WriteUtf(std::string* out, const std::string& s) {
  out->push_back(static_cast<char>(s.size() >> 8));
  out->push_back(static_cast<char>(s.size() & 0xff));
  *out += s;
}

std::string SharedName(long n, long k) {
  return "s-" + std::to_string(n) + "-" + std::to_string(k);
}

void WriteJob(const Options& o, long j) {
  char jname[32];
  snprintf(jname, sizeof jname, "/job-%04ld", j);
  const std::string job = o.dir + jname, shared = job + "/shared";
  Mkdir(job);
  Mkdir(shared);
  std::vector<char> pbuf(static_cast<size_t>(o.private_bytes));
  std::vector<char> sbuf(static_cast<size_t>(o.shared_kib) * 1024);
  const uint64_t base = static_cast<uint64_t>(j) << 40;
  uint64_t seq = 0;
  for (long n = 1; n <= o.checkpoints; n++) {
    const std::string chk = job + "/chk-" + std::to_string(n);
    Mkdir(chk);
    for (long k = 0; k < o.shared + o.orphans; k++) {
      Fill(&sbuf, base + ++seq);
      WriteFile(shared + "/" + SharedName(n, k), sbuf);
    }
    std::string md("\x49\x60\x67\x2d\0\0\0\3", 8);  // magic, version 3
    for (long k = 0; k < o.priv; k++) {
      char name[32];
      snprintf(name, sizeof name, "p-%04ld", k);
      Fill(&pbuf, base + ++seq);
      WriteFile(chk + "/" + name, pbuf);
      WriteUtf(&md, name);
    }
    for (long m = std::max(1L, n - o.window + 1); m <= n; m++)
      for (long k = 0; k < o.shared; k++) WriteUtf(&md, "file:" + shared + "/" + SharedName(m, k));
    const std::string tmp = chk + "/._metadata.inprogress", fin = chk + "/_metadata";
    int fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, md.data(), md.size()) != static_cast<ssize_t>(md.size()) ||
        close(fd) != 0 || rename(tmp.c_str(), fin.c_str()) != 0)
      Die(tmp);
    g_files++;
    g_snapshots++;
  }
}

void WriteBig(const Options& o, long from, long to) {
  for (long i = from; i < to; i++) {
    char name[32];
    snprintf(name, sizeof name, "/big/f-%08ld", i);
    std::string path = o.dir + name;
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || close(fd) != 0) Die(path);
    g_files++;
  }
}

long Arg(int* i, int argc, char** argv) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "snapfs_scale: %s needs a value\n", argv[*i]);
    exit(2);
  }
  return atol(argv[++*i]);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    const std::pair<const char*, long*> flags[] = {
        {"--jobs", &o.jobs},       {"--checkpoints", &o.checkpoints},
        {"--private", &o.priv},    {"--shared", &o.shared},
        {"--window", &o.window},   {"--orphans", &o.orphans},
        {"--big", &o.big},         {"--shared-kib", &o.shared_kib},
        {"--threads", &o.threads}, {"--private-bytes", &o.private_bytes}};
    bool known = false;
    for (const auto& [flag, value] : flags) {
      if (a == flag) {
        *value = Arg(&i, argc, argv);
        known = true;
      }
    }
    if (known) continue;
    if (o.dir.empty() && a[0] != '-') {
      o.dir = a;
      continue;
    }
    fprintf(stderr,
            "usage: snapfs_scale DIR [--jobs N] [--checkpoints N] [--private N] "
            "[--shared N] [--window N] [--orphans N] [--big N] [--shared-kib N] "
            "[--private-bytes N] [--threads N]\n");
    return 2;
  }
  if (o.dir.empty() || o.threads < 1) {
    fprintf(stderr, "snapfs_scale: DIR missing or --threads < 1\n");
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  if (o.big > 0) Mkdir(o.dir + "/big");
  // Work items: each job, and the big folder cut into THREADS slices; a thread takes the
  // next item until none is left.
  std::atomic<long> next{0};
  const long items = o.jobs + o.threads;
  auto worker = [&] {
    for (long it; (it = next++) < items;) {
      if (it < o.jobs) {
        WriteJob(o, it);
      } else {
        long s = it - o.jobs;
        WriteBig(o, o.big * s / o.threads, o.big * (s + 1) / o.threads);
      }
    }
  };
  std::vector<std::thread> threads;
  for (long t = 0; t < o.threads; t++) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("files %ld\nsnapshots %ld\nbytes %ld\nseconds %.1f\nfiles_per_s %.0f\n", g_files.load(),
         g_snapshots.load(), g_bytes.load(), s, g_files.load() / s);
  return 0;
}
