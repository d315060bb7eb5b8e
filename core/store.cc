#include "core/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "backends/s3_backend.h"
#include "base/coding.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/fs/inode.h"
#include "core/meta/postgres_engine.h"

namespace snapfs {

namespace {
std::string ConfPath(const std::string& dir) { return dir + "/snapfs.conf"; }

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// The S3 backend's options for a store's recorded settings; credentials from the file
// named in the config or the AWS_* environment.
Result<S3BackendOptions> S3Options(const std::string& data, const std::string& endpoint,
                                   const std::string& region, const std::string& cred_file,
                                   const std::string& spool_dir) {
  ASSIGN_OR_RETURN(S3Location loc, ParseS3Url(data));
  ASSIGN_OR_RETURN(S3Credentials creds, LoadS3Credentials(cred_file));
  S3BackendOptions o;
  o.client.bucket = loc.bucket;
  o.client.endpoint = endpoint.empty() ? EnvOr("AWS_ENDPOINT_URL", "") : endpoint;
  o.client.region = region.empty() ? EnvOr("AWS_REGION", "us-east-1") : region;
  o.client.credentials = std::move(creds);
  o.prefix = loc.prefix;
  o.spool_dir = spool_dir;
  return o;
}

// Init's checks of an S3 location; creates the bucket when asked. Fills in the
// endpoint and region actually used, so that the config records them.
Status CheckS3Location(InitOptions* opts) {
  // Recorded absolute: the daemon does not run in the folder init ran in.
  if (!opts->s3_credentials_file.empty() && opts->s3_credentials_file[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) return PosixError("getcwd", errno);
    opts->s3_credentials_file = std::string(cwd) + "/" + opts->s3_credentials_file;
  }
  ASSIGN_OR_RETURN(S3BackendOptions o, S3Options(opts->data, opts->s3_endpoint, opts->s3_region,
                                                 opts->s3_credentials_file, ""));
  opts->s3_endpoint = o.client.endpoint;
  opts->s3_region = o.client.region;
  // Tell an unreachable endpoint quickly: init is interactive.
  o.client.max_attempts = 2;
  o.client.request_timeout_ms = 10000;
  ASSIGN_OR_RETURN(auto client, S3Client::Create(o.client));
  Status st = client->CheckBucket();
  if (st.Is(Code::kNotFound) && opts->create_bucket) st = client->CreateBucket();
  RETURN_IF_ERROR(st.WithContext(opts->data));
  ASSIGN_OR_RETURN(auto objects,
                   client->List(o.prefix.empty() ? "packs/" : o.prefix + "/packs/"));
  if (!objects.empty()) {
    return Status::AlreadyExists(opts->data + " already holds packs (" + objects[0].key +
                                 "...): another store's? Choose another prefix");
  }
  return Status::OK();
}

// OpenOptions::check_data false: no bucket check at open, and a quick answer when the
// object store does not respond (status asks Backend::Probe instead).
void ApplyCheckData(const OpenOptions& opts, S3BackendOptions* o) {
  if (opts.check_data) return;
  o->check_bucket = false;
  o->client.max_attempts = 2;
  o->client.request_timeout_ms = 10000;
}

uint64_t RandomSeed() {
  std::random_device rd;  // /dev/urandom
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// A new store's config from init's (checked) options: a fresh seed, and the lowest
// format version that describes where the data lives.
StoreConfig NewConfig(const InitOptions& opts) {
  StoreConfig c;
  c.chunker = opts.chunker;
  c.verify_dedup = opts.verify_dedup;
  c.marker_names = opts.marker_names;
  c.hash_seed = RandomSeed();
  c.created_unix = static_cast<uint64_t>(time(nullptr));
  if (!opts.data.empty()) {
    c.format_version = StoreConfig::kFormatVersionData;
    c.data = opts.data;
    if (c.is_s3()) {
      c.s3_endpoint = opts.s3_endpoint;
      c.s3_region = opts.s3_region;
      c.s3_credentials_file = opts.s3_credentials_file;
    }
  }
  return c;
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

Status Store::Init(const std::string& dir, const InitOptions& init_opts) {
  if (IsDatabaseLocation(dir)) return InitDatabase(dir, init_opts);
  InitOptions opts = init_opts;
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
  }
  if (!opts.data.empty()) {
    if (!opts.data.starts_with("s3://")) {
      return Status::InvalidArgument("--data: expected s3://bucket/prefix, got " + opts.data);
    }
    RETURN_IF_ERROR(CheckS3Location(&opts));
  }
  if (::stat(dir.c_str(), &st) != 0 && ::mkdir(dir.c_str(), 0700) != 0) {
    return PosixError("create " + dir, errno);
  }
  ::chmod(dir.c_str(), 0700);  // owner-only: the config holds the hash secret

  StoreConfig c = NewConfig(opts);

  {
    ASSIGN_OR_RETURN(auto meta, MetaStore::Open(dir + "/meta", /*create=*/true));
    RETURN_IF_ERROR(InitMetadata(meta->engine()));
  }
  const char* packs = c.is_s3() ? "/spool" : "/packs";
  if (::mkdir((dir + packs).c_str(), 0700) != 0 && errno != EEXIST) {
    return PosixError(std::string("create ") + (packs + 1) + " folder", errno);
  }
  // The config is written last: a folder with a config is a complete store.
  return c.Save(ConfPath(dir));
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, OpenOptions opts) {
  if (IsDatabaseLocation(dir)) return OpenDatabase(dir, std::move(opts));
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
  } else if (config.is_s3()) {
    ASSIGN_OR_RETURN(S3BackendOptions o,
                     S3Options(config.data, config.s3_endpoint, config.s3_region,
                               config.s3_credentials_file, dir + "/spool"));
    if (opts.cache_bytes > 0) {
      o.disk_cache_dir = opts.cache_dir.empty() ? dir + "/cache" : opts.cache_dir;
      o.disk_cache_bytes = opts.cache_bytes;
    }
    ApplyCheckData(opts, &o);
    auto b = OpenS3Backend(std::move(o));
    if (!b.ok()) return b.status().WithContext("open " + config.data);
    s->backend_ = std::move(b).value();
  } else {
    ASSIGN_OR_RETURN(s->backend_, OpenLocalBackend(dir + "/packs"));
  }
  if (opts.engine) {
    s->meta_ = std::make_unique<MetaStore>(std::move(opts.engine));
  } else {
    ASSIGN_OR_RETURN(s->meta_, MetaStore::Open(dir + "/meta", /*create=*/false, opts.meta_env));
  }
  s->chunks_ = std::make_unique<ChunkStore>(s->backend_.get(), s->meta_.get(), s->config_,
                                            opts.chunk_cache_bytes);
  if (!opts.engine) {  // the metadata is in dir/meta, on this machine's disk
    s->space_guard_ = std::make_unique<SpaceGuard>(dir + "/meta", s->backend_.get());
    s->chunks_->SetSpaceGuard(s->space_guard_.get());
  }
  RETURN_IF_ERROR(s->chunks_->Open(/*list_packs=*/opts.check_data));
  return s;
}

Status Store::InitMetadata(kv::Engine& engine, const StoreConfig* config) {
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
        if (config) t.Put(Cf::kDefault, keys::kConfig, config->Serialize());
        return Status::OK();
      },
      kv::RunOptions{.sync = true});
}

