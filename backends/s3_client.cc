#include "backends/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "base/log.h"

namespace snapfs {

struct S3Client::Handle {
  CURL* curl = nullptr;
  ~Handle() {
    if (curl) curl_easy_cleanup(curl);
  }
};

struct S3Client::Response {
  long http = 0;
  std::string body;  // error documents and listings; GET bodies go to the caller's buffer
  uint64_t content_length = 0;
  bool has_content_length = false;
  std::string content_range;  // "bytes a-b/total"
  std::string etag;
};

struct S3Client::Request {
  const char* method = "GET";
  std::string key;    // object key, empty for the bucket itself
  std::string query;  // already canonical: sorted by name, values percent-encoded
  std::string what;   // for messages: "GET key"
  std::vector<std::string> headers;
  // Upload body: size and reader (nullptr: none). A POST body in `post` instead.
  uint64_t body_size = 0;
  const BodyReader* body = nullptr;
  std::string post;
  bool has_post = false;
  // Download sink for GET: bytes land in out[0..out_len); more is a protocol error.
  uint8_t* out = nullptr;
  size_t out_len = 0;
  size_t out_got = 0;
  // Status of the body reader, when it failed (not retried).
  Status body_status;
  uint64_t body_pos = 0;
  int curl_code = 0;  // of the last attempt
};

namespace {

std::once_flag g_curl_init;

std::string Base64(const unsigned char* p, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Streams a body through MD5 without holding it whole: the Content-MD5 header.
Result<std::string> BodyMd5(const BodyReader& body, uint64_t size) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1) {
    return Status::IOError("MD5 init failed");
  }
  std::vector<uint8_t> buf(std::min<uint64_t>(size, 1 << 20));
  for (uint64_t pos = 0; pos < size;) {
    const size_t n = std::min<uint64_t>(buf.size(), size - pos);
    RETURN_IF_ERROR(body(pos, n, buf.data()));
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
    pos += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Base64(md, len);
}

std::string Escape(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string XmlUnescape(std::string s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}};
  for (const auto& [from, to] : kEntities) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + 1)) {
      s.replace(p, strlen(from), to);
    }
  }
  return s;
}

// The text of every <tag>...</tag> in `xml`, in order. S3's documents are flat enough
// that this is all the XML we need.
std::vector<std::string> XmlAll(const std::string& xml, const std::string& tag) {
  std::vector<std::string> out;
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  for (size_t p = xml.find(open); p != std::string::npos; p = xml.find(open, p)) {
    p += open.size();
    const size_t e = xml.find(close, p);
    if (e == std::string::npos) break;
    out.push_back(XmlUnescape(xml.substr(p, e - p)));
    p = e + close.size();
  }
  return out;
}

std::string XmlFirst(const std::string& xml, const std::string& tag) {
  auto all = XmlAll(xml, tag);
  return all.empty() ? "" : all[0];
}

struct Transfer {
  S3Client::Request* req;
  S3Client::Response* resp;
};

size_t WriteBody(char* p, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  const size_t len = size * n;
  // Error documents (and bodies of requests without a sink) go to resp->body.
  if (t->req->out == nullptr || t->resp->http >= 300 || t->resp->http == 0) {
    t->resp->body.append(p, len);
    return len;
  }
  if (len > t->req->out_len - t->req->out_got) return 0;  // more than asked for: abort
  memcpy(t->req->out + t->req->out_got, p, len);
  t->req->out_got += len;
  return len;
}

size_t ReadBody(char* p, size_t size, size_t n, void* ud) {
  auto* req = static_cast<S3Client::Request*>(ud);
  const size_t len = std::min<uint64_t>(size * n, req->body_size - req->body_pos);
  if (len == 0) return 0;
  Status st = (*req->body)(req->body_pos, len, reinterpret_cast<uint8_t*>(p));
  if (!st.ok()) {
    req->body_status = st;
    return CURL_READFUNC_ABORT;
  }
  req->body_pos += len;
  return len;
}

bool HeaderIs(std::string_view line, std::string_view name, std::string* value) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  std::string_view v = line.substr(name.size() + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
  *value = std::string(v);
  return true;
}

