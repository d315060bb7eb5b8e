// A Flink-like checkpoint writer for the mount tests: what Flink's incremental RocksDB
// checkpoints do to a `file://` checkpoint directory, syscall for syscall (DESIGN.md
// section 1), driven one checkpoint at a time so tests can interleave deletes, moves,
// kills and CLI calls.
//
//   <base>/<job>/{shared,taskowned}/, chk-N/ with private files and _metadata
//   _metadata: Java DataOutput (magic 0x4960672d, version 3), shared files as writeUTF
//   "file:<absolute path>", private files as bare names, small state inlined; with
//   set_inline_handles(), also inline state handles that keep the path-like name of a
//   file that is never written (Flink's ByteStreamStateHandle for state under 20 KiB:
//   "file:<job>/chk-N/<uuid>" among the private handles, "file:<job>/shared/<uuid>"
//   among the shared ones), as Flink writes for RocksDB's MANIFEST, CURRENT, OPTIONS
//   savepoint-<6 hex>-<12 hex>/: flat, self-contained, bare names only
//
// Also the other side: Restore() reads a _metadata the way a restoring job would and
// checks every file it names against what was written.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/util/java_data.h"
#include "tests/util/mount_fixture.h"
#include "tests/util/random.h"

namespace snapfs::mounttest {

using test::JavaDataInput;
using test::JavaDataOutput;
using test::RandomUuid;

inline constexpr uint32_t kMetadataMagic = 0x4960672d;
// The handle kinds of our simplified savepoint-format serializer.
inline constexpr uint8_t kRelativeFileHandle = 14;  // private file, bare name
inline constexpr uint8_t kSharedFileHandle = 15;    // shared file, absolute file: URI
inline constexpr uint8_t kInlineHandle = 16;        // byte stream state inlined (< 20 KiB)
// Inline state with a path-like name (writeUTF name, then int length + bytes), in the
// shared or private list; the name names no file.
inline constexpr uint8_t kNamedInlineHandle = 17;
// The start of a _metadata of that format: magic, version 3, the checkpoint id, no master
// states and `operators` operators (each written next by the caller, its id first).
inline void WriteMetadataHeader(JavaDataOutput& md, uint64_t checkpoint_id, uint32_t operators) {
  md.WriteInt(kMetadataMagic);
  md.WriteInt(3);
  md.WriteLong(checkpoint_id);
  md.WriteInt(0);  // master states
  md.WriteInt(operators);
}
// Where Restore expects the bytes of a named inline handle: content[kInlineKey + uuid],
// uuid being the last component of its name (which rewrites keep).
inline constexpr const char* kInlineKey = "inline:";

inline std::string JobId(std::mt19937_64& rng) { return test::RandomHex(rng, 32); }

// One reference of a _metadata, as Restore parses it.
struct MetadataRef {
  bool shared = false;  // true: absolute (path after "file:", or another URI); false: bare
  std::string path;     // inline: the handle's name as written
  uint64_t size = 0;
  bool inline_data = false;  // a named inline handle: no file, the bytes are `data`
  std::string data;
  std::string raw;  // absolute: the string as written
};

// Parses our _metadata format; false if it is malformed.
inline bool ParseMetadata(const std::string& md, std::vector<MetadataRef>* refs,
                          uint64_t* id = nullptr) {
  JavaDataInput in(md);
  // In either list: the handle's name (no file behind it) and its bytes.
  auto read_named_inline = [&] {
    std::string name = in.ReadUTF();
    std::string data = in.ReadSizedBytes();
    refs->push_back({false, name, data.size(), true, data, ""});
  };
  if (in.ReadInt() != kMetadataMagic) return false;
  in.ReadInt();
  uint64_t cid = in.ReadLong();
  if (id) *id = cid;
  in.ReadInt();
  uint32_t ops = in.ReadInt();
  for (uint32_t o = 0; o < ops && in.ok(); o++) {
    in.ReadLong();
    uint32_t ns = in.ReadInt();
    for (uint32_t i = 0; i < ns && in.ok(); i++) {
      uint8_t kind = in.ReadByte();
      if (kind == kNamedInlineHandle) {
        read_named_inline();
        continue;
      }
      if (kind != kSharedFileHandle) return false;
      std::string uri = in.ReadUTF();
      uint64_t size = in.ReadLong();
      refs->push_back({true, uri.starts_with("file:") ? uri.substr(5) : uri, size, false, "", uri});
    }
    uint32_t np = in.ReadInt();
    for (uint32_t i = 0; i < np && in.ok(); i++) {
      uint8_t kind = in.ReadByte();
      if (kind == kNamedInlineHandle) {
        read_named_inline();
        continue;
      }
      if (kind == kSharedFileHandle) {  // a private file named by its absolute path
        std::string path = in.ReadUTF();
        uint64_t size = in.ReadLong();
        refs->push_back({true, path, size, false, "", path});
        continue;
      }
      if (kind != kRelativeFileHandle) return false;
      std::string name = in.ReadUTF();
      uint64_t size = in.ReadLong();
      refs->push_back({false, name, size, false, "", ""});
    }
    if (in.ReadByte() != kInlineHandle) return false;
    in.ReadSizedBytes();
  }
  return in.AtEnd();
}

// Uploads one file the way Flink's FsCheckpointStreamFactory does: O_CREAT|O_TRUNC,
// sequential writes of 4-64 KiB (sizes drawn from `rng`), fsync, close. "" or what failed.
inline std::string UploadLikeFlink(const std::string& path, const std::string& bytes,
                                   std::mt19937_64& rng) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return "open " + path + ": " + ErrnoName(errno);
  size_t off = 0;
  while (off < bytes.size()) {
    size_t n = std::min<size_t>(bytes.size() - off, 4 * kKiB + rng() % (60 * kKiB + 1));
    int e = WriteAllFd(fd, std::string_view(bytes).substr(off, n));
    if (e != 0) {
      ::close(fd);
      return "write " + path + ": " + ErrnoName(e);
    }
    off += n;
  }
  if (::fsync(fd) != 0) {
    std::string e = "fsync " + path + ": " + ErrnoName(errno);
    ::close(fd);
    return e;
  }
  if (::close(fd) != 0) return "close " + path + ": " + ErrnoName(errno);
  return "";
}