uint64_t Store::session_id() const { return session_ ? session_->id() : 0; }

void Store::StopHeartbeat() {
  if (!heartbeat_.joinable()) return;
  {
    std::lock_guard l(hb_mu_);
    hb_stop_ = true;
  }
  hb_cv_.notify_all();
  heartbeat_.join();
}

Store::~Store() {
  StopHeartbeat();
  chunks_.reset();  // seals the active pack
  session_.reset();  // ends the session: its openpack records go
  meta_.reset();
  backend_.reset();
  for (int fd : state_lock_fds_) ::close(fd);
  if (lock_fd_ >= 0) {
    (void)!::ftruncate(lock_fd_, 0);
    ::close(lock_fd_);  // releases the flock
  }
}

bool IsDatabaseLocation(const std::string& location) {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

std::string DefaultStateDir(const std::string& location) {
  std::string base;
  if (::getuid() == 0) {
    base = "/var/lib/snapfs";
  } else if (const char* x = getenv("XDG_STATE_HOME"); x && *x) {
    base = std::string(x) + "/snapfs";
  } else {
    base = EnvOr("HOME", "/tmp") + "/.local/state/snapfs";
  }
  char id[20];
  snprintf(id, sizeof id, "%016llx",
           static_cast<unsigned long long>(XXH3_64bits(location.data(), location.size())));
  return base + "/pg-" + id;
}

namespace {

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return PosixError("create " + dir, ec.value());
  ::chmod(dir.c_str(), 0700);
  return Status::OK();
}

// Opens `dir` and takes its flock without waiting: the fd (the lock lasts while it is
// open), or -1 with errno set.
int TryLockFolder(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
  int e = errno;
  ::close(fd);
  errno = e;
  return -1;
}

// Creates STATE/<kind>/<id> and flocks it for as long as the returned fd is open.
Result<int> LockSessionFolder(const std::string& dir) {
  RETURN_IF_ERROR(MakeDirs(dir));
  int fd = TryLockFolder(dir);
  if (fd < 0) return PosixError("lock " + dir, errno);
  return fd;
}

// Removes STATE/<kind>/<id> folders of sessions that no longer exist. A shared store's
// commits point only at uploaded packs (upload on seal), so nothing committed needs a
// spooled pack of a session that is gone. A folder still flock'ed belongs to a process
// of this host whose session was reaped and renewed (it keeps the folder of its first
// session): left alone.
void RemoveDeadSessionFolders(const std::string& dir, const std::vector<SessionInfo>& live) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    uint64_t id = strtoull(e.path().filename().c_str(), nullptr, 10);
    if (id == 0) continue;
    bool alive = false;
    for (const auto& s : live) alive |= s.id == id;
    if (alive) continue;
    int fd = TryLockFolder(e.path());  // held while removing: nobody takes it
    if (fd < 0) continue;
    std::error_code rec;
    std::filesystem::remove_all(e.path(), rec);
    if (rec) SNAPFS_LOG_WARN("cannot remove " + e.path().string() + ": " + rec.message());
    ::close(fd);
  }
}