size_t OnHeader(char* p, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  std::string_view line(p, size * n);
  std::string v;
  if (line.starts_with("HTTP/")) {  // a new response (after a 100 Continue, say)
    t->resp->body.clear();
    t->resp->has_content_length = false;
    const size_t sp = line.find(' ');
    if (sp != std::string_view::npos) t->resp->http = atol(std::string(line.substr(sp + 1, 3)).c_str());
  } else if (HeaderIs(line, "content-length", &v)) {
    t->resp->content_length = strtoull(v.c_str(), nullptr, 10);
    t->resp->has_content_length = true;
  } else if (HeaderIs(line, "content-range", &v)) {
    t->resp->content_range = v;
  } else if (HeaderIs(line, "etag", &v)) {
    t->resp->etag = v;
  }
  return size * n;
}

bool Transient(long http) {
  return http == 408 || http == 429 || http == 500 || http == 502 || http == 503 || http == 504;
}

bool TransientCurl(CURLcode c) {
  switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_WRITE_ERROR:  // more bytes than the range asked for: a confused proxy
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

// An error response as a Status: the S3 error code and message, never the request's
// headers (they carry the signature).
Status HttpError(const std::string& what, const S3Client::Response& r) {
  std::string code = XmlFirst(r.body, "Code"), msg = XmlFirst(r.body, "Message");
  std::string text = what + ": HTTP " + std::to_string(r.http);
  if (!code.empty()) text += " " + code;
  if (!msg.empty()) text += " (" + msg + ")";
  switch (r.http) {
    case 404:
      return Status::NotFound(text);
    case 403:
    case 401:
      return Status::Access(text);
    case 412:
      return Status::AlreadyExists(text);
    case 416:
      return Status::Corruption(text);
    default:
      return Status::IOError(text);
  }
}

}  // namespace

Result<std::unique_ptr<S3Client>> S3Client::Create(S3ClientOptions opts) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (opts.bucket.empty()) return Status::InvalidArgument("S3: no bucket");
  if (opts.credentials.access_key.empty() || opts.credentials.secret_key.empty()) {
    return Status::InvalidArgument("S3: no credentials");
  }
  if (opts.region.empty()) opts.region = "us-east-1";
  while (!opts.endpoint.empty() && opts.endpoint.back() == '/') opts.endpoint.pop_back();
  if (!opts.endpoint.empty() && !opts.endpoint.starts_with("http://") &&
      !opts.endpoint.starts_with("https://")) {
    return Status::InvalidArgument("S3 endpoint must start with http:// or https://: " +
                                   opts.endpoint);
  }
  opts.max_attempts = std::max(1, opts.max_attempts);
  opts.part_size = std::max<uint64_t>(opts.part_size, 5ull << 20);  // S3's minimum
  return std::unique_ptr<S3Client>(new S3Client(std::move(opts)));
}

S3Client::S3Client(S3ClientOptions opts) : opts_(std::move(opts)) {}
S3Client::~S3Client() = default;

void S3Client::Count(uint64_t S3ClientStats::*counter) {
  MutexLock l(&stats_mu_);
  stats_.*counter += 1;
}

S3ClientStats S3Client::stats() const {
  MutexLock l(&stats_mu_);
  return stats_;
}

std::string S3Client::Url(const std::string& key, const std::string& query) const {
  std::string url;
  if (opts_.endpoint.empty()) {
    url = "https://" + opts_.bucket + ".s3." + opts_.region + ".amazonaws.com/" +
          Escape(key, true);
  } else {
    url = opts_.endpoint + "/" + opts_.bucket;
    if (!key.empty()) url += "/" + Escape(key, true);
  }
  if (!query.empty()) url += "?" + query;
  return url;
}

