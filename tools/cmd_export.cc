// snapfs export SNAPSHOT DEST [--relocate [--as URI] | --rewrite-prefix OLD=NEW]
//                [--verbose] [--json]: write a snapshot's self-contained copy (its view:
// marker, own files, every file it references) into DEST, which must not exist or be an
// empty folder.
//   --relocate: every absolute reference that resolves to a file of the copy is rewritten
//     to where the copy holds it (DEST/<view path>, or <URI>/<view path> with --as, for a
//     DEST that is a staging folder to be moved), writeUTF lengths fixed;
//   --rewrite-prefix: references starting with OLD are rewritten to start with NEW.
//
// Reading: a mounted store is read through MOUNT/.snapshots/<snapshot>/<file> by this
// process (the daemon only lists the files); an unmounted one in-process. Every file is
// written, fsync'd and then verified: re-read from DEST and compared (XXH3-128, and size)
// with the bytes read from the source; then the exported marker is scanned again and the
// references that resolved when the snapshot was committed must have their files in DEST
// (tools/export_verify.h). References that resolved to nothing then (Flink's inline state
// keeps a path-like name) are counted and, with --verbose, listed; never corruption.
// On any failure DEST is left as it is (say so) and the exit code is 1.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/fs/filesystem.h"
#include "core/snap/marker_scan.h"
#include "tools/cli_util.h"
#include "tools/export_verify.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

