// libFuzzer target for whole snapshot commits (issue 13): each input is a marker that is
// committed into a new checkpoint folder of one long-lived store, through the engine's
// Filesystem API the way the FUSE layer drives it for Flink. marker_scan_fuzz.cc covers
// the scan alone; this one covers what the scan's answer feeds: resolving references,
// recording pins, recognising the snapshot, the views, `snapfs rm` with overlapping pins,
// deferred delete and fsck. Built by CMake with -DSNAPFS_FUZZ=ON (clang) and run by
// scripts/fuzz.sh.
//
// (The check that a pinned file is named is by its last path component, in the marker's
// bytes as written or percent-decoded: lenient about how it is named, strict that it is.)
//
// The store (memory engine, memory packs, so that an execution takes milliseconds) holds
// job/shared/s0..s7 of known bytes. Input byte 0 chooses how the marker is committed and
// what happens after; the rest is the marker. After every input:
//   - the marker reads back byte-exact;
//   - a recognised snapshot's view holds only its folder's files and files its marker
//     names (every referenced file's name occurs in the marker's bytes), and every view
//     file reads back the bytes it was written with;
//   - removing snapshots (`snapfs rm`) never takes or changes a file another live
//     snapshot's view holds, and the shared files that are left read back unchanged;
//   - the snapshot check (CheckSnapshots) finds nothing; every 64 inputs, fsck with
//     verification finds nothing.
// A broken invariant prints what broke and traps, which libFuzzer reports as a crash.
#include <fcntl.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "core/chunks/gc.h"
#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/meta/kv.h"
#include "core/store.h"
#include "tests/util/random.h"

namespace snapfs {
namespace {

constexpr const char* kMount = "/mnt/ckpt";
constexpr int kShared = 8;     // job/shared/s0..s7
constexpr size_t kLive = 6;    // snapshots kept; older ones are removed as `snapfs rm` does
const Caller kWho{1000, 1000};

[[noreturn]] void Broken(const std::string& what) {
  fprintf(stderr, "snapshot_commit_fuzz: invariant broken: %s\n", what.c_str());
  __builtin_trap();
}
void Check(bool ok, const std::string& what) {
  if (!ok) Broken(what);
}
template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) Broken(std::string(what) + ": " + r.status().ToString());
  return std::move(r).value();
}
void Must(const Status& s, const char* what) {
  if (!s.ok()) Broken(std::string(what) + ": " + s.ToString());
}

// Deterministic bytes, different per name, spanning several of the store's small chunks.
std::string Content(const std::string& name, size_t n) {
  return test::RandomBytes(n, std::hash<std::string>{}(name));
}

// The bytes of job/shared/sN, whenever it is (re)written.
std::string SharedBytes(const std::string& name) {
  return Content("shared/" + name, 2000 + 700 * static_cast<size_t>(name[1] - '0'));
}

// The marker with every %XX decoded: references may be percent-escaped file: URIs.
std::string PercentDecoded(const std::string& m) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < m.size(); i++) {
    if (m[i] == '%' && i + 2 < m.size() && hex(m[i + 1]) >= 0 && hex(m[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(m[i + 1]) * 16 + hex(m[i + 2])));
      i += 2;
    } else {
      out.push_back(m[i]);
    }
  }
  return out;
}

struct Harness {
  std::string root, dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<Filesystem> fs;
  uint64_t job = 0, shared = 0;
  std::map<uint64_t, std::string> known;      // every file written -> its bytes
  std::deque<uint64_t> live;                  // snapshot folders, oldest first
  uint64_t next_chk = 1;
  uint64_t runs = 0;

  Harness() {
    char tmpl[] = "/tmp/snapfs-commit-fuzz-XXXXXX";
    Check(mkdtemp(tmpl) != nullptr, "mkdtemp");
    root = tmpl;
    dir = root + "/store";
    InitOptions io;
    io.chunker.min_size = 1024;  // small chunks: a few KB files have several
    io.chunker.avg_size = 4096;
    io.chunker.max_size = 16384;
    Must(Store::Init(dir, io), "init");
    OpenOptions oo;
    oo.backend = NewMemoryBackend();
    oo.engine = kv::NewMemoryEngine();
    Must(Store::InitMetadata(*oo.engine), "init metadata");
    store = Must(Store::Open(dir, std::move(oo)), "open");
    fs = Must(Filesystem::Open(store.get()), "open fs");
    Must(fs->RecordMountPoint(kMount), "mount point");
    job = Must(fs->Mkdir(kRootIno, "job", 0755, kWho), "mkdir job").ino;
    shared = Must(fs->Mkdir(job, "shared", 0755, kWho), "mkdir shared").ino;
    for (int i = 0; i < kShared; i++) EnsureShared("s" + std::to_string(i));
  }