std::unique_ptr<S3Client::Handle> S3Client::TakeHandle() {
  {
    MutexLock l(&pool_mu_);
    if (!pool_.empty()) {
      auto h = std::move(pool_.back());
      pool_.pop_back();
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  h->curl = curl_easy_init();
  return h;
}

void S3Client::ReturnHandle(std::unique_ptr<Handle> h) {
  MutexLock l(&pool_mu_);
  if (pool_.size() < 32) pool_.push_back(std::move(h));
}

Result<S3Client::Response> S3Client::SendOnce(Request& req) {
  auto h = TakeHandle();
  if (!h->curl) return Status::IOError("S3: curl_easy_init failed");
  CURL* c = h->curl;
  curl_easy_reset(c);  // keeps the connection cache
  Response resp;
  Transfer t{&req, &resp};
  req.out_got = 0;
  req.body_pos = 0;
  const std::string url = Url(req.key, req.query);
  const std::string sigv4 = "aws:amz:" + opts_.region + ":s3";
  const std::string userpwd = opts_.credentials.access_key + ":" + opts_.credentials.secret_key;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERPWD, userpwd.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts_.connect_timeout_ms));
  const uint64_t bytes = std::max<uint64_t>(req.body_size, req.out_len);
  const uint64_t deadline_ms =
      static_cast<uint64_t>(opts_.request_timeout_ms) + bytes * 1000 / opts_.min_bytes_per_sec;
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(deadline_ms));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);

  curl_slist* hdrs = nullptr;
  // The payload is not hashed for the signature (it would mean reading every body
  // twice); its integrity comes from Content-MD5, which the server checks.
  hdrs = curl_slist_append(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
  // No "Expect:" to suppress 100-continue: curl 7.88 signs the empty header it does not
  // send, and radosgw answers 403 SignatureDoesNotMatch.
  if (!opts_.credentials.session_token.empty()) {
    hdrs = curl_slist_append(hdrs, ("x-amz-security-token: " + opts_.credentials.session_token).c_str());
  }
  for (const auto& hd : req.headers) hdrs = curl_slist_append(hdrs, hd.c_str());

  const std::string m = req.method;
  if (m == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body_size));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &req);
  } else if (m == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.post.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.post.size()));
  } else if (m == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (m != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

  const CURLcode rc = curl_easy_perform(c);
  req.curl_code = rc;
  curl_slist_free_all(hdrs);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.http);
  curl_off_t up = 0, down = 0;
  curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
  {
    MutexLock l(&stats_mu_);
    stats_.requests++;
    stats_.bytes_up += static_cast<uint64_t>(up);
    stats_.bytes_down += static_cast<uint64_t>(down);
  }
  if (rc != CURLE_OK) {
    // A failed transfer may leave the connection in any state: drop the handle.
    if (!req.body_status.ok()) return req.body_status;
    return Status::IOError(req.what + ": " + curl_easy_strerror(rc));
  }
  ReturnHandle(std::move(h));
  return resp;
}

Result<S3Client::Response> S3Client::Send(Request& req) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  Status last;
  for (int attempt = 1;; ++attempt) {
    auto r = SendOnce(req);
    bool retry = false;
    if (!r.ok()) {
      if (!req.body_status.ok()) return r.status();  // our own file failed: not the network
      last = r.status();
      retry = TransientCurl(static_cast<CURLcode>(req.curl_code));
    } else if (Transient(r->http) || (r->http >= 300 && XmlFirst(r->body, "Code") == "SlowDown")) {
      last = HttpError(req.what, *r);
      retry = true;
    } else if (r->http < 300 && req.out != nullptr && req.out_got != req.out_len &&
               !(r->has_content_length && r->content_length == req.out_got)) {
      // A body shorter than its Content-Length: curl reports that itself; this is the
      // case of a server that closed early without one.
      last = Status::IOError(req.what + ": truncated body (" + std::to_string(req.out_got) +
                             " of " + std::to_string(req.out_len) + " bytes)");
      retry = true;
    } else {
      return r;
    }
    if (!retry || attempt >= opts_.max_attempts) break;
    // Full jitter: a random wait in [0, min(cap, base * 2^attempt)).
    const uint64_t cap = std::min<uint64_t>(
        static_cast<uint64_t>(opts_.backoff_max_ms),
        static_cast<uint64_t>(opts_.backoff_base_ms) << std::min(attempt, 20));
    const uint64_t wait = cap == 0 ? 0 : rng() % cap;
    SNAPFS_LOG_DEBUG("S3 retry " + std::to_string(attempt) + " of " + req.what + " in " +
                     std::to_string(wait) + " ms: " + last.message());
    Count(&S3ClientStats::retries);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait));
  }
  Status failed = Status::IOError(last.message() + " (gave up after " +
                                  std::to_string(opts_.max_attempts) + " attempts)");
  SNAPFS_LOG_ERROR("S3: " + failed.message());
  return failed;
}

Status S3Client::PutBytes(const std::string& key, std::span<const uint8_t> data,
                          bool if_none_match) {
  BodyReader reader = [data](uint64_t off, size_t len, uint8_t* out) {
    memcpy(out, data.data() + off, len);
    return Status::OK();
  };
  return Put(key, data.size(), reader, if_none_match);
}