// Everything the simulated jobs wrote: absolute path at write time -> bytes.
using ContentMap = std::map<std::string, std::string>;

class FlinkJob {
 public:
  struct Checkpoint {
    int id = 0;
    std::string name;                       // chk-N
    std::vector<std::string> priv;          // private file names in chk-N
    std::vector<std::string> refs;          // absolute paths of the shared files it references
    std::vector<std::string> inline_names;  // names of its named inline handles, as written
    std::string metadata;
    // The folder, if not the job's own chk-N (a checkpoint of another job this one
    // restored from in CLAIM mode, see Claim()).
    std::string dir;
  };

  // `base` is the checkpoint directory (the mount, or a folder in it).
  FlinkJob(std::string base, std::string job, uint64_t seed, ContentMap* content)
      : base_(std::move(base)), job_(std::move(job)), rng_(seed), content_(content) {}

  const std::string& job() const { return job_; }
  std::string Dir() const { return base_ + "/" + job_; }
  std::string Path(const std::string& rel) const { return Dir() + "/" + rel; }
  std::deque<Checkpoint>& retained() { return retained_; }
  // Where a retained checkpoint's files are: its own folder or the claimed one.
  std::string CpDir(const Checkpoint& cp) const { return cp.dir.empty() ? Path(cp.name) : cp.dir; }
  std::string CpPath(const Checkpoint& cp, const std::string& rel) const {
    return CpDir(cp) + "/" + rel;
  }
  std::mt19937_64& rng() { return rng_; }
  // Shared files (absolute paths) of the job's current state.
  const std::vector<std::string>& state() const { return state_; }
  // From the next checkpoint on, `own` inline handles named like files of chk-N and
  // `shared` named like files of shared/ (none of those files is ever written).
  void set_inline_handles(int own, int shared) {
    inline_own_ = own;
    inline_shared_ = shared;
  }
  // From the next checkpoint on, private files are named by their absolute path (a plain
  // "/..." path, no scheme) instead of a bare name.
  void set_absolute_private(bool on) { absolute_private_ = on; }

  // The JobManager's base folders. Empty string on success, else what failed.
  std::string Init() {
    for (const char* d : {"", "/shared", "/taskowned"}) {
      if (::mkdir((Dir() + d).c_str(), 0755) != 0)
        return "mkdir " + Dir() + d + ": " + ErrnoName(errno);
    }
    return "";
  }

  // TaskManagers on other hosts: every file but _metadata is written through the path
  // `via` maps it to (another mount of the same store), as it is named in the metadata.
  void set_upload_via(std::function<std::string(const std::string&)> via) {
    upload_via_ = std::move(via);
  }

