// snapfs_flink: a Flink-like checkpoint writer (issue 12), timed in-process so that the
// native folder, a passthrough FUSE mount and a snapfs mount can be compared side by side.
//
//   snapfs_flink DIR [--mode incremental|full] [--checkpoints 30] [--writers 2]
//                [--files 3] [--min-mb 0.3] [--max-mb 50] [--retain 3] [--seed 1]
//
// What it writes, as Flink 1.15-2.x with the RocksDB state backend does (DESIGN.md §1):
//   DIR/<job-id>/{shared/, taskowned/, chk-N/}
// Per checkpoint N, WRITERS threads (the TaskManagers' upload threads) run in parallel; each
//   - incremental: uploads FILES new SST files to shared/<uuid> (sizes log-uniform in
//     [MIN_MB, MAX_MB], bytes never written before), then its private MANIFEST to
//     chk-N/<uuid>. Its RocksDB keeps at most 4*FILES live SSTs (compaction drops the
//     oldest); every checkpoint references all live SSTs of every writer.
//   - full: writes its whole state again, FILES files of fixed sizes and contents, to
//     chk-N/<uuid> (new names, bytes already written by the previous checkpoint: the
//     dedup case), and its MANIFEST.
//   Every file: open(O_CREAT|O_TRUNC|O_WRONLY), write() of 20 KiB pieces (Flink's write
//   buffer), fsync, close.
// Then the JobManager commits the checkpoint: chk-N/._metadata.inprogress.<uuid> (O_EXCL),
// written in tiny write() calls (Java DataOutputStream on an unbuffered FileOutputStream:
// magic, version, ids, then 4 per file it names - handle type, size, its writeUTF reference
// (shared files as absolute file: URIs, private files as bare names), key-group data; ~110
// calls per checkpoint with the defaults, as the live set is ~26 files), fsync, rename to
// chk-N/_metadata. Retention keeps RETAIN checkpoints: once chk-N is committed, chk-(N-RETAIN)
// is subsumed as Flink does (unlink _metadata, each private file, rmdir), and each shared
// file no retained checkpoint references is unlinked. Subsuming is not timed (Flink does it
// asynchronously); its median time is printed separately.
//
// Contents come from a 64 MiB random pool made once in RAM: each 20 KiB piece is a slice of
// the pool XORed with a 64-bit key derived from (file, piece), so generating costs about a
// memcpy, and no two pieces of different files (or of one file) are equal: new bytes do not
// deduplicate against each other. A full-mode file rewritten by a later checkpoint has the
// same key, hence the same bytes.
//
// Output, one "name value" line each (MB = 1e6 bytes):
//   flink_MBps        checkpoint bytes / time of the timed checkpoints (writers started to
//                     rename returned). Full mode: checkpoints 2..N only (the first one
//                     stores the state for the first time; it is flink_first_MBps).
//   metadata_ms       median over checkpoints of the _metadata open+write+fsync+close+rename
//   checkpoint_ms     median checkpoint duration
//   subsume_ms        median time to subsume one checkpoint (not in flink_MBps)
//   flink_first_MBps  full mode only: the first checkpoint
//   bytes, files, checkpoints, seconds: totals of the timed checkpoints
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kPiece = 20 * 1024;          // Flink's checkpoint stream write buffer
constexpr size_t kPool = 64u << 20;           // random pool; must exceed the largest file's
constexpr size_t kPoolWords = kPool / 8;      // distinct-offset needs only, not its size

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Rng {
  uint64_t s;
  uint64_t Next() { return s = SplitMix(s); }
  double Unit() { return static_cast<double>(Next() >> 11) / 9007199254740992.0; }
};

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "snapfs_flink: %s: %s\n", what.c_str(), strerror(errno));
  exit(1);
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string Uuid(Rng& r) {
  uint64_t a = r.Next(), b = r.Next();
  char s[40];
  snprintf(s, sizeof s, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
           static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
           static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
           static_cast<unsigned long long>(b & 0xffffffffffffull));
  return s;
}

std::vector<uint64_t>* g_pool = nullptr;

// A state file: its name, size and the key its bytes derive from.
struct StateFile {
  std::string name;  // uuid
  uint64_t size = 0;
  uint64_t key = 0;
};