Status S3Client::Put(const std::string& key, uint64_t size, const BodyReader& body,
                     bool if_none_match) {
  if (size > opts_.multipart_threshold) {
    if (if_none_match) {
      // radosgw 16 does not honour If-None-Match on CompleteMultipartUpload; pack ids are
      // never reused, so this check only guards against a bug, and a HEAD suffices.
      auto h = Head(key);
      if (h.ok()) return Status::AlreadyExists("PUT " + key + ": exists");
      if (!h.status().Is(Code::kNotFound)) return h.status();
    }
    return PutMultipart(key, size, body);
  }
  ASSIGN_OR_RETURN(std::string md5, BodyMd5(body, size));
  Request req;
  req.method = "PUT";
  req.key = key;
  req.what = "PUT " + key;
  req.headers.push_back("Content-MD5: " + md5);
  req.headers.push_back("Content-Type: application/octet-stream");
  if (if_none_match) req.headers.push_back("If-None-Match: *");
  req.body = &body;
  req.body_size = size;
  Count(&S3ClientStats::puts);
  ASSIGN_OR_RETURN(Response r, Send(req));
  if (r.http >= 300) return HttpError(req.what, r);
  return Status::OK();
}

Status S3Client::PutMultipart(const std::string& key, uint64_t size, const BodyReader& body) {
  Request init;
  init.method = "POST";
  init.key = key;
  init.query = "uploads=";
  init.what = "POST " + key + "?uploads";
  init.has_post = true;
  init.headers.push_back("Content-Type: application/octet-stream");
  ASSIGN_OR_RETURN(Response ir, Send(init));
  if (ir.http >= 300) return HttpError(init.what, ir);
  const std::string upload_id = XmlFirst(ir.body, "UploadId");
  if (upload_id.empty()) return Status::IOError(init.what + ": no UploadId in the answer");
  auto abort = [&] {
    Request a;
    a.method = "DELETE";
    a.key = key;
    a.query = "uploadId=" + Escape(upload_id, false);
    a.what = "DELETE " + key + "?uploadId";
    (void)Send(a);
  };
  std::string complete = "<CompleteMultipartUpload>";
  int part = 1;
  for (uint64_t pos = 0; pos < size; pos += opts_.part_size, ++part) {
    const uint64_t len = std::min(opts_.part_size, size - pos);
    BodyReader sub = [&body, pos](uint64_t off, size_t n, uint8_t* out) {
      return body(pos + off, n, out);
    };
    auto md5 = BodyMd5(sub, len);
    if (!md5.ok()) {
      abort();
      return md5.status();
    }
    Request req;
    req.method = "PUT";
    req.key = key;
    // Canonical order: partNumber before uploadId.
    req.query = "partNumber=" + std::to_string(part) + "&uploadId=" + Escape(upload_id, false);
    req.what = "PUT " + key + " part " + std::to_string(part);
    req.headers.push_back("Content-MD5: " + *md5);
    req.body = &sub;
    req.body_size = len;
    Count(&S3ClientStats::puts);
    auto r = Send(req);
    Status st = !r.ok() ? r.status() : r->http >= 300 ? HttpError(req.what, *r) : Status::OK();
    if (!st.ok()) {
      abort();
      return st;
    }
    complete += "<Part><PartNumber>" + std::to_string(part) + "</PartNumber><ETag>" + r->etag +
                "</ETag></Part>";
  }
  complete += "</CompleteMultipartUpload>";
  Request fin;
  fin.method = "POST";
  fin.key = key;
  fin.query = "uploadId=" + Escape(upload_id, false);
  fin.what = "POST " + key + "?uploadId (complete)";
  fin.post = complete;
  fin.has_post = true;
  fin.headers.push_back("Content-Type: application/xml");
  auto r = Send(fin);
  // S3 may answer 200 with an error document in the body.
  Status st = !r.ok()                                    ? r.status()
              : r->http >= 300                           ? HttpError(fin.what, *r)
              : r->body.find("<Error>") != std::string::npos ? HttpError(fin.what, *r)
                                                         : Status::OK();
  if (!st.ok()) abort();
  return st;
}