// What this process has answered with errors (base/metrics.h), as its session publishes it.
SessionHealth CurrentHealth() {
  SessionHealth h;
  h.io_errors = metrics::IoErrors().value();
  h.hash_mismatches = metrics::HashMismatches().value();
  if (auto last = metrics::LastIoError()) {
    h.last_error_ms = last->when_ns / 1000000;
    h.last_error = last->what;
  }
  return h;
}

}  // namespace

Status Store::InitDatabase(const std::string& location, InitOptions opts) {
  RETURN_IF_ERROR(opts.chunker.Validate());
  ASSIGN_OR_RETURN(std::string url, kv::PostgresEngine::PublicUrl(location));
  if (opts.data.empty()) {
    return Status::InvalidArgument(
        "a database store needs --data: s3://bucket/prefix, or an absolute folder that every "
        "host mounts at the same path");
  }
  if (opts.data.starts_with("s3://")) {
    RETURN_IF_ERROR(CheckS3Location(&opts));
  } else if (opts.data.starts_with("/")) {
    RETURN_IF_ERROR(MakeDirs(opts.data));
    ASSIGN_OR_RETURN(bool empty, DirIsEmpty(opts.data));
    if (!empty) return Status::NotEmpty("--data " + opts.data + " is not empty; refusing to init there");
  } else {
    return Status::InvalidArgument("--data: expected s3://bucket/prefix or an absolute folder, got " +
                                   opts.data);
  }
  StoreConfig c = NewConfig(opts);
  RETURN_IF_ERROR(kv::PostgresEngine::CreateSchema(location));
  ASSIGN_OR_RETURN(auto engine, kv::PostgresEngine::Open(location));
  return InitMetadata(*engine, &c).WithContext("init " + url);
}