// Writes one file as Flink's FsCheckpointStateOutputStream does.
void WriteStateFile(const std::string& path, const StateFile& f, std::vector<uint64_t>& buf) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) Fail("open " + path);
  const uint64_t* pool = g_pool->data();
  uint64_t off = SplitMix(f.key) % kPoolWords;
  uint64_t done = 0;
  for (uint64_t piece = 0; done < f.size; piece++) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, f.size - done));
    uint64_t k = SplitMix(f.key ^ (piece * 0x9e3779b97f4a7c15ull));
    size_t words = (n + 7) / 8;
    uint64_t* out = buf.data();
    for (size_t i = 0; i < words; i++) {
      out[i] = pool[off] ^ k;
      if (++off == kPoolWords) off = 0;
    }
    const char* p = reinterpret_cast<const char*>(out);
    size_t left = n;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        Fail("write " + path);
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    done += n;
  }
  if (fsync(fd) != 0) Fail("fsync " + path);
  if (close(fd) != 0) Fail("close " + path);
}

struct Options {
  std::string dir;
  bool full = false;
  int checkpoints = 30;
  int writers = 2;
  int files = 3;
  double min_mb = 0.3, max_mb = 50;
  int retain = 3;
  uint64_t seed = 1;
};

struct Checkpoint {
  int id = 0;
  std::vector<std::string> private_files;  // bare names in chk-N/
  std::vector<std::string> shared;          // names in shared/
};

