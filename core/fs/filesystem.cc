// Filesystem: the facade. Each call goes to the class that owns it (filesystem.h); what
// crosses two of them is joined here, in the order the lock order needs.
#include "core/fs/filesystem.h"

#include <fcntl.h>

#include "core/fs/file_data.h"
#include "core/fs/namespace.h"
#include "core/snap/snapshot_engine.h"
#include "core/snap/snapshot_queries.h"
#include "core/snap/snapshot_views.h"

namespace snapfs {

static_assert(Filesystem::kFlushThreshold == OpenFile::kFlushThreshold);

Filesystem::Filesystem(Store* store)
    : store_(store),
      ns_(std::make_unique<Namespace>(store)),
      data_(std::make_unique<FileData>(store, ns_.get())),
      queries_(std::make_unique<SnapshotQueries>(store, ns_.get(), data_.get())),
      snap_(std::make_unique<SnapshotEngine>(store, ns_.get(), data_.get(), queries_.get())),
      views_(std::make_unique<SnapshotViews>(store, ns_.get(), data_.get(), queries_.get())) {
  ns_->SetSnapshotHooks(snap_.get());
}

Filesystem::~Filesystem() { (void)FlushAll(); }

Result<std::unique_ptr<Filesystem>> Filesystem::Open(Store* store) {
  std::unique_ptr<Filesystem> fs(new Filesystem(store));
  RETURN_IF_ERROR(fs->snap_->LoadMountPoints());
  RETURN_IF_ERROR(fs->PurgeDeadOrphans().status());
  return fs;
}

// ---- namespace ----

Result<Attr> Filesystem::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kNameMax) return Status::NameTooLong();
  if (parent >= kViewInoBase) return views_->Lookup(parent, name);
  if (parent == kRootIno && name == kViewsName) return views_->Root();
  ASSIGN_OR_RETURN(Dentry e, ns_->Lookup(parent, name));
  ASSIGN_OR_RETURN(auto a, GetAttr(e.child));
  a.hidden = e.hidden;
  return a;
}

Result<Attr> Filesystem::GetAttr(uint64_t ino) {
  if (ino >= kViewInoBase) return views_->GetAttr(ino);
  AttrCache::Clock::duration left{};
  if (auto c = ns_->attr_cache().Get(ino, &left);
      c && (c->is_dir() || (c->is_reg() && data_->OpenForWriting(ino)))) {
    Attr a = data_->ToAttr(*c);
    a.cache_left_s = std::chrono::duration<double>(left).count();
    return a;
  }
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(ino));
  return data_->ToAttr(node);
}

void Filesystem::SetSharedAttrTtl(double seconds) {
  ns_->attr_cache().set_ttl(std::chrono::duration_cast<AttrCache::Clock::duration>(
      std::chrono::duration<double>(seconds)));
}

Result<Attr> Filesystem::SetAttr(uint64_t ino, const SetAttrRequest& req) {
  if (ino >= kViewInoBase) return Status::ReadOnly("snapshot views are read-only");
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(ino));
  ASSIGN_OR_RETURN(auto check, snap_->CheckChange(node));
  if (check.read_only) return Status::ReadOnly("deleted; kept read-only for snapshots");
  // A truncate must not cut the bytes a snapshot references: they get a copy first.
  if (check.pinned && req.set_size && node.is_reg()) {
    RETURN_IF_ERROR(snap_->DetachForSnapshots(ino));
  }
  RETURN_IF_ERROR(data_->SetAttr(node, req, NowNs()));
  return GetAttr(ino);
}

Status Filesystem::MetadataSpace() {
  SpaceGuard* g = store_->space_guard();
  return g ? g->ForMetadata() : Status::OK();
}

Result<Attr> Filesystem::Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                               const Caller& who) {
  RETURN_IF_ERROR(MetadataSpace());
  ASSIGN_OR_RETURN(auto node, ns_->Mknod(parent, name, mode, rdev, who));
  return data_->ToAttr(node);
}