namespace {

constexpr size_t kBuf = 1 << 20;

// Where a file the marker references by mount path sits in the snapshot's view (the rule
// the views use: relative to the snapshot folder, else to its job folder, else under
// _other_jobs/ at its mount path).
std::string ViewPathFor(const std::string& ref, const std::string& snap_path) {
  std::string job;
  if (auto slash = snap_path.rfind('/'); slash != std::string::npos)
    job = snap_path.substr(0, slash);
  if (!snap_path.empty() && ref.starts_with(snap_path + "/"))
    return ref.substr(snap_path.size() + 1);
  if (job.empty()) return ref;
  if (ref.starts_with(job + "/")) return ref.substr(job.size() + 1);
  return std::string(kOtherJobsDir) + "/" + ref;
}

Result<std::string> ReadWhole(Filesystem& fs, uint64_t ino) {
  ASSIGN_OR_RETURN(FileHandle fh, fs.Open(ino, O_RDONLY));
  std::string out;
  std::string buf(kBuf, '\0');
  Status st;
  for (uint64_t off = 0;;) {
    auto n = fs.Read(fh, off, buf.size(), buf.data());
    if (!n.ok()) {
      st = n.status();
      break;
    }
    if (*n == 0) break;
    out.append(buf.data(), *n);
    off += *n;
  }
  Status rs = fs.Release(fh);
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(rs);
  return out;
}

struct Hash128 {
  uint64_t lo = 0, hi = 0;
  bool operator==(const Hash128&) const = default;
};

class Hasher {
 public:
  Hasher() : st_(XXH3_createState()) { XXH3_128bits_reset(st_); }
  ~Hasher() { XXH3_freeState(st_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Update(const char* p, size_t n) { XXH3_128bits_update(st_, p, n); }
  Hash128 Digest() const {
    XXH128_hash_t h = XXH3_128bits_digest(st_);
    return {h.low64, h.high64};
  }

 private:
  XXH3_state_t* st_;
};

Status WriteAllFd(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return PosixError("write " + path, errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + path, errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return PosixError("fsync " + path, e);
  return Status::OK();
}

// A view path must stay inside DEST.
bool SafeRelative(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string part = p.substr(i, j - i);
    if (part.empty() || part == "." || part == "..") return false;
    i = j + 1;
  }
  return true;
}

// DEST must not exist (its parent must) or be an empty folder, and must not be a
// symbolic link (the copy goes where DEST names, never where a link points). Sets *created.
Status PrepareDest(const std::string& dest, bool* created) {
  *created = false;
  struct stat st;
  std::string bare = dest;  // "d/" names d itself, not what a link d points to
  while (bare.size() > 1 && bare.back() == '/') bare.pop_back();
  if (::lstat(bare.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    return Status::InvalidArgument(dest +
                                   " is a symbolic link (refusing; nothing written): "
                                   "name the folder it points to");
  }
  if (::stat(dest.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument(dest +
                                     " exists and is not a folder (refusing; nothing written)");
    }
    auto empty = DirIsEmpty(dest);
    if (!empty.ok()) return empty.status().WithContext(dest);
    if (!*empty) {
      return Status::InvalidArgument(dest + " exists and is not empty (refusing; nothing written)");
    }
    return Status::OK();
  }
  if (errno != ENOENT) return PosixError(dest, errno);
  if (::mkdir(dest.c_str(), 0755) != 0) {
    return PosixError("create " + dest + " (its parent folder must exist)", errno);
  }
  *created = true;
  return Status::OK();
}

// The folder `rel` ("" for DEST itself) below the open DEST, made if missing, opened
// without following a symbolic link anywhere on the way: nothing is written through a
// link that appeared in DEST (another user's, in a shared DEST) while the copy runs.
Result<int> OpenDestDir(int dest_fd, const std::string& dest, const std::string& rel) {
  int fd = ::fcntl(dest_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return PosixError("dup " + dest, errno);
  for (size_t i = 0; i < rel.size();) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    std::string part = rel.substr(i, j - i);
    i = j + 1;
    if (::mkdirat(fd, part.c_str(), 0755) != 0 && errno != EEXIST) {
      Status s = PosixError("create " + dest + "/" + rel.substr(0, j), errno);
      ::close(fd);
      return s;
    }
    int next = ::openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    ::close(fd);
    if (next < 0) {
      return PosixError("open " + dest + "/" + rel.substr(0, j) +
                            (e == ELOOP || e == ENOTDIR ? " (not a folder: a symbolic link?)" : ""),
                        e);
    }
    fd = next;
  }
  return fd;
}

struct Exported {
  std::string path;  // view path
  uint64_t size = 0;
  Hash128 hash;
};

}  // namespace

Result<nlohmann::json> FilesRequest(Filesystem& fs, const nlohmann::json& req) {
  ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, rel);
  ASSIGN_OR_RETURN(SnapshotInfo snap, ResolveSnapshot(fs, rel, label));
  ASSIGN_OR_RETURN(auto files, fs.SnapshotFiles(snap.dir));
  nlohmann::json list = nlohmann::json::array();
  std::map<std::string, uint64_t> by_path;
  std::map<uint64_t, std::string> by_ino;
  for (const auto& f : files) {
    list.push_back({{"path", f.path}, {"ino", f.ino}, {"size", f.size}});
    by_path.emplace(f.path, f.ino);
    by_ino.emplace(f.ino, f.path);
  }
  // Where each reference of the marker into the mount is in the view (null: dangling).
  std::vector<std::string> mounts = fs.MountPoints();
  ASSIGN_OR_RETURN(std::string marker, ReadWhole(fs, snap.marker));
  nlohmann::json refs = nlohmann::json::array();
  for (const auto& r : ScanMarker(marker, mounts)) {
    if (r.kind != MarkerReference::kInMount) continue;
    nlohmann::json view = nullptr;
    std::string v = ViewPathFor(r.path, snap.path);
    if (by_path.count(v)) {
      view = v;
    } else if (auto ino = fs.ResolvePath(r.path); ino.ok() && by_ino.count(*ino)) {
      view = by_ino[*ino];  // the snapshot moved since it completed: found by inode
    }
    refs.push_back({{"ref", r.path}, {"view_path", view}});
  }
  return nlohmann::json{{"snapshot", SnapshotJson(snap)},
                        {"files", std::move(list)},
                        {"mount_points", mounts},
                        {"references", std::move(refs)}};
}

int CmdExport(const Args& args) {
  po::options_description opts("options");
  std::string snapshot, dest, rewrite, as;
  opts.add_options()("snapshot", po::value(&snapshot)->required(),
                     "the snapshot folder (inside a snapfs mount, or STORE/path)")(
      "dest", po::value(&dest)->required(), "where to write the copy: absent or an empty folder")(
      "relocate", po::bool_switch(),
      "rewrite every absolute marker reference to a file of the copy to where the copy "
      "holds it (under DEST, or under --as)")(
      "as", po::value(&as),
      "with --relocate: where DEST will be when it is used (it is a staging folder), e.g. "
      "/backup/chk-42, file:///backup/chk-42 or hdfs:///backup/job/chk-42")(
      "rewrite-prefix", po::value(&rewrite),
      "OLD=NEW: rewrite marker references starting with OLD to start with NEW (e.g. "
      "file:/mnt/ckpt/job/=file:/backup/chk-42/; end both with '/')")(
      "verbose,v", po::bool_switch(),
      "list the references that name no file (inline state, resolved to nothing when the "
      "snapshot was committed)")("offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("snapshot", 1).add("dest", 1);
  po::variables_map vm;
  if (auto rc = Parse("export",
                      "SNAPSHOT DEST [--relocate [--as URI] | --rewrite-prefix OLD=NEW] "
                      "[--verbose] [--json]",
                      args, opts, pos, &vm,
                      {"snapfs export /mnt/ckpt/job/chk-42 /backup/chk-42 --relocate",
                       "snapfs export /mnt/ckpt/job/chk-42 /staging/chk-42 --relocate "
                       "--as hdfs:///backup/job/chk-42"})) {
    return *rc;
  }
  bool json = vm["json"].as<bool>();
  bool verbose = vm["verbose"].as<bool>();
  bool relocating = vm["relocate"].as<bool>();
  std::string old_prefix, new_prefix, new_root;
  bool rewriting = vm.count("rewrite-prefix") > 0;
  if (relocating && rewriting) {
    return UsageError("export",
                      "--relocate and --rewrite-prefix exclude each other (--relocate "
                      "already rewrites every reference to a file of the copy)");
  }
  if (vm.count("as") && !relocating) {
    return UsageError("export", "--as only goes with --relocate");
  }
  RelocateTarget target;
  if (relocating) {
    auto t = ParseRelocateTarget(vm.count("as") ? as : LexicalAbsolute(dest));
    if (!t.ok()) {
      return UsageError("export", t.status().message());
    }
    target = *t;
  }
  if (rewriting) {
    size_t eq = rewrite.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == rewrite.size()) {
      return UsageError("export", "--rewrite-prefix takes OLD=NEW, both non-empty");
    }
    old_prefix = rewrite.substr(0, eq);
    new_prefix = rewrite.substr(eq + 1);
    new_root = LocalRoot(new_prefix);
    if (new_root.empty() || new_root == "/") {
      return UsageError("export",
                        "--rewrite-prefix: NEW must be an absolute path or a file: URI naming a "
                        "folder other than / (it is where the copy will be found), got '" +
                            new_prefix + "'");
    }
  }

  auto pt = ResolvePathArg(snapshot);
  if (!pt.ok()) return Fail("export", pt.status());
  FsClient client(pt->target);
  auto answer = client.Ask("snap-files", {{"path", pt->rel}, {"label", snapshot}});
  if (!answer.ok()) return Fail("export", answer.status());
  nlohmann::json listing = std::move(answer).value();
  const auto& snap = listing["snapshot"];
  std::string snap_path = snap["path"].get<std::string>();
  std::string marker_name = snap["marker_name"].get<std::string>();
  std::vector<std::string> mounts = listing["mount_points"].get<std::vector<std::string>>();

  // Where the bytes come from.
  Filesystem* fs = nullptr;
  std::string view_base;
  if (client.mounted()) {
    if (pt->mountpoint.empty()) {
      return Fail("export",
                  Status::InvalidArgument(
                      "the store is mounted by pid " + std::to_string(pt->target.daemon_pid) +
                      " but its mount point is not visible here: name the snapshot by "
                      "its path inside the mount"));
    }
    if (snap_path.empty() || snap_path.starts_with("?")) {
      return Fail("export", Status::NotSupported(snapshot + " has no view under " + kViewsName +
                                                 " (a snapshot at the mount root or a detached "
                                                 "folder): export it unmounted"));
    }
    view_base = pt->mountpoint + "/" + kViewsName + "/" + snap_path;
    std::string abs_dest = LexicalAbsolute(dest);
    std::string own = pt->mountpoint + "/" + snap_path;
    if (abs_dest == own || abs_dest.starts_with(own + "/")) {
      return Fail("export",
                  Status::InvalidArgument(dest + " is inside the snapshot itself (refusing)"));
    }
  } else {
    auto f = client.DirectFs("snapfs export");
    if (!f.ok()) return Fail("export", f.status());
    fs = *f;
  }

  bool created = false;
  if (Status s = PrepareDest(dest, &created); !s.ok()) return Fail("export", s);
  int dest_fd = ::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dest_fd < 0) return Fail("export", PosixError("open " + dest, errno));
  struct DestCloser {
    int fd;
    ~DestCloser() { ::close(fd); }
  } dest_closer{dest_fd};
  std::vector<Exported> written;
  std::set<std::string> dirs;  // created under DEST, to fsync
  size_t rewritten = 0;        // references rewritten (--rewrite-prefix) or relocated
  const MarkerRefs refs = RefsFromListing(listing["references"]);
  std::string original_marker;                              // as read, when it is rewritten
  std::set<std::pair<std::string, std::string>> relocated;  // (text written, view path)
  // --relocate: a reference that resolved when the snapshot was committed goes to where
  // the copy holds its file; the others (inline state names) stay as written.
  RelocateFn relocate = [&](const MarkerReference& r,
                            std::string_view text) -> std::optional<std::string> {
    auto it = refs.resolved.find(r.path);
    if (it == refs.resolved.end()) return std::nullopt;
    std::string to = RelocatedText(text, it->second, target);
    relocated.emplace(to, it->second);
    return to;
  };
  auto failed = [&](const Status& s) {
    Fail("export", s);
    std::cerr << "snapfs export: " << dest << " is left in place with what was written ("
              << written.size() << " file" << (written.size() == 1 ? "" : "s")
              << "); remove it before trying again\n";
    return kExitFailure;
  };