  ~Harness() {
    fs.reset();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }

  // Creates or truncates `name` (as open(O_CREAT|O_TRUNC) or O_EXCL does) with `data`;
  // remembers the bytes under the inode.
  uint64_t Write(uint64_t parent, const std::string& name, const std::string& data, int flags,
                 bool fsync_it) {
    uint64_t ino;
    FileHandle fh;
    auto existing = fs->Lookup(parent, name);
    if (existing.ok() && !(flags & O_EXCL)) {
      ino = existing->ino;
      fh = Must(fs->Open(ino, O_WRONLY | O_TRUNC), "open existing");
    } else {
      auto created = Must(fs->Create(parent, name, 0644, flags, kWho), "create");
      ino = created.first.ino;
      fh = created.second;
    }
    size_t done = 0;
    while (done < data.size()) {
      done += Must(fs->Write(fh, done, data.data() + done, data.size() - done), "write");
    }
    Must(fs->Flush(fh), "flush");
    if (fsync_it) Must(fs->Fsync(fh, false), "fsync");
    Must(fs->Release(fh), "release");
    known[ino] = data;
    return ino;
  }
  std::string Read(uint64_t ino) {
    uint64_t size = Must(fs->GetAttr(ino), "getattr").size;
    FileHandle fh = Must(fs->Open(ino, O_RDONLY), "open for read");
    std::string out(size + 1, '\0');
    size_t got = 0;
    while (got < out.size()) {
      size_t n = Must(fs->Read(fh, got, out.size() - got, out.data() + got), "read");
      if (n == 0) break;
      got += n;
    }
    Must(fs->Release(fh), "release after read");
    out.resize(got);
    return out;
  }

  // A shared file `snapfs rm` took (only removed snapshots named it) comes back, as a
  // TaskManager uploads a new one; one still there must hold its bytes.
  void EnsureShared(const std::string& name) {
    auto found = fs->Lookup(shared, name);
    if (found.ok()) {
      Check(Read(found->ino) == SharedBytes(name), "shared/" + name + " changed");
      return;
    }
    Check(found.status().Is(Code::kNotFound),
          "lookup shared/" + name + ": " + found.status().ToString());
    Write(shared, name, SharedBytes(name), O_WRONLY | O_CREAT | O_TRUNC, /*fsync_it=*/true);
  }