// Java DataOutputStream.writeUTF: 2-byte big-endian length, then the (ASCII) bytes.
std::string Utf(const std::string& s) {
  std::string out;
  out.push_back(static_cast<char>((s.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(s.size() & 0xff));
  return out + s;
}
std::string BigEndian(uint64_t v, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; i--) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// Writes chk-N/_metadata by temporary file + fsync + rename; returns the seconds it took.
double CommitMetadata(const std::string& chk_dir, const std::string& shared_uri,
                      const Checkpoint& c, const std::map<std::string, uint64_t>& sizes,
                      Rng& rng) {
  // One entry per write() call, as an unbuffered DataOutputStream issues them.
  std::vector<std::string> pieces;
  pieces.push_back(BigEndian(0x4960672d, 4));  // magic
  pieces.push_back(BigEndian(3, 4));           // version
  pieces.push_back(BigEndian(static_cast<uint64_t>(c.id), 8));
  pieces.push_back(BigEndian(0, 4));  // master states
  pieces.push_back(BigEndian(1, 4));  // operator states
  pieces.push_back(BigEndian(rng.Next(), 8));  // operator id
  pieces.push_back(BigEndian(rng.Next(), 8));
  auto file_ref = [&](const std::string& ref, uint64_t size) {
    pieces.push_back(std::string(1, '\x02'));  // handle type
    pieces.push_back(BigEndian(size, 8));      // state size
    pieces.push_back(Utf(ref));                // path
    pieces.push_back(BigEndian(rng.Next() & 0xffff, 4));  // key-group offsets, count...
  };
  for (const auto& name : c.shared) file_ref(shared_uri + name, sizes.at(name));
  for (const auto& name : c.private_files) file_ref(name, sizes.at(name));
  pieces.push_back(BigEndian(0, 4));  // end of subtask states

  std::string tmp = chk_dir + "/._metadata.inprogress." + Uuid(rng);
  std::string final_path = chk_dir + "/_metadata";
  auto t0 = std::chrono::steady_clock::now();
  int fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) Fail("open " + tmp);
  for (const auto& p : pieces) {
    if (write(fd, p.data(), p.size()) != static_cast<ssize_t>(p.size())) Fail("write " + tmp);
  }
  if (fsync(fd) != 0) Fail("fsync " + tmp);
  if (close(fd) != 0) Fail("close " + tmp);
  if (rename(tmp.c_str(), final_path.c_str()) != 0) Fail("rename " + tmp);
  return Seconds(t0, std::chrono::steady_clock::now());
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void Usage(const char* argv0) {
  fprintf(stderr,
          "usage: %s DIR [--mode incremental|full] [--checkpoints N] [--writers N] [--files N]\n"
          "          [--min-mb MB] [--max-mb MB] [--retain N] [--seed N]\n",
          argv0);
  exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(argv[0]);
      return argv[++i];
    };
    if (a == "--mode") {
      std::string m = value();
      if (m != "incremental" && m != "full") Usage(argv[0]);
      o.full = m == "full";
    } else if (a == "--checkpoints") {
      o.checkpoints = std::stoi(value());
    } else if (a == "--writers") {
      o.writers = std::stoi(value());
    } else if (a == "--files") {
      o.files = std::stoi(value());
    } else if (a == "--min-mb") {
      o.min_mb = std::stod(value());
    } else if (a == "--max-mb") {
      o.max_mb = std::stod(value());
    } else if (a == "--retain") {
      o.retain = std::stoi(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else if (!a.empty() && a[0] != '-' && o.dir.empty()) {
      o.dir = a;
    } else {
      Usage(argv[0]);
    }
  }
  if (o.dir.empty() || o.checkpoints < 1 || o.writers < 1 || o.files < 1 || o.retain < 1 ||
      o.min_mb <= 0 || o.max_mb < o.min_mb || o.max_mb * 1e6 > static_cast<double>(kPool)) {
    Usage(argv[0]);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  char real[PATH_MAX];
  if (!realpath(o.dir.c_str(), real)) Fail("realpath " + o.dir);

  std::vector<uint64_t> pool(kPoolWords);
  {
    Rng r{o.seed * 0x2545f4914f6cdd1dull + 7};
    for (auto& w : pool) w = r.Next();
  }
  g_pool = &pool;

  Rng rng{o.seed};
  const std::string job = std::string(real) + "/" + Uuid(rng).substr(0, 8) + "0000000000000000" +
                          Uuid(rng).substr(0, 8);
  const std::string shared_dir = job + "/shared", shared_uri = "file:" + shared_dir + "/";
  for (const auto& d : {job, shared_dir, job + "/taskowned"}) {
    if (mkdir(d.c_str(), 0755) != 0) Fail("mkdir " + d);
  }

  auto new_file = [&](Rng& r, bool sst) {
    StateFile f;
    f.name = Uuid(r);
    f.key = r.Next();
    if (sst) {  // log-uniform in [min, max] MB
      double mb = o.min_mb * std::pow(o.max_mb / o.min_mb, r.Unit());
      f.size = static_cast<uint64_t>(mb * 1e6);
    } else {  // MANIFEST: 20-200 KiB (smaller private files are inlined in _metadata)
      f.size = 20480 + r.Next() % 184320;
    }
    return f;
  };

  // Per writer: its RNG (so the workload does not depend on thread timing), its live SSTs
  // (incremental) or its fixed state (full).
  std::vector<Rng> wrng;
  std::vector<std::vector<StateFile>> live(static_cast<size_t>(o.writers));
  for (int w = 0; w < o.writers; w++) wrng.push_back(Rng{SplitMix(o.seed * 1000 + static_cast<uint64_t>(w))});
  if (o.full) {
    for (int w = 0; w < o.writers; w++) {
      for (int i = 0; i < o.files; i++) live[static_cast<size_t>(w)].push_back(new_file(wrng[static_cast<size_t>(w)], true));
    }
  }

  std::map<std::string, uint64_t> sizes;  // every file a retained checkpoint names
  std::map<std::string, int> shared_refs; // shared file -> retained checkpoints naming it
  std::vector<Checkpoint> retained;
  std::vector<double> metadata_s, checkpoint_s, subsume_s;
  double timed_s = 0, first_s = 0;
  uint64_t timed_bytes = 0, first_bytes = 0, timed_files = 0;

  for (int n = 1; n <= o.checkpoints; n++) {
    Checkpoint c;
    c.id = n;
    const std::string chk_dir = job + "/chk-" + std::to_string(n);
    // What each writer uploads this time (decided before timing).
    std::vector<std::vector<StateFile>> uploads(static_cast<size_t>(o.writers));
    std::vector<StateFile> manifests;
    for (int w = 0; w < o.writers; w++) {
      auto wi = static_cast<size_t>(w);
      Rng& r = wrng[wi];
      if (o.full) {
        for (const auto& f : live[wi]) {
          StateFile copy = f;
          copy.name = Uuid(r);  // a new name, the same bytes
          uploads[wi].push_back(copy);
        }
      } else {
        for (int i = 0; i < o.files; i++) uploads[wi].push_back(new_file(r, true));
      }
      manifests.push_back(new_file(r, false));
    }
    uint64_t bytes = 0;
    for (int w = 0; w < o.writers; w++) {
      auto wi = static_cast<size_t>(w);
      for (const auto& f : uploads[wi]) bytes += f.size, sizes[f.name] = f.size;
      bytes += manifests[wi].size;
      sizes[manifests[wi].name] = manifests[wi].size;
      c.private_files.push_back(manifests[wi].name);
      if (o.full) {
        for (const auto& f : uploads[wi]) c.private_files.push_back(f.name);
      } else {
        for (const auto& f : uploads[wi]) live[wi].push_back(f);
        // Compaction: keep at most 4*FILES live SSTs per writer, dropping the oldest.
        size_t keep = static_cast<size_t>(4 * o.files);
        if (live[wi].size() > keep) live[wi].erase(live[wi].begin(), live[wi].end() - static_cast<long>(keep));
        for (const auto& f : live[wi]) c.shared.push_back(f.name);
      }
    }

    auto t0 = std::chrono::steady_clock::now();
    if (mkdir(chk_dir.c_str(), 0755) != 0) Fail("mkdir " + chk_dir);
    std::vector<std::thread> threads;
    for (int w = 0; w < o.writers; w++) {
      auto wi = static_cast<size_t>(w);
      threads.emplace_back([&, wi] {
        std::vector<uint64_t> buf(kPiece / 8);
        for (const auto& f : uploads[wi]) {
          WriteStateFile((o.full ? chk_dir : shared_dir) + "/" + f.name, f, buf);
        }
        WriteStateFile(chk_dir + "/" + manifests[wi].name, manifests[wi], buf);
      });
    }
    for (auto& t : threads) t.join();
    double md = CommitMetadata(chk_dir, shared_uri, c, sizes, rng);
    double cs = Seconds(t0, std::chrono::steady_clock::now());

    metadata_s.push_back(md);
    checkpoint_s.push_back(cs);
    if (o.full && n == 1 && o.checkpoints > 1) {
      first_s = cs;
      first_bytes = bytes;
    } else {
      timed_s += cs;
      timed_bytes += bytes;
      timed_files += c.private_files.size() + (o.full ? 0 : static_cast<size_t>(o.writers * o.files)) + 1;
    }
    for (const auto& s : c.shared) shared_refs[s]++;
    retained.push_back(c);

    // Subsume the oldest checkpoint beyond RETAIN (not timed as checkpoint time).
    if (static_cast<int>(retained.size()) > o.retain) {
      Checkpoint old = retained.front();
      retained.erase(retained.begin());
      auto s0 = std::chrono::steady_clock::now();
      const std::string old_dir = job + "/chk-" + std::to_string(old.id);
      if (unlink((old_dir + "/_metadata").c_str()) != 0) Fail("unlink " + old_dir + "/_metadata");
      for (const auto& p : old.private_files) {
        if (unlink((old_dir + "/" + p).c_str()) != 0) Fail("unlink " + old_dir + "/" + p);
        sizes.erase(p);
      }
      if (rmdir(old_dir.c_str()) != 0) Fail("rmdir " + old_dir);
      for (const auto& s : old.shared) {
        if (--shared_refs[s] == 0) {
          shared_refs.erase(s);
          sizes.erase(s);
          if (unlink((shared_dir + "/" + s).c_str()) != 0) Fail("unlink " + shared_dir + "/" + s);
        }
      }
      subsume_s.push_back(Seconds(s0, std::chrono::steady_clock::now()));
    }
  }

  printf("flink_MBps %.1f\n", timed_bytes / 1e6 / timed_s);
  printf("metadata_ms %.3f\n", Median(metadata_s) * 1e3);
  printf("checkpoint_ms %.1f\n", Median(checkpoint_s) * 1e3);
  printf("subsume_ms %.2f\n", Median(subsume_s) * 1e3);
  if (first_s > 0) printf("flink_first_MBps %.1f\n", first_bytes / 1e6 / first_s);
  printf("bytes %llu\nfiles %llu\ncheckpoints %d\nseconds %.3f\n",
         static_cast<unsigned long long>(timed_bytes), static_cast<unsigned long long>(timed_files),
         o.full && o.checkpoints > 1 ? o.checkpoints - 1 : o.checkpoints, timed_s);
  return 0;
}
