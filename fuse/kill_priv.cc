#include "fuse/kill_priv.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "fuse/fuse_ops.h"

namespace snapfs::fuse {

namespace {

thread_local bool tls_kill_suidgid = false;

// Reads one request and notes what the hooks need from it. `buf` holds the whole request
// (the kernel hands out one request per read).
ssize_t ReadHook(int fd, void* buf, size_t len, void* userdata) {
  ssize_t n = ::read(fd, buf, len);
  tls_kill_suidgid = false;
  SetCurrentWriteUnique(0);
  if (n < static_cast<ssize_t>(sizeof(fuse_in_header))) return n;
  KillPrivState* st = &static_cast<FuseContext*>(userdata)->kill_priv;
  const char* p = static_cast<const char*>(buf);
  fuse_in_header h;
  std::memcpy(&h, p, sizeof h);
  const char* arg = p + sizeof h;
  const size_t arglen = static_cast<size_t>(n) - sizeof h;
  auto field = [&](size_t off, uint32_t* v) {
    if (off + sizeof *v > arglen) return false;
    std::memcpy(v, arg + off, sizeof *v);
    return true;
  };
  uint32_t v = 0;
  switch (h.opcode) {
    case FUSE_INIT:
      if (field(offsetof(fuse_init_in, flags), &v) && (v & FUSE_HANDLE_KILLPRIV_V2)) {
        st->offered.store(true);
      }
      st->init_unique.store(h.unique);
      break;
    case FUSE_WRITE:
      // The same hook orders each file's WRITEs (write_order.h).
      static_cast<FuseContext*>(userdata)->write_order.Noted(h.nodeid, h.unique);
      SetCurrentWriteUnique(h.unique);
      if (field(offsetof(fuse_write_in, write_flags), &v)) {
        tls_kill_suidgid = (v & FUSE_WRITE_KILL_SUIDGID) != 0;
      }
      break;
    case FUSE_SETATTR:
      if (field(offsetof(fuse_setattr_in, valid), &v)) {
        tls_kill_suidgid = (v & FATTR_KILL_SUIDGID) != 0;
      }
      break;
    case FUSE_OPEN:
      if (field(offsetof(fuse_open_in, open_flags), &v)) {
        tls_kill_suidgid = (v & FUSE_OPEN_KILL_SUIDGID) != 0;
      }
      break;
    default:
      break;
  }
  return n;
}

// Writes one reply; the INIT reply asks for v2 when the kernel offered it.
ssize_t WritevHook(int fd, struct iovec* iov, int count, void* userdata) {
  KillPrivState* st = &static_cast<FuseContext*>(userdata)->kill_priv;
  const uint64_t init = st->init_unique.load();
  if (init != 0 && !st->negotiated.load() && count >= 2 &&
      iov[0].iov_len >= sizeof(fuse_out_header)) {
    fuse_out_header oh;
    std::memcpy(&oh, iov[0].iov_base, sizeof oh);
    constexpr size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(uint32_t);
    if (oh.unique == init && oh.error == 0 && st->offered.load() && iov[1].iov_len >= kFlagsEnd) {
      std::vector<char> out(static_cast<const char*>(iov[1].iov_base),
                            static_cast<const char*>(iov[1].iov_base) + iov[1].iov_len);
      uint32_t flags;
      std::memcpy(&flags, out.data() + offsetof(fuse_init_out, flags), sizeof flags);
      flags |= FUSE_HANDLE_KILLPRIV_V2;
      flags &= ~static_cast<uint32_t>(FUSE_HANDLE_KILLPRIV);  // v2 replaces v1
      std::memcpy(out.data() + offsetof(fuse_init_out, flags), &flags, sizeof flags);
      std::vector<struct iovec> patched(iov, iov + count);
      patched[1].iov_base = out.data();
      st->negotiated.store(true);
      return ::writev(fd, patched.data(), count);
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

Status InstallKillPrivV2(fuse_session* se) {
  fuse_custom_io io{};
  io.read = ReadHook;
  io.writev = WritevHook;
  int rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
  if (rc != 0) return Status::IOError("fuse_session_custom_io: " + std::string(strerror(-rc)));
  return Status::OK();
}

bool RequestKillsSuidGid() { return tls_kill_suidgid; }

}  // namespace snapfs::fuse