Result<Attr> Filesystem::Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& who) {
  RETURN_IF_ERROR(MetadataSpace());
  ASSIGN_OR_RETURN(auto node, ns_->Mkdir(parent, name, mode, who));
  return data_->ToAttr(node);
}

Result<Attr> Filesystem::Symlink(std::string_view target, uint64_t parent, std::string_view name,
                                 const Caller& who) {
  RETURN_IF_ERROR(MetadataSpace());
  ASSIGN_OR_RETURN(auto node, ns_->Symlink(target, parent, name, who));
  return data_->ToAttr(node);
}

Result<std::string> Filesystem::Readlink(uint64_t ino) { return ns_->Readlink(ino); }

Result<Attr> Filesystem::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  RETURN_IF_ERROR(MetadataSpace());
  RETURN_IF_ERROR(ns_->Link(ino, new_parent, new_name));
  return GetAttr(ino);  // outside the namespace's lock: ToAttr may take OpenFile::mu
}

Status Filesystem::Unlink(uint64_t parent, std::string_view name) {
  return ns_->Unlink(parent, name);
}

Status Filesystem::Rmdir(uint64_t parent, std::string_view name) {
  return ns_->Rmdir(parent, name);
}

Status Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, unsigned flags) {
  // A file landing on a marker name commits a snapshot: its bytes are read before the
  // namespace takes its lock (reading takes the file's own lock, which comes first).
  auto marker_bytes = snap_->ReadRenamedMarkers(parent, name, new_parent, new_name, flags);
  return ns_->Rename(parent, name, new_parent, new_name, flags, marker_bytes);
}

Status Filesystem::ReadDir(uint64_t ino, uint64_t cookie,
                           const std::function<bool(const DirEntry&)>& emit) {
  if (ino >= kViewInoBase) return views_->ReadDir(ino, cookie, emit);
  return ns_->ReadDir(ino, cookie, emit);
}

void Filesystem::Ref(uint64_t ino, uint64_t n) { ns_->Ref(ino, n); }

void Filesystem::Unref(uint64_t ino, uint64_t n) { ns_->Unref(ino, n); }

Result<size_t> Filesystem::PurgeDeadOrphans() { return ns_->PurgeDeadOrphans(); }

// ---- file data ----

Result<FileHandle> Filesystem::Open(uint64_t ino, int flags) {
  int acc = flags & O_ACCMODE;
  if (ino >= kViewInoBase) {
    if (acc != O_RDONLY || (flags & O_TRUNC))
      return Status::ReadOnly("snapshot views are read-only");
    ASSIGN_OR_RETURN(uint64_t real, views_->RealInode(ino));
    if (real == 0) return Status::IsDirectory();  // a folder of the view: nothing to open
    ino = real;
  }
  ASSIGN_OR_RETURN(auto node, ns_->LoadInode(ino));
  if (node.is_reg() && (acc != O_RDONLY || (flags & O_TRUNC))) {
    ASSIGN_OR_RETURN(auto check, snap_->CheckChange(node));
    // A deleted file kept for snapshots is read-only, but creating a file of its name
    // (open with O_CREAT|O_TRUNC reaches us as an O_TRUNC open) replaces it.
    if (check.read_only && (acc == O_RDONLY || !(flags & O_TRUNC))) {
      return Status::ReadOnly("deleted; kept read-only for snapshots");
    }
    // Whatever is written now, the snapshots keep the bytes they referenced.
    if (check.pinned && acc != O_RDONLY) RETURN_IF_ERROR(snap_->DetachForSnapshots(ino));
  }
  // Rewriting a committed marker in place (open for writing, not a new file) rescans it
  // when it is flushed, like a marker created in place.
  FileData::MarkerAt marker;
  if (node.is_reg() && acc != O_RDONLY) {
    if (auto snap = queries_->SnapshotOfMarker(ino); snap.ok()) {
      marker = FileData::MarkerAt{snap->dir, snap->marker_name};
    }
  }
  return data_->Open(node, flags, std::move(marker));
}