  // Uploads one file the way FsCheckpointStreamFactory does (UploadLikeFlink).
  std::string Upload(const std::string& path, const std::string& bytes) {
    const std::string at = upload_via_ ? upload_via_(path) : path;
    if (auto e = UploadLikeFlink(at, bytes, rng_); !e.empty()) return e;
    (*content_)[path] = bytes;
    return "";
  }

  // Takes checkpoint N+1: `fresh` new shared files of `size` bytes each (random), the
  // job's earlier shared state minus `compacted` dropped files, `priv` private files, and
  // `extra` absolute paths of files elsewhere (a CLAIM-restored job's inherited state).
  // Commits _metadata through ._metadata.inprogress.<uuid> + rename, as on local disks.
  std::string TakeCheckpoint(int fresh, size_t size, int compacted = 0, int priv = 1,
                             const std::vector<std::string>& extra = {}) {
    Checkpoint cp;
    cp.id = ++last_id_;
    cp.name = "chk-" + std::to_string(cp.id);
    pending_ = {cp.name};
    if (::mkdir(Path(cp.name).c_str(), 0755) != 0)
      return "mkdir " + cp.name + ": " + ErrnoName(errno);
    for (int i = 0; i < compacted && !state_.empty(); i++) {
      state_.erase(state_.begin() + static_cast<long>(rng_() % state_.size()));
    }
    for (int i = 0; i < fresh; i++) {
      std::string p = Path("shared/" + RandomUuid(rng_));
      pending_.push_back(p);
      if (auto e = Upload(p, RandomBytes(size, rng_())); !e.empty()) return e;
      state_.push_back(p);
    }
    for (int i = 0; i < priv; i++) {
      std::string name = RandomUuid(rng_);
      pending_.push_back(Path(cp.name + "/" + name));
      if (auto e = Upload(Path(cp.name + "/" + name),
                          RandomBytes(1 * kKiB + rng_() % (8 * kKiB), rng_()));
          !e.empty()) {
        return e;
      }
      cp.priv.push_back(name);
    }
    cp.refs = state_;
    for (const auto& x : extra) cp.refs.push_back(x);
    JavaDataOutput md;
    WriteMetadataHeader(md, static_cast<uint64_t>(cp.id), 1);
    md.WriteLong(rng_());
    // A named inline handle: the name of a file that is never written, and its bytes.
    auto named_inline = [&](const std::string& folder) {
      std::string uuid = RandomUuid(rng_);
      std::string name = "file:" + Path(folder + "/" + uuid);
      std::string data = RandomBytes(64 + rng_() % (2 * kKiB), rng_());
      md.WriteByte(kNamedInlineHandle);
      md.WriteUTF(name);
      md.WriteSizedBytes(data);
      (*content_)[kInlineKey + uuid] = data;
      cp.inline_names.push_back(name);
    };
    md.WriteInt(static_cast<uint32_t>(cp.refs.size() + inline_shared_));
    for (const auto& r : cp.refs) {
      md.WriteByte(kSharedFileHandle);
      md.WriteUTF("file:" + r);
      md.WriteLong((*content_)[r].size());
    }
    for (int i = 0; i < inline_shared_; i++) named_inline("shared");
    md.WriteInt(static_cast<uint32_t>(cp.priv.size() + inline_own_));
    for (const auto& p : cp.priv) {
      md.WriteByte(absolute_private_ ? kSharedFileHandle : kRelativeFileHandle);
      md.WriteUTF(absolute_private_ ? Path(cp.name + "/" + p) : p);
      md.WriteLong((*content_)[Path(cp.name + "/" + p)].size());
    }
    for (int i = 0; i < inline_own_; i++) named_inline(cp.name);
    md.WriteByte(kInlineHandle);
    md.WriteSizedBytes(RandomBytes(rng_() % (4 * kKiB), rng_()));
    cp.metadata = md.bytes();
    std::string tmp = Path(cp.name + "/._metadata.inprogress." + RandomUuid(rng_));
    int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return "open " + tmp + ": " + ErrnoName(errno);
    int e = WriteAllFd(fd, cp.metadata);
    if (e != 0 || ::fsync(fd) != 0) {
      ::close(fd);
      return "write " + tmp + ": " + ErrnoName(e ? e : errno);
    }
    if (::close(fd) != 0) return "close " + tmp + ": " + ErrnoName(errno);
    if (::rename(tmp.c_str(), Path(cp.name + "/_metadata").c_str()) != 0) {
      return "rename to _metadata: " + ErrnoName(errno);
    }
    (*content_)[Path(cp.name + "/_metadata")] = cp.metadata;
    retained_.push_back(cp);
    pending_.clear();
    return "";
  }