  // Byte 0 of the input: bit 0 commit by rename of an in-progress file (Flink on local
  // paths) or in place (object stores); bit 1 commit the marker a second time (a
  // rewritten `_metadata`); bit 2 unlink a shared file after the commit (Flink deleting
  // a file it no longer needs: hidden if pinned); bits 3-4 own files (0-3); bit 5 remove
  // the new snapshot at once.
  void Run(uint8_t flags, std::string_view marker) {
    runs++;
    const std::string chk = "chk-" + std::to_string(next_chk++);
    const uint64_t folder = Must(fs->Mkdir(job, chk, 0755, kWho), "mkdir chk").ino;
    const int own = (flags >> 3) & 3;
    for (int i = 0; i < own; i++) {
      const std::string name = "own" + std::to_string(i);
      const std::string bytes = Content(chk + "/" + name, 500 + 1500 * static_cast<size_t>(i));
      Write(folder, name, bytes, O_WRONLY | O_CREAT | O_TRUNC, true);
    }
    const std::string m(marker);
    for (int round = 0; round < ((flags & 2) ? 2 : 1); round++) {
      if (flags & 1) {
        const std::string tmp = "._metadata.inprogress." + std::to_string(round);
        Write(folder, tmp, m, O_WRONLY | O_CREAT | O_EXCL, true);
        Must(fs->Rename(folder, tmp, folder, "_metadata", 0), "rename marker");
      } else {
        Write(folder, "_metadata", m, O_WRONLY | O_CREAT | O_TRUNC, false);
      }
    }
    const uint64_t marker_ino = Must(fs->Lookup(folder, "_metadata"), "lookup marker").ino;
    Check(Read(marker_ino) == m, chk + "/_metadata does not read back as written");

    // Any committed marker makes a snapshot; a marker that is not Flink's just pins less.
    auto snap = fs->GetSnapshot(folder);
    Check(snap.ok(), chk + " with a committed _metadata is not a snapshot: " +
                         snap.status().ToString());
    Check(snap->marker == marker_ino, chk + ": the snapshot's marker is another file");
    CheckView(folder, chk, m);
    live.push_back(folder);

    if (flags & 4) {
      // Flink deleting a shared file it no longer needs, then a TaskManager uploading one
      // of the same name: the unlink hides it if a snapshot pins it, and the new file
      // replaces the hidden entry (O_EXCL succeeds). NotFound: the name was hidden already.
      const std::string name = "s" + std::to_string(marker.size() % kShared);
      Status s = fs->Unlink(shared, name);
      Check(s.ok() || s.Is(Code::kNotFound), "unlink shared/" + name + ": " + s.ToString());
      Write(shared, name, SharedBytes(name), O_WRONLY | O_CREAT | O_EXCL, true);
    }
    if (flags & 32) RemoveOldest(/*newest=*/true);
    while (live.size() > kLive) RemoveOldest(false);
    for (int i = 0; i < kShared; i++) EnsureShared("s" + std::to_string(i));

    auto problems = Must(fs->CheckSnapshots(), "check snapshots");
    if (!problems.empty()) Broken("snapshot check: " + problems.front());
    if (runs % 64 == 0) {
      FsckOptions fo;
      fo.verify_data = true;
      FsckReport r = Must(Fsck(*store, fo), "fsck");
      if (!r.ok()) Broken("fsck: " + r.problems.front());
      Must(RunGc(*store).status(), "gc");
      // Forget files that are gone (removed with their snapshots), so memory stays bounded.
      for (auto it = known.begin(); it != known.end();) {
        auto a = fs->GetAttr(it->first);
        if (!a.ok() && a.status().Is(Code::kNotFound)) {
          it = known.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // The view of a snapshot: the folder's own files, and referenced files whose names
  // the marker holds, each with the bytes it was written with.
  void CheckView(uint64_t folder, const std::string& chk, const std::string& marker) {
    for (const ViewFile& f : Must(fs->SnapshotFiles(folder), "snapshot files")) {
      auto k = known.find(f.ino);
      Check(k != known.end(), chk + " view " + f.path + ": a file this run never wrote");
      Check(Read(f.ino) == k->second, chk + " view " + f.path + " differs from what was written");
      Check(k->second.size() == f.size, chk + " view " + f.path + ": size differs");
      if (f.path.find('/') == std::string::npos) {
        auto in_folder = fs->Lookup(folder, f.path);
        if (in_folder.ok() && in_folder->ino == f.ino) continue;  // the folder's own file
      }
      // Referenced from outside the folder: the marker must name it.
      const size_t slash = f.path.rfind('/');
      const std::string base = slash == std::string::npos ? f.path : f.path.substr(slash + 1);
      Check(marker.find(base) != std::string::npos ||
                PercentDecoded(marker).find(base) != std::string::npos,
            chk + " pins " + f.path + ", which its marker does not name");
    }
  }

  // `snapfs rm` of the oldest (or newest) live snapshot; then every snapshot left must
  // still be complete: its view reads back.
  void RemoveOldest(bool newest) {
    if (live.empty()) return;
    const uint64_t dir = newest ? live.back() : live.front();
    if (newest) {
      live.pop_back();
    } else {
      live.pop_front();
    }
    const std::string path = Must(fs->PathOf(dir), "path of snapshot");
    Must(fs->RemoveSnapshots({dir}, /*dry_run=*/false, /*wait=*/true).status(), "rm");
    Check(!fs->GetSnapshot(dir).ok(), path + " is still a snapshot after rm");
    for (uint64_t d : live) {
      for (const ViewFile& f : Must(fs->SnapshotFiles(d), "snapshot files after rm")) {
        auto k = known.find(f.ino);
        Check(k != known.end() && Read(f.ino) == k->second,
              "after rm of " + path + ": a file of a kept snapshot changed: " + f.path);
      }
    }
  }
};

}  // namespace
}  // namespace snapfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One store for many inputs, so that snapshots overlap; a fresh one every kRunsPerStore
  // inputs, because the memory engine keeps every version it committed and an input
  // would get slower as the store ages.
  static constexpr uint64_t kRunsPerStore = 512;
  static std::unique_ptr<snapfs::Harness> h;
  if (size == 0 || size > 64 * 1024) return -1;  // a marker is small; reject, not crash
  if (!h || h->runs >= kRunsPerStore) {
    h.reset();
    h = std::make_unique<snapfs::Harness>();
  }
  h->Run(data[0], std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