Status S3Client::GetRange(const std::string& key, uint64_t offset, size_t len, uint8_t* out,
                          size_t* got, uint64_t* object_size) {
  if (len == 0) {
    // S3 has no empty range: check existence and size instead.
    ASSIGN_OR_RETURN(uint64_t size, Head(key));
    if (object_size) *object_size = size;
    if (got) *got = 0;
    if (offset > size) {
      return Status::Corruption("GET " + key + ": offset " + std::to_string(offset) +
                                " is past the end (" + std::to_string(size) + " bytes)");
    }
    return Status::OK();
  }
  Request req;
  req.method = "GET";
  req.key = key;
  req.what = "GET " + key + " [" + std::to_string(offset) + ", +" + std::to_string(len) + ")";
  req.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" +
                        std::to_string(offset + len - 1));
  req.out = out;
  req.out_len = len;
  Count(&S3ClientStats::gets);
  ASSIGN_OR_RETURN(Response r, Send(req));
  uint64_t total = 0;
  bool has_total = false;
  if (auto slash = r.content_range.rfind('/'); slash != std::string::npos) {
    total = strtoull(r.content_range.c_str() + slash + 1, nullptr, 10);
    has_total = r.content_range.substr(slash + 1) != "*";
  }
  if (object_size && has_total) *object_size = total;
  if (r.http == 416) {
    if (got && has_total && offset >= total) {
      *got = 0;
      return Status::OK();
    }
    return Status::Corruption(req.what + " runs past the end of the object" +
                              (has_total ? " (" + std::to_string(total) + " bytes)" : ""));
  }
  if (r.http >= 300) return HttpError(req.what, r);
  if (r.http == 200) {
    // The whole object came back (a server that ignores Range): only fine when the
    // range was the whole object; WriteBody already refused anything longer than asked.
    if (offset != 0) return Status::IOError(req.what + ": the server ignored the range");
  }
  if (got) {
    *got = req.out_got;
    return Status::OK();
  }
  if (req.out_got != len) {
    return Status::Corruption(req.what + " runs past the end of the object (got " +
                              std::to_string(req.out_got) + " bytes" +
                              (has_total ? ", object has " + std::to_string(total) : "") + ")");
  }
  return Status::OK();
}

Result<uint64_t> S3Client::Head(const std::string& key) {
  Request req;
  req.method = "HEAD";
  req.key = key;
  req.what = "HEAD " + key;
  Count(&S3ClientStats::heads);
  ASSIGN_OR_RETURN(Response r, Send(req));
  if (r.http >= 300) return HttpError(req.what, r);
  return r.content_length;
}

Status S3Client::Delete(const std::string& key) {
  Request req;
  req.method = "DELETE";
  req.key = key;
  req.what = "DELETE " + key;
  Count(&S3ClientStats::deletes);
  ASSIGN_OR_RETURN(Response r, Send(req));
  if (r.http >= 300) return HttpError(req.what, r);
  return Status::OK();
}

Result<std::vector<S3Object>> S3Client::List(const std::string& prefix) {
  std::vector<S3Object> out;
  std::string token;
  for (;;) {
    Request req;
    req.method = "GET";
    // Canonical order of the names (SigV4 signs the query as sent).
    req.query = token.empty() ? "" : "continuation-token=" + Escape(token, false) + "&";
    req.query += "list-type=2&max-keys=" + std::to_string(opts_.list_page_size) +
                 "&prefix=" + Escape(prefix, false);
    req.what = "LIST " + prefix;
    Count(&S3ClientStats::lists);
    ASSIGN_OR_RETURN(Response r, Send(req));
    if (r.http >= 300) return HttpError(req.what, r);
    for (const std::string& c : XmlAll(r.body, "Contents")) {
      S3Object o;
      o.key = XmlFirst(c, "Key");
      o.size = strtoull(XmlFirst(c, "Size").c_str(), nullptr, 10);
      out.push_back(std::move(o));
    }
    if (XmlFirst(r.body, "IsTruncated") != "true") break;
    token = XmlFirst(r.body, "NextContinuationToken");
    if (token.empty()) return Status::IOError(req.what + ": truncated listing without a token");
  }
  std::sort(out.begin(), out.end(), [](const S3Object& a, const S3Object& b) { return a.key < b.key; });
  return out;
}

Status S3Client::CheckBucket() {
  Request req;
  req.method = "HEAD";
  req.what = "bucket " + opts_.bucket;
  ASSIGN_OR_RETURN(Response r, Send(req));
  if (r.http == 404) {
    return Status::NotFound("bucket " + opts_.bucket + " does not exist (create it, or pass --create-bucket)");
  }
  if (r.http == 403 || r.http == 401) {
    return Status::Access("bucket " + opts_.bucket + ": access denied (HTTP " +
                          std::to_string(r.http) + "): check the credentials");
  }
  if (r.http >= 300) return HttpError(req.what, r);
  return Status::OK();
}