  // The job restarts after its JobManager died (kill -9 of the daemon under it) and
  // restores its last completed checkpoint, as Flink does: the state is that checkpoint's
  // again, and the checkpoint that was in progress never completed. Its files (the fresh
  // shared ones and chk-N's) are left where they are, referenced by no completed
  // checkpoint the job knows: the orphans of FLINK-24852, which `snapfs orphans --delete`
  // may rightly remove. Returns those paths, chk-N/_metadata last; the caller stops
  // expecting them. (If the interrupted _metadata rename went through unacknowledged,
  // chk-N is a snapshot the job does not know of: see Torture's Recover.)
  std::vector<std::string> Restart() {
    std::vector<std::string> gone;
    if (!pending_.empty()) {
      const std::string folder = Path(pending_.front());
      gone.assign(pending_.begin() + 1, pending_.end());
      gone.push_back(folder + "/_metadata");
      pending_.clear();
    }
    state_.clear();
    if (!retained_.empty()) {
      for (const auto& r : retained_.back().refs) {
        if (Owns(r)) state_.push_back(r);
      }
    }
    return gone;
  }

  // Restores from `cp`, a retained checkpoint of another job (in `cp_dir`), in CLAIM mode:
  // this job takes it over. Its shared files become this job's state (named by their
  // absolute paths in the other job's folder, as Flink's _metadata does), the checkpoint
  // counter continues from it, and it is the first retained checkpoint, so this job
  // later subsumes it and deletes the other job's shared files once it no longer uses
  // them (Flink's SharedStateRegistry after a CLAIM restore).
  // `owner_dirs`: the other job's folder and those of the jobs it had claimed from.
  void Claim(Checkpoint cp, const std::string& cp_dir, std::vector<std::string> owner_dirs) {
    cp.dir = cp_dir;
    last_id_ = std::max(last_id_, cp.id);
    state_ = cp.refs;
    owned_ = std::move(owner_dirs);
    retained_.push_front(std::move(cp));
  }
  // Folders of jobs this one claimed a checkpoint of (their shared/ files are its own).
  const std::vector<std::string>& claimed() const { return owned_; }

  // Shared files of this job no retained checkpoint (but `dropping`) references.
  std::vector<std::string> Unreferenced(const Checkpoint& dropping) const {
    std::set<std::string> live;
    for (const auto& c : retained_) {
      if (c.id == dropping.id) continue;
      live.insert(c.refs.begin(), c.refs.end());
    }
    std::vector<std::string> out;
    for (const auto& r : dropping.refs) {
      if (!live.count(r) && Owns(r) && !Contains(state_, r)) out.push_back(r);
    }
    return out;
  }

  // Subsumes the oldest retained checkpoint as CompletedCheckpoint.discard() does:
  // _metadata, private files, non-recursive rmdir, then the shared files no longer used.
  // With `race`, the shared files go first (the asynchronous deleter ran ahead).
  std::string Subsume(bool race = false) {
    if (retained_.empty()) return "nothing to subsume";
    Checkpoint old = retained_.front();
    std::vector<std::string> drop = Unreferenced(old);
    auto unlink_shared = [&]() -> std::string {
      for (const auto& s : drop) {
        if (::unlink(s.c_str()) != 0) return "unlink " + s + ": " + ErrnoName(errno);
      }
      return "";
    };
    if (race) {
      if (auto e = unlink_shared(); !e.empty()) return e;
    }
    if (::unlink(CpPath(old, "_metadata").c_str()) != 0)
      return "unlink _metadata: " + ErrnoName(errno);
    for (const auto& p : old.priv) {
      if (::unlink(CpPath(old, p).c_str()) != 0) return "unlink " + p + ": " + ErrnoName(errno);
    }
    if (::rmdir(CpDir(old).c_str()) != 0) return "rmdir " + old.name + ": " + ErrnoName(errno);
    if (!race) {
      if (auto e = unlink_shared(); !e.empty()) return e;
    }
    retained_.pop_front();
    last_dropped_ = drop;
    return "";
  }
  const std::vector<std::string>& last_dropped() const { return last_dropped_; }