  // Copy.
  const auto& files = listing["files"];
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const auto& f : files) total_bytes += f["size"].get<uint64_t>();
  Progress progress;
  std::string buf(kBuf, '\0');
  for (size_t i = 0; i < files.size(); i++) {
    std::string vpath = files[i]["path"].get<std::string>();
    uint64_t ino = files[i]["ino"].get<uint64_t>();
    uint64_t size = files[i]["size"].get<uint64_t>();
    progress.Show("exporting " + std::to_string(i + 1) + "/" + std::to_string(files.size()) +
                  " files, " + HumanBytes(done_bytes) + " of " + HumanBytes(total_bytes));
    if (!SafeRelative(vpath)) {
      progress.Done();
      return failed(Status::Corruption("bad path in the snapshot view: '" + vpath + "'"));
    }
    size_t last = vpath.rfind('/');
    std::string parent = last == std::string::npos ? "" : vpath.substr(0, last);
    for (size_t slash = vpath.find('/'); slash != std::string::npos;
         slash = vpath.find('/', slash + 1)) {
      dirs.insert(dest + "/" + vpath.substr(0, slash));
    }
    auto dir_fd = OpenDestDir(dest_fd, dest, parent);
    if (!dir_fd.ok()) {
      progress.Done();
      return failed(dir_fd.status());
    }
    std::string out_path = dest + "/" + vpath;
    std::string leaf = vpath.substr(last == std::string::npos ? 0 : last + 1);
    // The copy is readable by group and others only where the snapshot's file is: a 0600
    // file stays 0600 (and the umask applies as to any new file).
    uint32_t src_mode = 0;
    if (fs) {
      if (auto a = fs->GetAttr(ino); a.ok()) src_mode = a->mode;
    } else if (struct stat sst; ::stat((view_base + "/" + vpath).c_str(), &sst) == 0) {
      src_mode = sst.st_mode;
    }
    int out = ::openat(*dir_fd, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0600 | (src_mode & 044));
    int open_errno = errno;
    ::close(*dir_fd);
    if (out < 0) {
      progress.Done();
      return failed(PosixError("create " + out_path, open_errno));
    }
    Hasher h;
    uint64_t out_size = 0;
    uint64_t in_size = 0;
    bool is_marker = (rewriting || relocating) && vpath == marker_name;
    std::string whole;  // the marker, when it is rewritten
    auto sink = [&](const char* p, size_t n) -> Status {
      in_size += n;
      done_bytes += n;
      if (is_marker) {
        whole.append(p, n);
        return Status::OK();
      }
      h.Update(p, n);
      out_size += n;
      return WriteAllFd(out, p, n, out_path);
    };
    Status st;
    if (fs) {
      auto fh = fs->Open(ino, O_RDONLY);
      if (!fh.ok()) {
        st = fh.status().WithContext("open " + vpath);
      } else {
        for (uint64_t off = 0; st.ok();) {
          auto n = fs->Read(*fh, off, buf.size(), buf.data());
          if (!n.ok()) {
            st = n.status().WithContext("read " + vpath);
            break;
          }
          if (*n == 0) break;
          off += *n;
          st = sink(buf.data(), *n);
        }
        Status rs = fs->Release(*fh);
        if (st.ok()) st = rs;
      }
    } else {
      std::string in_path = view_base + "/" + vpath;
      int in = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (in < 0) {
        st = PosixError("open " + in_path, errno);
      } else {
        while (st.ok()) {
          ssize_t n = ::read(in, buf.data(), buf.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            st = PosixError("read " + in_path, errno);
            break;
          }
          if (n == 0) break;
          st = sink(buf.data(), static_cast<size_t>(n));
        }
        ::close(in);
      }
    }
    if (st.ok() && in_size != size) {
      st = Status::IOError(vpath + ": read " + std::to_string(in_size) + " bytes, expected " +
                           std::to_string(size) + " (did it change during the export?)");
    }
    if (st.ok() && is_marker) {
      auto r = rewriting ? RewriteMarkerPrefix(whole, old_prefix, new_prefix, &rewritten)
                         : RelocateMarkerReferences(whole, mounts, relocate, &rewritten);
      original_marker = whole;
      if (!r.ok()) {
        st = r.status().WithContext("rewrite " + vpath);
      } else {
        h.Update(r->data(), r->size());
        out_size = r->size();
        st = WriteAllFd(out, r->data(), r->size(), out_path);
      }
    }
    if (st.ok() && ::fsync(out) != 0) st = PosixError("fsync " + out_path, errno);
    // Drop the cached pages, so the verification reads what reached the disk.
    if (st.ok()) (void)::posix_fadvise(out, 0, 0, POSIX_FADV_DONTNEED);
    if (::close(out) != 0 && st.ok()) st = PosixError("close " + out_path, errno);
    written.push_back({vpath, out_size, h.Digest()});
    if (!st.ok()) {
      progress.Done();
      return failed(st);
    }
  }
  for (const auto& d : dirs) {
    if (Status s = FsyncPath(d); !s.ok()) return failed(s);
  }
  if (Status s = FsyncPath(dest); !s.ok()) return failed(s);
  if (created) {
    std::string abs = LexicalAbsolute(dest);
    std::string parent = abs.substr(0, abs.rfind('/'));
    if (Status s = FsyncPath(parent.empty() ? "/" : parent); !s.ok()) return failed(s);
  }