Status S3Client::CreateBucket() {
  Request req;
  req.method = "PUT";
  req.what = "create bucket " + opts_.bucket;
  std::string cfg;
  if (opts_.region != "us-east-1" && opts_.endpoint.empty()) {
    cfg = "<CreateBucketConfiguration><LocationConstraint>" + opts_.region +
          "</LocationConstraint></CreateBucketConfiguration>";
  }
  BodyReader reader = [&cfg](uint64_t off, size_t len, uint8_t* out) {
    memcpy(out, cfg.data() + off, len);
    return Status::OK();
  };
  req.body = &reader;
  req.body_size = cfg.size();
  ASSIGN_OR_RETURN(Response r, Send(req));
  if (r.http == 409 && XmlFirst(r.body, "Code") == "BucketAlreadyOwnedByYou") return Status::OK();
  if (r.http >= 300) return HttpError(req.what, r);
  return Status::OK();
}

Result<S3Location> ParseS3Url(const std::string& url) {
  constexpr std::string_view kScheme = "s3://";
  if (!url.starts_with(kScheme)) {
    return Status::InvalidArgument("not an s3:// URL: " + url);
  }
  std::string rest = url.substr(kScheme.size());
  S3Location loc;
  const size_t slash = rest.find('/');
  loc.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) loc.prefix = rest.substr(slash + 1);
  while (!loc.prefix.empty() && loc.prefix.back() == '/') loc.prefix.pop_back();
  // Bucket names: 3-63 of [a-z0-9.-], starting and ending with a letter or digit.
  auto ok_char = [](char c) { return islower(static_cast<unsigned char>(c)) || isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.'; };
  if (loc.bucket.size() < 3 || loc.bucket.size() > 63 ||
      !std::all_of(loc.bucket.begin(), loc.bucket.end(), ok_char) || loc.bucket.front() == '-' ||
      loc.bucket.front() == '.' || loc.bucket.back() == '-' || loc.bucket.back() == '.') {
    return Status::InvalidArgument("bad bucket name in " + url +
                                   " (3-63 lowercase letters, digits, '-' and '.')");
  }
  if (loc.prefix.starts_with("/") || loc.prefix.find("//") != std::string::npos) {
    return Status::InvalidArgument("bad prefix in " + url + " (empty path component)");
  }
  for (char c : loc.prefix) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '\\') {
      return Status::InvalidArgument("bad character in the prefix of " + url);
    }
  }
  return loc;
}

Result<S3Credentials> LoadS3Credentials(const std::string& file) {
  S3Credentials c;
  if (!file.empty()) {
    struct stat st;
    if (::stat(file.c_str(), &st) != 0) return PosixError("credentials file " + file, errno);
    if (st.st_mode & 077) {
      return Status::Permission("credentials file " + file +
                                " is readable by others (chmod 600 it)");
    }
    std::ifstream in(file);
    if (!in) return PosixError("credentials file " + file, errno);
    std::string line;
    while (std::getline(in, line)) {
      const size_t eq = line.find('=');
      if (eq == std::string::npos) continue;
      auto trim = [](std::string s) {
        const size_t b = s.find_first_not_of(" \t\r");
        if (b == std::string::npos) return std::string();
        return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
      };
      const std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
      if (k == "aws_access_key_id") c.access_key = v;
      if (k == "aws_secret_access_key") c.secret_key = v;
      if (k == "aws_session_token") c.session_token = v;
    }
    if (c.access_key.empty() || c.secret_key.empty()) {
      return Status::InvalidArgument("credentials file " + file +
                                     " lacks aws_access_key_id or aws_secret_access_key");
    }
    return c;
  }
  auto env = [](const char* name) {
    const char* v = getenv(name);
    return std::string(v ? v : "");
  };
  c.access_key = env("AWS_ACCESS_KEY_ID");
  c.secret_key = env("AWS_SECRET_ACCESS_KEY");
  c.session_token = env("AWS_SESSION_TOKEN");
  if (c.access_key.empty() || c.secret_key.empty()) {
    return Status::InvalidArgument(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass "
        "--s3-credentials FILE");
  }
  return c;
}

}  // namespace snapfs