  // A savepoint: a flat self-contained folder with _metadata naming its files by bare
  // name (created in place, as Flink does on object stores). Returns its folder name.
  std::string TakeSavepoint(int files, size_t size, std::string* error) {
    std::string name = "savepoint-" + test::RandomHex(rng_, 6) + "-" + test::RandomHex(rng_, 12);
    std::string dir = base_ + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) {
      *error = "mkdir " + dir + ": " + ErrnoName(errno);
      return name;
    }
    Checkpoint sp;
    for (int i = 0; i < files; i++) {
      std::string f = RandomUuid(rng_);
      if (auto e = Upload(dir + "/" + f, RandomBytes(size, rng_())); !e.empty()) {
        *error = e;
        return name;
      }
      sp.priv.push_back(f);
    }
    JavaDataOutput md;
    WriteMetadataHeader(md, 0, 1);
    md.WriteLong(rng_());
    md.WriteInt(0);
    md.WriteInt(static_cast<uint32_t>(sp.priv.size()));
    for (const auto& p : sp.priv) {
      md.WriteByte(kRelativeFileHandle);
      md.WriteUTF(p);
      md.WriteLong(size);
    }
    md.WriteByte(kInlineHandle);
    md.WriteSizedBytes("");
    if (auto e = Upload(dir + "/_metadata", md.bytes()); !e.empty()) *error = e;
    return name;
  }

 private:
  // Whether the job may delete shared file `p`: in its own folder or a claimed job's.
  bool Owns(const std::string& p) const {
    if (p.starts_with(Dir() + "/")) return true;
    for (const auto& d : owned_) {
      if (p.starts_with(d + "/")) return true;
    }
    return false;
  }
  static bool Contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  }
  std::string base_, job_;
  std::mt19937_64 rng_;
  ContentMap* content_;
  int last_id_ = 0;
  int inline_own_ = 0, inline_shared_ = 0;
  std::function<std::string(const std::string&)> upload_via_;
  bool absolute_private_ = false;
  std::vector<std::string> state_;
  std::deque<Checkpoint> retained_;
  std::vector<std::string> last_dropped_;
  // The checkpoint in progress: its chk-N name, then every file uploaded for it.
  std::vector<std::string> pending_;
  std::vector<std::string> owned_;  // folders of jobs a checkpoint was claimed from
};

// Restores a checkpoint as a job would: reads `read_dir`/_metadata and every file it
// names, comparing each with what was written. Bare names are read from `read_dir` and
// expected as written under `orig_dir`; an absolute path p is read from resolve(p).first
// and expected as written at resolve(p).second; named inline handles are not opened (as
// Flink does not), their bytes must be as written. Returns "" if every file is there byte
// for byte, else the first problem. `files` gets the number of files checked.
using ResolveFn = std::function<std::pair<std::string, std::string>(const std::string&)>;
inline std::string Restore(const std::string& read_dir, const std::string& orig_dir,
                           const ContentMap& content, const ResolveFn& resolve,
                           size_t* files = nullptr) {
  int err = 0;
  std::string md = ReadFile(read_dir + "/_metadata", &err);
  if (err != 0) return read_dir + "/_metadata: " + ErrnoName(err);
  std::vector<MetadataRef> refs;
  if (!ParseMetadata(md, &refs)) return read_dir + "/_metadata: malformed";
  size_t n = 0;
  for (const auto& r : refs) {
    if (r.inline_data) {  // no file to read: the bytes must be the ones written
      std::string uuid = r.path.substr(r.path.rfind('/') + 1);
      auto want = content.find(kInlineKey + uuid);
      if (want == content.end()) return "inline handle " + r.path + ": unknown name";
      if (r.data != want->second) return "inline handle " + r.path + ": bytes differ";
      continue;
    }
    std::pair<std::string, std::string> at =
        r.shared ? resolve(r.path)
                 : std::make_pair(read_dir + "/" + r.path, orig_dir + "/" + r.path);
    auto want = content.find(at.second);
    if (want == content.end()) return "test bug: nothing was written at " + at.second;
    std::string got = ReadFile(at.first, &err);
    if (err != 0) return at.first + ": " + ErrnoName(err);
    if (got.size() != r.size || got != want->second) {
      return at.first + ": contents differ (" + std::to_string(got.size()) + " bytes, expected " +
             std::to_string(want->second.size()) + ")";
    }
    n++;
  }
  if (files) *files = n;
  return "";
}

// In place: every path is read where the metadata says.
inline std::pair<std::string, std::string> InPlace(const std::string& p) { return {p, p}; }

}  // namespace snapfs::mounttest