Result<std::pair<Attr, FileHandle>> Filesystem::Create(uint64_t parent, std::string_view name,
                                                       uint32_t mode, int flags,
                                                       const Caller& who) {
  // A marker created in place (how Flink commits on object stores) makes a snapshot when
  // its writer flushes it.
  auto mark = [&](FileHandle fh) {
    if (!snap_->IsMarkerName(name) || (flags & O_ACCMODE) == O_RDONLY) return;
    data_->SetMarker(fh, parent, name);
  };
  auto made = Mknod(parent, name, S_IFREG | (mode & 07777), 0, who);
  if (made.ok()) {
    // Made by this call: a new inode that no snapshot pins, empty. Open's checks (each
    // a metadata read: a database round trip on a shared store) have nothing to find.
    FileHandle fh = data_->OpenCreated(made->ino, made->mtime_ns, flags & ~O_TRUNC);
    mark(fh);
    return std::make_pair(*made, fh);
  }
  // open(O_CREAT) without O_EXCL of a name that appeared meanwhile opens it, as does one
  // of a name that exists on a full disk (the space check comes before the name's).
  const bool full = made.status().Is(Code::kNoSpace);
  if ((!made.status().Is(Code::kAlreadyExists) && !full) || (flags & O_EXCL)) {
    return made.status();
  }
  auto found = Lookup(parent, name);
  if (!found.ok()) return full ? made.status() : found.status();
  Attr attr = *found;
  if (S_ISDIR(attr.mode)) return Status::IsDirectory();
  ASSIGN_OR_RETURN(auto fh, Open(attr.ino, flags));
  mark(fh);
  ASSIGN_OR_RETURN(attr, GetAttr(attr.ino));
  return std::make_pair(attr, fh);
}

Result<size_t> Filesystem::Read(FileHandle fh, uint64_t offset, size_t n, char* buf) {
  return data_->Read(fh, offset, n, buf);
}

Result<size_t> Filesystem::Write(FileHandle fh, uint64_t offset, const char* data, size_t n) {
  return data_->Write(fh, offset, data, n);
}

Status Filesystem::Flush(FileHandle fh) {
  ASSIGN_OR_RETURN(auto f, data_->Flush(fh));
  // close(2) sends a flush and waits for it; the release comes later. Recognising the
  // snapshot here means it exists when close returns.
  if (f.marker.parent) return snap_->CommitMarkerAt(f.marker.parent, f.marker.name, f.ino);
  return Status::OK();
}

Status Filesystem::Fsync(FileHandle fh, bool datasync) { return data_->Fsync(fh, datasync); }

Status Filesystem::Release(FileHandle fh) {
  ASSIGN_OR_RETURN(auto r, data_->Release(fh));
  Status s = r.status;
  if (s.ok() && r.marker.parent) s = snap_->CommitMarkerAt(r.marker.parent, r.marker.name, r.ino);
  ns_->Unref(r.ino, 1, /*open=*/true);  // the handle's reference (FileData::Open took it)
  return s;
}

Result<uint64_t> Filesystem::CloneRange(FileHandle src, uint64_t src_off, FileHandle dst,
                                        uint64_t dst_off, uint64_t n) {
  return data_->CloneRange(src, src_off, dst, dst_off, n);
}

Status Filesystem::FlushAll() { return data_->FlushAll(); }

// ---- attributes ----

Result<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  RETURN_IF_ERROR(Namespace::CheckXattrName(name));
  if (ino >= kViewInoBase || name.starts_with(kXattrPrefix)) return views_->GetXattr(ino, name);
  // The kernel asks for security.capability before every write() (file_remove_privs;
  // a FUSE inode never gets S_NOSEC): ~100,000 asks per Flink checkpoint run, each two
  // metadata reads (two database transactions on a shared store, where it took more time
  // than the writes). While the file is open here the answer "absent" is remembered; our
  // own xattr changes forget it (XattrsChanged), another host's are seen at the next
  // open: close-to-open, as for the file's data (docs/scale-out.md).
  if (name == kCapabilityXattr) {
    return data_->GetCapabilityXattr(ino, [&] { return ns_->GetXattr(ino, name); });
  }
  return ns_->GetXattr(ino, name);
}

