#include "core/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "base/coding.h"
#include "core/fs/inode.h"

namespace snapfs {

namespace {
std::string ConfPath(const std::string& dir) { return dir + "/snapfs.conf"; }

uint64_t RandomSeed() {
  std::random_device rd;  // /dev/urandom
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}
}  // namespace

Result<bool> DirIsEmpty(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return PosixError(dir, errno);
  bool empty = true;
  while (auto* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      empty = false;
      break;
    }
  }
  closedir(d);
  return empty;
}

int StoreLockHolder(const std::string& dir) {
  int fd = ::open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? atoi(buf) : 0;
}

bool StoreLockHeld(const std::string& dir, int* pid) {
  int fd = ::open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops our probe lock, if we got it
  if (pid) *pid = held ? StoreLockHolder(dir) : 0;
  return held;
}

Status Store::Init(const std::string& dir, const InitOptions& opts) {
  RETURN_IF_ERROR(opts.chunker.Validate());
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::NotDirectory(dir + " exists and is not a folder");
    if (::access(ConfPath(dir).c_str(), F_OK) == 0) {
      return Status::AlreadyExists(dir + " is already a snapfs store");
    }
    ASSIGN_OR_RETURN(bool empty, DirIsEmpty(dir));
    if (!empty) return Status::NotEmpty(dir + " is not empty; refusing to init there");
  } else if (errno != ENOENT) {
    return PosixError(dir, errno);
  } else if (::mkdir(dir.c_str(), 0700) != 0) {
    return PosixError("create " + dir, errno);
  }
  ::chmod(dir.c_str(), 0700);  // owner-only: the config holds the hash secret

  StoreConfig c;
  c.chunker = opts.chunker;
  c.verify_dedup = opts.verify_dedup;
  c.marker_names = opts.marker_names;
  c.hash_seed = RandomSeed();
  c.created_unix = static_cast<uint64_t>(time(nullptr));

  {
    ASSIGN_OR_RETURN(auto meta, MetaStore::Open(dir + "/meta", /*create=*/true));
    RETURN_IF_ERROR(InitMetadata(meta->engine()));
  }
  if (::mkdir((dir + "/packs").c_str(), 0700) != 0 && errno != EEXIST) {
    return PosixError("create packs folder", errno);
  }
  // The config is written last: a folder with a config is a complete store.
  return c.Save(ConfPath(dir));
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, OpenOptions opts) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("store " + dir + " does not exist (run snapfs init)");
    return PosixError(dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) return Status::NotDirectory(dir + " is not a folder");
  if (::access(ConfPath(dir).c_str(), F_OK) != 0) {
    return Status::NotFound(dir + " is not a snapfs store (no snapfs.conf)");
  }
  ASSIGN_OR_RETURN(auto config, StoreConfig::Load(ConfPath(dir)));

  std::unique_ptr<Store> s(new Store());
  s->dir_ = dir;
  s->config_ = config;
  s->lock_fd_ = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd_ < 0) return PosixError("open " + dir + "/lock", errno);
  if (::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      int pid = StoreLockHolder(dir);
      return Status::Busy("store " + dir + " is in use by pid " + std::to_string(pid));
    }
    return PosixError("lock " + dir, e);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (::ftruncate(s->lock_fd_, 0) != 0 ||
      ::pwrite(s->lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return PosixError("write " + dir + "/lock", errno);
  }

  if (opts.backend) {
    s->backend_ = std::move(opts.backend);
  } else {
    ASSIGN_OR_RETURN(s->backend_, OpenLocalBackend(dir + "/packs"));
  }
  if (opts.engine) {
    s->meta_ = std::make_unique<MetaStore>(std::move(opts.engine));
  } else {
    ASSIGN_OR_RETURN(s->meta_, MetaStore::Open(dir + "/meta", /*create=*/false));
  }
  s->chunks_ = std::make_unique<ChunkStore>(s->backend_.get(), s->meta_.get(), s->config_,
                                            opts.chunk_cache_bytes);
  RETURN_IF_ERROR(s->chunks_->Open());
  return s;
}

Status Store::InitMetadata(kv::Engine& engine) {
  // The root folder, owned by whoever created the store.
  Inode root = Inode::NewDir(kRootIno, 0755, getuid(), getgid(), kRootIno, NowNs());
  return kv::RunTxn(
      engine,
      [&](kv::Txn& t) -> Status {
        std::string v;
        if (t.Get(Cf::kInodes, keys::Ino(kRootIno), &v).ok()) {
          return Status::AlreadyExists("metadata already holds a store");
        }
        t.Put(Cf::kInodes, keys::Ino(kRootIno), root.Encode());
        t.Put(Cf::kDefault, keys::kNextIno, kv::EncodeCounter(kRootIno + 1));
        return Status::OK();
      },
      kv::RunOptions{.sync = true});
}

Store::~Store() {
  chunks_.reset();  // seals the active pack
  meta_.reset();
  backend_.reset();
  if (lock_fd_ >= 0) {
    (void)!::ftruncate(lock_fd_, 0);
    ::close(lock_fd_);  // releases the flock
  }
}

}  // namespace snapfs
