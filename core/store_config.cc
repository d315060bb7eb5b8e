#include "core/store_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace snapfs {

namespace {
std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool ParseU64(const std::string& s, uint64_t* out, int base = 10) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
}  // namespace

std::string StoreConfig::Serialize() const {
  std::ostringstream o;
  o << "# snapfs store configuration. Do not edit: chunking and seed are fixed for life.\n";
  o << "magic = " << kMagic << "\n";
  o << "format_version = " << format_version << "\n";
  o << "chunk_min = " << chunker.min_size << "\n";
  o << "chunk_avg = " << chunker.avg_size << "\n";
  o << "chunk_max = " << chunker.max_size << "\n";
  o << "chunk_normalization = " << chunker.normalization << "\n";
  char seed[17];
  snprintf(seed, sizeof seed, "%016llx", static_cast<unsigned long long>(hash_seed));
  o << "hash_seed = " << seed << "\n";
  o << "verify_dedup = " << (verify_dedup ? "true" : "false") << "\n";
  o << "marker_names = " << marker_names << "\n";
  o << "created_unix = " << created_unix << "\n";
  if (!data.empty()) {
    o << "data = " << data << "\n";
    if (!s3_endpoint.empty()) o << "s3_endpoint = " << s3_endpoint << "\n";
    if (!s3_region.empty()) o << "s3_region = " << s3_region << "\n";
    if (!s3_credentials_file.empty()) o << "s3_credentials_file = " << s3_credentials_file << "\n";
  }
  return o.str();
}

Result<StoreConfig> StoreConfig::Parse(const std::string& text) {
  StoreConfig c;
  bool magic = false, version = false;
  std::string unknown;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      std::string what = "config line " + std::to_string(lineno) + ": expected key = value";
      // Before our magic line, a file that is not ours (or cut off before it).
      if (!magic) return Status::NotFound("not a snapfs store (" + what + ", no magic line)");
      return Status::Corruption(what);
    }
    std::string k = Trim(line.substr(0, eq)), v = Trim(line.substr(eq + 1));
    uint64_t n = 0;
    auto num = [&](uint64_t* out, int base = 10) -> Status {
      if (!ParseU64(v, out, base)) return Status::Corruption("config: bad number for " + k);
      return Status::OK();
    };
    if (k == "magic") {
      if (v != kMagic) return Status::NotFound("not a snapfs store (bad magic)");
      magic = true;
    } else if (k == "format_version") {
      RETURN_IF_ERROR(num(&n));
      c.format_version = static_cast<uint32_t>(n);
      version = true;
    } else if (k == "chunk_min") {
      RETURN_IF_ERROR(num(&n));
      c.chunker.min_size = static_cast<uint32_t>(n);
    } else if (k == "chunk_avg") {
      RETURN_IF_ERROR(num(&n));
      c.chunker.avg_size = static_cast<uint32_t>(n);
    } else if (k == "chunk_max") {
      RETURN_IF_ERROR(num(&n));
      c.chunker.max_size = static_cast<uint32_t>(n);
    } else if (k == "chunk_normalization") {
      RETURN_IF_ERROR(num(&n));
      c.chunker.normalization = static_cast<uint32_t>(n);
    } else if (k == "hash_seed") {
      RETURN_IF_ERROR(num(&c.hash_seed, 16));
    } else if (k == "verify_dedup") {
      c.verify_dedup = (v == "true" || v == "1");
    } else if (k == "marker_names") {
      c.marker_names = v;
    } else if (k == "created_unix") {
      RETURN_IF_ERROR(num(&c.created_unix));
    } else if (k == "data") {
      c.data = v;
    } else if (k == "s3_endpoint") {
      c.s3_endpoint = v;
    } else if (k == "s3_region") {
      c.s3_region = v;
    } else if (k == "s3_credentials_file") {
      c.s3_credentials_file = v;
    } else {
      unknown = k;
    }
  }
  // Not ours (or cut off before its magic line): "not a store", as a folder without one.
  if (!magic) return Status::NotFound("not a snapfs store (no magic line)");
  if (!version) return Status::Corruption("config has no format_version");
  if (c.format_version < kFormatVersion || c.format_version > kNewestFormatVersion) {
    return Status::NotSupported("store format version " + std::to_string(c.format_version) +
                                " is not supported (this snapfs reads versions " +
                                std::to_string(kFormatVersion) + " to " +
                                std::to_string(kNewestFormatVersion) +
                                "; was the store made by a newer snapfs?)");
  }
  if (!unknown.empty()) {
    return Status::NotSupported("unknown config key '" + unknown +
                                "' (was the store made by a newer snapfs?)");
  }
  if (!c.data.empty() && !c.is_s3() && !c.data_is_folder()) {
    return Status::NotSupported("config: data = " + c.data + " is not a location this snapfs knows");
  }
  if (!c.data.empty() && c.format_version < kFormatVersionData) {
    return Status::Corruption("config: data = " + c.data + " in a format version 1 store");
  }
  RETURN_IF_ERROR(c.chunker.Validate().WithContext("config"));
  return c;
}

Result<StoreConfig> StoreConfig::Load(const std::string& path) {
  std::ifstream f(path);
  if (!f) return PosixError(path, errno);
  std::stringstream ss;
  ss << f.rdbuf();
  auto r = Parse(ss.str());
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

Status StoreConfig::Save(const std::string& path) const {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError(tmp, errno);
  std::string s = Serialize();
  ssize_t w = ::write(fd, s.data(), s.size());
  if (w != static_cast<ssize_t>(s.size()) || ::fsync(fd) != 0) {
    int e = w < 0 ? errno : (errno ? errno : EIO);
    ::close(fd);
    ::unlink(tmp.c_str());
    return PosixError(tmp, e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return PosixError(path, errno);
  return Status::OK();
}

}  // namespace snapfs