Status Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value,
                            int flags) {
  RETURN_IF_ERROR(MetadataSpace());
  Status s = ns_->SetXattr(ino, name, value, flags);
  // Whatever happened, a remembered "no security.capability" is void afterwards.
  data_->XattrsChanged(ino);
  return s;
}

Result<std::vector<std::string>> Filesystem::ListXattr(uint64_t ino) {
  if (ino >= kViewInoBase) return std::vector<std::string>{};
  return ns_->ListXattr(ino);
}

Status Filesystem::RemoveXattr(uint64_t ino, std::string_view name) {
  Status s = ns_->RemoveXattr(ino, name);
  data_->XattrsChanged(ino);
  return s;
}

Result<FsStats> Filesystem::StatFs() { return ns_->StatFs(); }

// ---- snapshots ----

const std::vector<std::string>& Filesystem::MarkerNames() const { return snap_->MarkerNames(); }

Status Filesystem::RecordMountPoint(const std::string& abs_path) {
  return snap_->RecordMountPoint(abs_path);
}

std::vector<std::string> Filesystem::MountPoints() { return snap_->MountPoints(); }

Result<uint64_t> Filesystem::ResolvePath(std::string_view rel) { return ns_->ResolvePath(rel); }

Result<std::string> Filesystem::PathOf(uint64_t dir) { return ns_->PathOf(dir); }

Result<std::vector<SnapshotInfo>> Filesystem::ListSnapshots(uint64_t under) {
  return queries_->ListSnapshots(under);
}

Result<SnapshotInfo> Filesystem::GetSnapshot(uint64_t dir) { return queries_->GetSnapshot(dir); }

Result<SnapshotUsage> Filesystem::MeasureSnapshots(const std::vector<uint64_t>& dirs) {
  return queries_->MeasureSnapshots(dirs);
}

Result<std::vector<std::optional<SnapshotUsage>>> Filesystem::MeasureEach(
    const std::vector<uint64_t>& dirs, SnapshotUsage* together) {
  return queries_->MeasureEach(dirs, together);
}

Result<std::vector<ViewFile>> Filesystem::SnapshotFiles(uint64_t dir) {
  return queries_->SnapshotFiles(dir);
}

Result<std::vector<PinInfo>> Filesystem::WhyPinned(uint64_t ino) {
  return queries_->WhyPinned(ino);
}

Result<std::vector<HiddenEntry>> Filesystem::ListHidden() { return queries_->ListHidden(); }

Result<std::vector<InodeLocation>> Filesystem::LocateInodes(const std::vector<uint64_t>& inos) {
  return queries_->LocateInodes(inos);
}

Result<std::vector<OrphanFile>> Filesystem::FindOrphans(uint64_t under, int64_t older_than_ns) {
  return queries_->FindOrphans(under, older_than_ns);
}

Result<RemoveReport> Filesystem::RemoveSnapshots(const std::vector<uint64_t>& dirs, bool dry_run,
                                                 bool wait) {
  return snap_->RemoveSnapshots(dirs, dry_run, wait);
}

void Filesystem::SetPurgeNotifier(std::function<void()> f) {
  snap_->SetPurgeNotifier(std::move(f));
}

Result<PurgeProgress> Filesystem::PurgeStep(size_t budget) { return snap_->PurgeStep(budget); }

Result<PurgeBacklog> Filesystem::GetPurgeBacklog() { return snap_->GetPurgeBacklog(); }

void Filesystem::InvalidatePendingEntries() { snap_->InvalidatePending(); }

void Filesystem::WithPurgesPaused(const std::function<void()>& f) {
  snap_->WithPurgesPaused(f);
}

Result<std::vector<std::string>> Filesystem::CheckSnapshots() {
  return queries_->CheckSnapshots(snap_->MountPoints());
}

void Filesystem::SetEntryInvalidator(std::function<void(uint64_t, std::string_view)> f) {
  snap_->SetEntryInvalidator(std::move(f));
}

void Filesystem::InvalidateEntry(uint64_t parent, std::string_view name) {
  snap_->InvalidateEntry(parent, name);
}

}  // namespace snapfs