  // Verify: every file as written.
  for (size_t i = 0; i < written.size(); i++) {
    progress.Show("verifying " + std::to_string(i + 1) + "/" + std::to_string(written.size()) +
                  " files");
    const auto& e = written[i];
    std::string p = dest + "/" + e.path;
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      progress.Done();
      return failed(PosixError("verify: open " + p, errno));
    }
    Hasher h;
    uint64_t n_total = 0;
    Status st;
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        st = PosixError("verify: read " + p, errno);
        break;
      }
      if (n == 0) break;
      h.Update(buf.data(), static_cast<size_t>(n));
      n_total += static_cast<uint64_t>(n);
    }
    ::close(fd);
    if (st.ok() && (n_total != e.size || !(h.Digest() == e.hash))) {
      st = Status::Corruption("verify: " + p + " differs from the snapshot's " + e.path + " (" +
                              std::to_string(n_total) + " bytes read back, " +
                              std::to_string(e.size) + " written)");
    }
    if (!st.ok()) {
      progress.Done();
      return failed(st);
    }
  }
  progress.Done();

  // Verify: the exported marker's references all have their files in DEST.
  std::string marker_path = dest + "/" + marker_name;
  std::string marker;
  {
    int fd = ::open(marker_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return failed(PosixError("verify: open " + marker_path, errno));
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      marker.append(buf.data(), static_cast<size_t>(n));
    }
    ::close(fd);
  }
  std::set<std::string> view_paths;
  for (const auto& e : written) view_paths.insert(e.path);
  MarkerCheck check;
  if (rewriting) {
    CheckRewritten(marker, original_marker, mounts, refs, old_prefix, new_prefix, new_root, dest,
                   &check);
  } else if (relocating) {
    CheckRelocated(marker, mounts, refs, target, relocated, dest, &check);
  } else {
    CheckPlain(marker, mounts, refs, dest, &check);
  }
  CheckBareNames(marker, view_paths, dest, &check);
  const uint64_t checked = check.checked, stale = check.stale;
  const size_t unresolved = refs.unresolved.size();
  if (!check.missing.empty()) {
    for (const auto& m : check.missing) {
      std::cerr << "snapfs export: reference without its file in the copy: " << m << "\n";
    }
    return failed(Status::Corruption(std::to_string(check.missing.size()) + " of " +
                                     std::to_string(checked) +
                                     " marker references that resolved when the snapshot was "
                                     "committed have no file in the copy"));
  }

  if (json) {
    nlohmann::json out = {{"snapshot", snap},
                          {"dest", dest},
                          {"files", written.size()},
                          {"bytes", done_bytes},
                          {"verified", true},
                          {"references_checked", checked},
                          {"unresolved_references", unresolved}};
    if (verbose) out["unresolved"] = refs.unresolved;
    if (rewriting) {
      out["rewrite_prefix"] = {{"old", old_prefix}, {"new", new_prefix}};
      out["rewritten"] = rewritten;
      out["references_outside_new"] = stale;
    }
    if (relocating) {
      out["relocate_to"] = target.Describe();
      out["relocated"] = rewritten;
    }
    PrintJson(out);
    return kExitOk;
  }
  printf("exported %s to %s: %zu file%s, %s\n", snap_path.c_str(), dest.c_str(), written.size(),
         written.size() == 1 ? "" : "s", HumanBytes(done_bytes).c_str());
  if (rewriting) {
    printf("rewrote %zu reference%s in %s: %s -> %s\n", rewritten, rewritten == 1 ? "" : "s",
           marker_name.c_str(), old_prefix.c_str(), new_prefix.c_str());
    if (rewritten == 0) {
      printf("warning: nothing in %s starts with %s\n", marker_name.c_str(), old_prefix.c_str());
    }
    if (stale) {
      printf("warning: %llu reference%s still point%s into the store's mount (%s), not under %s\n",
             static_cast<unsigned long long>(stale), stale == 1 ? "" : "s", stale == 1 ? "s" : "",
             mounts.empty() ? "?" : mounts.front().c_str(), new_root.c_str());
    }
  }
  if (relocating) {
    printf("relocated %zu reference%s in %s to %s\n", rewritten, rewritten == 1 ? "" : "s",
           marker_name.c_str(), target.Describe().c_str());
  }
  printf(
      "verified: every file read back matches (XXH3-128); %llu marker reference%s checked, "
      "all present in %s\n",
      static_cast<unsigned long long>(checked), checked == 1 ? "" : "s", dest.c_str());
  if (unresolved) {
    printf(
        "%zu reference%s name%s no file (resolved to nothing when the snapshot was "
        "committed, such as Flink's inline state): nothing to copy or check%s\n",
        unresolved, unresolved == 1 ? "" : "s", unresolved == 1 ? "s" : "",
        verbose ? ":" : " (--verbose lists them)");
    if (verbose) {
      for (const auto& u : refs.unresolved) printf("  %s\n", u.c_str());
    }
  }
  return kExitOk;
}

}  // namespace snapfs::cli
