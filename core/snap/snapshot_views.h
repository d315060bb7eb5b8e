// SnapshotViews: the read-only tree under MOUNT/.snapshots/ and the virtual xattrs.
// Private to core/: the Filesystem facade routes the view inode range here.
//
// /.snapshots/<path of the snapshot folder>/ holds the snapshot's marker, its own files
// and every file it references, at the path it had relative to the job folder
// ("shared/<uuid>"); files of other jobs under _other_jobs/<path in the mount>. Folders
// on the way to a snapshot are plain read-only folders. A view folder has the owner and
// the permissions (less the write bits) of the real folder it stands for, so the views
// never open to another user what the real tree keeps closed (a 0700 job folder). Nodes
// get inode numbers from kViewInoBase up, handed out as the kernel looks them up and kept
// for the life of the mount; a file node reads the real inode's data.
//
// Thread-safety: thread-safe. mu_ (a leaf) guards the node table and the tree cache.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "core/fs/fs_types.h"
#include "core/store.h"

namespace snapfs {

class FileData;
class Namespace;
class SnapshotQueries;

struct ViewNode {
  uint64_t snap = 0;  // the snapshot folder's inode; 0 for /.snapshots/ and folders above
  std::string path;   // snap == 0: path in the mount; else: path inside the snapshot's view
  uint64_t real = 0;  // files: the inode whose data it shows
};

class SnapshotViews {
 public:
  SnapshotViews(Store* store, Namespace* ns, FileData* data, SnapshotQueries* queries);
  SnapshotViews(const SnapshotViews&) = delete;
  SnapshotViews& operator=(const SnapshotViews&) = delete;

  Result<Attr> Root();
  Result<Attr> Lookup(uint64_t parent, std::string_view name);
  Result<Attr> GetAttr(uint64_t ino);
  Status ReadDir(uint64_t ino, uint64_t cookie, const std::function<bool(const DirEntry&)>& emit);
  // The real inode behind a view file; 0 for a view folder.
  Result<uint64_t> RealInode(uint64_t ino);
  // Virtual xattrs (kXattrPrefix) of real inodes and of view nodes.
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);

 private:
  struct Tree {
    uint64_t gen = 0;
    int64_t built_ns = 0;
    std::map<std::string, uint64_t> files;  // view path -> real inode
    std::set<std::string> dirs;             // view paths of folders ("" is the top)
  };
  struct Child {
    std::string name;
    ViewNode node;
    bool is_dir = true;
  };

  Result<ViewNode> Node(uint64_t ino);
  uint64_t IdOf(const ViewNode& n) REQUIRES(mu_);
  Result<std::vector<Child>> Children(const ViewNode& n);
  Result<std::map<std::string, uint64_t>> SnapshotPaths();  // path -> folder inode
  Result<const Tree*> TreeOf(uint64_t snap) REQUIRES(mu_);
  Result<Attr> AttrOf(uint64_t ino, const ViewNode& n, bool is_dir);
  // The real folder whose owner and permissions a view folder takes (see the top).
  uint64_t RealDirOf(const ViewNode& n);
  Result<std::string> FileXattr(uint64_t ino, std::string_view key);

  MetaStore& meta_;
  Namespace* const ns_;
  FileData* const data_;
  SnapshotQueries* const queries_;
  Mutex mu_;
  std::unordered_map<uint64_t, ViewNode> nodes_ GUARDED_BY(mu_);
  // (snapshot, view path, real inode) -> view inode. The real inode is part of the key: a
  // recommitted marker may show another file at the same path, and the kernel must not
  // take it for the old one (it keeps cached pages and sizes of view files).
  std::map<std::tuple<uint64_t, std::string, uint64_t>, uint64_t> ids_ GUARDED_BY(mu_);
  uint64_t next_id_ GUARDED_BY(mu_) = kViewInoBase + 1;
  std::unordered_map<uint64_t, Tree> trees_ GUARDED_BY(mu_);
};

}  // namespace snapfs