Result<std::unique_ptr<Store>> Store::OpenDatabase(const std::string& location, OpenOptions opts) {
  ASSIGN_OR_RETURN(std::string url, kv::PostgresEngine::PublicUrl(location));
  std::unique_ptr<kv::Engine> engine;
  if (opts.engine) {
    engine = std::move(opts.engine);
  } else {
    kv::PostgresOptions po;
    po.max_open = std::max<size_t>(1, opts.db_max_connections);
    ASSIGN_OR_RETURN(engine, kv::PostgresEngine::Open(location, po));
  }
  std::string text;
  Status cs = engine->Get(Cf::kDefault, keys::kConfig, &text);
  if (cs.Is(Code::kNotFound)) {
    return Status::NotFound("the snapfs store in " + url +
                            " has no config: its init did not finish (drop its tables and init again)");
  }
  RETURN_IF_ERROR(cs.WithContext("read the config of " + url));
  auto config = StoreConfig::Parse(text);
  if (!config.ok()) return config.status().WithContext(url);
  if (config->data.empty()) return Status::Corruption(url + ": the config names no data location");

  std::unique_ptr<Store> s(new Store());
  s->dir_ = url;
  s->config_ = *config;
  ASSIGN_OR_RETURN(s->session_, Session::Register(*engine, SessionOptions{opts.session_timeout,
                                                                         opts.session_what}));
  s->state_dir_ = opts.state_dir.empty() ? DefaultStateDir(url) : opts.state_dir;
  const std::string id = std::to_string(s->session_->id());
  if (opts.backend) {
    s->backend_ = std::move(opts.backend);
  } else if (config->is_s3()) {
    for (const char* kind : {"/spool/", "/cache/"}) {
      ASSIGN_OR_RETURN(int fd, LockSessionFolder(s->state_dir_ + kind + id));
      s->state_lock_fds_.push_back(fd);
    }
    auto live = ListSessions(*engine);
    if (live.ok()) {
      RemoveDeadSessionFolders(s->state_dir_ + "/spool", *live);
      RemoveDeadSessionFolders(s->state_dir_ + "/cache", *live);
    }
    ASSIGN_OR_RETURN(S3BackendOptions o,
                     S3Options(config->data, config->s3_endpoint, config->s3_region,
                               config->s3_credentials_file, s->state_dir_ + "/spool/" + id));
    o.upload_on_seal = true;
    ApplyCheckData(opts, &o);
    if (opts.cache_bytes > 0) {
      o.disk_cache_dir = opts.cache_dir.empty() ? s->state_dir_ + "/cache/" + id : opts.cache_dir;
      o.disk_cache_bytes = opts.cache_bytes;
    }
    auto b = OpenS3Backend(std::move(o));
    if (!b.ok()) return b.status().WithContext("open " + config->data);
    s->backend_ = std::move(b).value();
  } else {
    auto b = OpenLocalBackend(config->data);
    if (!b.ok()) return b.status().WithContext("open the data folder of " + url);
    s->backend_ = std::move(b).value();
  }
  s->meta_ = std::make_unique<MetaStore>(std::move(engine));
  s->chunks_ = std::make_unique<ChunkStore>(s->backend_.get(), s->meta_.get(), s->config_,
                                            opts.chunk_cache_bytes);
  s->chunks_->SetSharing(ChunkStoreSharing{.session = s->session_->id(),
                                           .seal_on_sync = config->is_s3()});
  RETURN_IF_ERROR(s->chunks_->Open(/*list_packs=*/false));  // the database's commits are durable
  s->heartbeat_ = std::thread([st = s.get()] { st->HeartbeatLoop(); });
  return s;
}

void Store::HeartbeatLoop() {
  // Heartbeats every timeout/4; the other sessions are watched more often (every second
  // at most), so that a dead one is reaped about its own timeout after it went silent.
  using Clock = std::chrono::steady_clock;
  const auto beat_every = std::max(std::chrono::milliseconds(25), session_->timeout() / 4);
  const auto tick = std::min<std::chrono::milliseconds>(beat_every, std::chrono::seconds(1));
  std::optional<SessionReaper> reaper(std::in_place, session_->id());
  auto next_beat = Clock::now() + beat_every;
  std::unique_lock l(hb_mu_);
  while (!hb_cv_.wait_for(l, tick, [&] { return hb_stop_; })) {
    l.unlock();
    if (Clock::now() >= next_beat) {
      next_beat = Clock::now() + beat_every;
      session_->SetHealth(CurrentHealth());
      Status st = session_->Heartbeat();
      if (!st.ok()) {
        reaper->Reset();  // what it saw before may predate an outage of ours
        if (!session_->lost()) {
          SNAPFS_LOG_WARN("session heartbeat: " + st.ToString());
        } else if (Status r = RenewSession(); r.ok()) {
          reaper.emplace(session_->id());
        } else {
          SNAPFS_LOG_WARN("register a new session: " + r.ToString() + " (trying again)");
        }
      } else if (Status r = chunks_->ReleaseClosedPacks(); !r.ok()) {
        SNAPFS_LOG_WARN("release closed packs: " + r.ToString());
      }
    }
    if (!session_->lost()) {
      if (auto r = reaper->Check(meta_->engine()); !r.ok()) {
        SNAPFS_LOG_WARN("watch the other sessions: " + r.status().ToString());
      }
    }
    l.lock();
  }
}

Status Store::RenewSession() {
  const uint64_t old = session_->id();
  RETURN_IF_ERROR(session_->Renew());
  const uint64_t now = session_->id();
  // From here every pack of the old session is given up (the reap deleted their records,
  // so GC may take them): a write that pointed into one fails with this, and the next
  // pack is recorded under the new session. What was committed before the reap stays.
  chunks_->RenewSession(now, Status::IOError("session " + std::to_string(old) +
                                             " of this process was reaped (no heartbeat in "
                                             "time): data written into its packs and not "
                                             "committed is lost; write it again"));
  SNAPFS_LOG_WARN("registered session " + std::to_string(now) + " after session " +
                  std::to_string(old) + " was reaped; writes in flight failed with EIO");
  return Status::OK();
}

}  // namespace snapfs
