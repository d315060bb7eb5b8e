// Tests of the snapshot-marker reference scan (core/marker_scan). The markers are made by
// a small Java DataOutput emulation (big-endian ints and longs, writeUTF strings) laid out
// like Flink's `_metadata`, and read back by a matching DataInput reader.

#include "core/snap/marker_scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tests/util/java_data.h"
#include "tests/util/random.h"

namespace snapfs {
namespace {

const std::vector<std::string> kMount = {"/mnt/ckpt"};
// The store's mount point now, and the one it had before it moved.
const std::vector<std::string> kMounts = {"/mnt/ckpt", "/mnt/old"};

// ---- Java DataOutput / DataInput ------------------------------------------------------

// One field of a marker, as written and as read back.
struct Field {
  enum Type { kInt, kLong, kUtf, kBlob };
  Type type;
  int64_t num = 0;    // kInt, kLong
  std::string bytes;  // kUtf (the Java string, here ASCII/UTF-8), kBlob (raw bytes)
  bool operator==(const Field&) const = default;
};

// java.io.DataOutputStream (tests/util/java_data.h) that also records the fields, so that
// tests can compare a re-parse with what was written.
class DataOutput {
 public:
  void WriteInt(int32_t v) {
    out_.WriteInt(v);
    fields_.push_back({Field::kInt, v, {}});
  }
  void WriteLong(int64_t v) {
    out_.WriteLong(v);
    fields_.push_back({Field::kLong, v, {}});
  }
  void WriteUTF(std::string_view s) {
    out_.WriteUTF(s);
    fields_.push_back({Field::kUtf, 0, std::string(s)});
  }
  // Inline state (Flink's ByteStreamStateHandle): int length, then the raw bytes.
  void WriteBlob(std::string_view b) {
    out_.WriteSizedBytes(b);
    fields_.push_back({Field::kBlob, 0, std::string(b)});
  }
  const std::string& bytes() const { return out_.bytes(); }
  const std::vector<Field>& fields() const { return fields_; }

 private:
  test::JavaDataOutput out_;
  std::vector<Field> fields_;
};

// java.io.DataInputStream: reads `types` in order; nullopt on any short read, malformed
// modified UTF-8 or trailing bytes.
std::optional<std::vector<Field>> ReadFields(std::string_view in,
                                             const std::vector<Field::Type>& types) {
  test::JavaDataInput r(in);
  std::vector<Field> out;
  for (Field::Type t : types) {
    switch (t) {
      case Field::kInt:
        out.push_back({t, static_cast<int32_t>(r.ReadInt()), {}});
        break;
      case Field::kLong:
        out.push_back({t, static_cast<int64_t>(r.ReadLong()), {}});
        break;
      case Field::kUtf:
        out.push_back({t, 0, r.ReadUTF()});
        break;
      case Field::kBlob:
        out.push_back({t, 0, r.ReadSizedBytes()});
        break;
    }
    if (!r.ok()) return std::nullopt;
  }
  if (!r.AtEnd()) return std::nullopt;
  return out;
}

std::vector<Field::Type> TypesOf(const std::vector<Field>& fields) {
  std::vector<Field::Type> types;
  for (const auto& f : fields) types.push_back(f.type);
  return types;
}

// ---- A Flink-like `_metadata` -----------------------------------------------------------

struct FlinkMarker {
  DataOutput out;
  std::vector<std::string> in_mount;  // expected in-mount references, in order, once each
  std::vector<std::string> bare;      // expected bare names (files of the snapshot folder)
};

// Roughly Flink's MetadataV3Serializer: magic, version, checkpoint id, master states,
// operator states with subtask states holding incremental keyed state handles (shared
// files as absolute URIs, private files as bare names) and inline state under 20 KiB.
// Shared files repeat across subtasks; some strings are references the scan must reject.
FlinkMarker MakeFlinkMarker(uint64_t seed, size_t max_inline = 20 * 1024) {
  std::mt19937_64 rng(seed);
  FlinkMarker m;
  auto in_mount = [&](const std::string& rel) {
    if (std::find(m.in_mount.begin(), m.in_mount.end(), rel) == m.in_mount.end()) {
      m.in_mount.push_back(rel);
    }
  };
  DataOutput& o = m.out;
  o.WriteInt(0x4960672d);  // magic
  o.WriteInt(3);           // version
  o.WriteLong(7);          // checkpoint id
  o.WriteInt(0);           // master states
  std::vector<std::string> shared;
  for (int i = 0; i < 6; i++) shared.push_back(test::RandomUuid(rng));
  const int operators = 3;
  o.WriteInt(operators);
  for (int op = 0; op < operators; op++) {
    o.WriteLong(static_cast<int64_t>(rng()));  // operator id
    o.WriteLong(static_cast<int64_t>(rng()));
    o.WriteInt(2);    // parallelism
    o.WriteInt(128);  // max parallelism
    o.WriteInt(2);    // subtask states
    for (int st = 0; st < 2; st++) {
      o.WriteInt(st);
      o.WriteUTF("org.apache.flink.runtime.state.IncrementalRemoteKeyedStateHandle");
      o.WriteUTF("backend-" + test::RandomUuid(rng));  // backend identifier: not a file
      o.WriteLong(42);                                 // checkpoint id
      // Meta state handle: a file of the snapshot folder, by absolute URI.
      std::string meta = test::RandomUuid(rng);
      o.WriteUTF("file:/mnt/ckpt/job/chk-7/" + meta);
      o.WriteLong(static_cast<int64_t>(rng() % 100000));
      in_mount("job/chk-7/" + meta);
      // Shared files: absolute URIs, several subtasks name the same ones.
      o.WriteInt(2);
      for (int k = 0; k < 2; k++) {
        const std::string& uuid = shared[(op * 2 + st + k) % shared.size()];
        o.WriteUTF("file:/mnt/ckpt/job/shared/" + uuid);
        o.WriteLong(static_cast<int64_t>(rng() % 100000));
        in_mount("job/shared/" + uuid);
      }
      // Private files: bare names in the snapshot folder.
      o.WriteInt(1);
      std::string priv = test::RandomUuid(rng);
      o.WriteUTF(priv);
      o.WriteLong(static_cast<int64_t>(rng() % 100000));
      m.bare.push_back(priv);
      // Inline state: raw bytes.
      o.WriteBlob(test::RandomBytes(rng, rng() % (max_inline + 1)));
    }
  }
  // A file under the mount point the store had before it moved.
  std::string old = test::RandomUuid(rng);
  o.WriteUTF("file:///mnt/old/job/shared/" + old);
  o.WriteLong(1);
  in_mount("job/shared/" + old);
  // References the scan must not take.
  o.WriteUTF("hdfs://namenode/mnt/ckpt/job/shared/" + test::RandomUuid(rng));
  o.WriteLong(2);
  o.WriteUTF("file:/mnt/ckptX/job/shared/" + test::RandomUuid(rng));
  o.WriteLong(3);
  o.WriteUTF("file:/mnt/ckpt/../etc/passwd");
  o.WriteLong(4);
  o.WriteUTF("file://otherhost/mnt/ckpt/job/shared/" + test::RandomUuid(rng));
  o.WriteLong(5);
  return m;
}

std::vector<std::string> InMount(const std::vector<MarkerReference>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) {
    if (r.kind == MarkerReference::kInMount) out.push_back(r.path);
  }
  return out;
}

std::vector<std::string> BareNames(const std::vector<MarkerReference>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) {
    if (r.kind == MarkerReference::kBareName) out.push_back(r.path);
  }
  return out;
}

// The invariants every scan result has, whatever the input.
void ExpectWellFormed(const std::vector<MarkerReference>& refs) {
  std::set<std::pair<int, std::string>> seen;
  for (const auto& r : refs) {
    EXPECT_TRUE(seen.insert({r.kind, r.path}).second) << "twice: " << r.path;
    ASSERT_FALSE(r.path.empty());
    if (r.kind == MarkerReference::kBareName) {
      EXPECT_EQ(r.path.find('/'), std::string::npos) << r.path;
      EXPECT_LE(r.path.size(), kMaxBareName);
      EXPECT_NE(r.path, ".");
      EXPECT_NE(r.path, "..");
    } else {
      EXPECT_NE(r.path.front(), '/') << r.path;
      EXPECT_NE(r.path.back(), '/') << r.path;
      size_t i = 0;
      while (i <= r.path.size()) {
        size_t j = std::min(r.path.find('/', i), r.path.size());
        std::string_view part = std::string_view(r.path).substr(i, j - i);
        EXPECT_FALSE(part.empty() || part == "." || part == "..") << r.path;
        i = j + 1;
      }
    }
  }
}

std::string Utf(std::string_view s) {
  DataOutput o;
  o.WriteUTF(s);
  return o.bytes();
}

std::string ReplaceAll(std::string s, std::string_view from, std::string_view to, size_t* n) {
  *n = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
    ++*n;
  }
  return s;
}

// The obvious quadratic FindUtfStrings, to check the linear one against.
std::vector<std::pair<size_t, size_t>> NaiveUtfStrings(std::string_view m, size_t min_length) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i + 2 < m.size(); i++) {
    size_t len = (static_cast<unsigned char>(m[i]) << 8) | static_cast<unsigned char>(m[i + 1]);
    if (len == 0 || len < min_length || i + 2 + len > m.size()) continue;
    bool text = true;
    for (size_t k = i + 2; k < i + 2 + len && text; k++) {
      unsigned char c = static_cast<unsigned char>(m[k]);
      text = c >= 0x20 && c != 0x7f;
    }
    if (text) out.emplace_back(i, len);
  }
  return out;
}

// ---- Scanning a Flink-like marker -----------------------------------------------------

TEST(MarkerScan, FlinkMarkerYieldsExpectedReferencesInOrderOnce) {
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    SCOPED_TRACE(seed);
    FlinkMarker m = MakeFlinkMarker(seed);
    auto refs = ScanMarker(m.out.bytes(), kMounts);
    ExpectWellFormed(refs);
    EXPECT_EQ(InMount(refs), m.in_mount);
    // The caller keeps bare names of files in the snapshot folder; every other writeUTF
    // string without '/' (class names, ids, the odd run of text in inline state) is a
    // candidate it drops.
    std::set<std::string> folder(m.bare.begin(), m.bare.end());
    folder.insert("_metadata");
    std::vector<std::string> kept;
    for (const auto& b : BareNames(refs)) {
      if (folder.count(b)) kept.push_back(b);
    }
    EXPECT_EQ(kept, m.bare);
    // The class name is a bare-name candidate too.
    auto bare = BareNames(refs);
    EXPECT_NE(std::find(bare.begin(), bare.end(),
                        "org.apache.flink.runtime.state.IncrementalRemoteKeyedStateHandle"),
              bare.end());
  }
}

TEST(MarkerScan, OnlyCurrentMountWithoutPastMountPoint) {
  FlinkMarker m = MakeFlinkMarker(9);
  auto refs = InMount(ScanMarker(m.out.bytes(), kMount));
  std::vector<std::string> want(m.in_mount.begin(), m.in_mount.end() - 1);  // not /mnt/old
  EXPECT_EQ(refs, want);
}

TEST(MarkerScan, EmptyAndTinyMarkers) {
  for (std::string_view s : {std::string_view(""), std::string_view("\0", 1),
                             std::string_view("\0\1", 2), std::string_view("\0\1a", 3)}) {
    auto refs = ScanMarker(s, kMounts);
    ExpectWellFormed(refs);
    EXPECT_LE(refs.size(), 1u);
  }
  EXPECT_EQ(ScanMarker(std::string_view("\0\1a", 3), kMounts),
            (std::vector<MarkerReference>{{MarkerReference::kBareName, "a"}}));
  EXPECT_TRUE(FindUtfStrings("").empty());
  EXPECT_TRUE(FindUtfStrings(std::string_view("\0\0\0", 3)).empty());  // length 0: no string
}

// ---- Resolving one reference --------------------------------------------------------------

TEST(MarkerScan, FileUriForms) {
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/a", kMount), "job/a");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a", kMount), "job/a");
  EXPECT_EQ(ResolveInMount("file:///mnt/ckpt/job/a", kMount), "job/a");
  EXPECT_EQ(ResolveInMount("file://localhost/mnt/ckpt/job/a", kMount), "job/a");
  // Another host, no path, relative forms: not ours.
  EXPECT_EQ(ResolveInMount("file://otherhost/mnt/ckpt/job/a", kMount), "");
  EXPECT_EQ(ResolveInMount("file://localhost", kMount), "");
  EXPECT_EQ(ResolveInMount("file:mnt/ckpt/job/a", kMount), "");
  EXPECT_EQ(ResolveInMount("file:", kMount), "");
  EXPECT_EQ(ResolveInMount("mnt/ckpt/job/a", kMount), "");
  EXPECT_EQ(ResolveInMount("", kMount), "");
  // The mount point itself is no file reference.
  EXPECT_EQ(ResolveInMount("/mnt/ckpt", kMount), "");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/", kMount), "");
}

TEST(MarkerScan, PercentEscapesInUris) {
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a%20b", kMount), "job/a b");
  EXPECT_EQ(ResolveInMount("file:/mnt/%63kpt/job/%E2%82%AC", kMount), "job/\xe2\x82\xac");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job%2Fshared%2fx", kMount), "job/shared/x");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/shared/%2e%2E/x", kMount), "job/x");
  // Not an escape: kept as written.
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a%zzb", kMount), "job/a%zzb");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a%4", kMount), "job/a%4");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a%", kMount), "job/a%");
  // A decoded NUL: not a path.
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/job/a%00b", kMount), "");
  // Plain paths are not URIs: no decoding.
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/a%20b", kMount), "job/a%20b");
}

TEST(MarkerScan, Normalisation) {
  EXPECT_EQ(ResolveInMount("/mnt/ckpt//job/./shared/../shared/x", kMount), "job/shared/x");
  EXPECT_EQ(ResolveInMount("//mnt///ckpt/job//x/", kMount), "job/x");
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/../ckpt/job/x", kMount), "job/x");
  EXPECT_EQ(ResolveInMount("/mnt/./ckpt/job/.", kMount), "job");
  EXPECT_EQ(ResolveInMount("file:///mnt/ckpt/job/chk-1/../shared/y", kMount), "job/shared/y");
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/..", kMount), "");  // the mount point
}

TEST(MarkerScan, PathsEscapingTheMountAreRejected) {
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/../etc/passwd", kMount), "");
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/../../ckptX/a", kMount), "");
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/../../../mnt/other/a", kMount), "");
  EXPECT_EQ(ResolveInMount("/../mnt/ckpt/a", kMount), "");  // above the root
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/../../../../a", kMount), "");
  EXPECT_EQ(ResolveInMount("file:/mnt/ckpt/%2e%2e/etc/passwd", kMount), "");
  // Climbing out and back in is fine: the result is what the path names.
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/../ckpt/a", kMount), "a");
}

TEST(MarkerScan, PastMountPointsResolve) {
  EXPECT_EQ(ResolveInMount("/mnt/old/job/shared/a", kMounts), "job/shared/a");
  EXPECT_EQ(ResolveInMount("file:/mnt/old/job/shared/a", kMounts), "job/shared/a");
  EXPECT_EQ(ResolveInMount("/mnt/ckpt/job/shared/a", kMounts), "job/shared/a");
  EXPECT_EQ(ResolveInMount("/mnt/old/job/shared/a", kMount), "");
  std::string marker = Utf("file:/mnt/old/job/shared/a") + std::string("\0\0\0\1", 4) +
                       Utf("/mnt/ckpt/job/shared/b") + Utf("file://localhost/mnt/old/job/c");
  EXPECT_EQ(InMount(ScanMarker(marker, kMounts)),
            (std::vector<std::string>{"job/shared/a", "job/shared/b", "job/c"}));
  EXPECT_EQ(InMount(ScanMarker(marker, kMount)), (std::vector<std::string>{"job/shared/b"}));
}

TEST(MarkerScan, OtherMountsAndFilesystemsAreRejected) {
  for (std::string_view ref :
       {"/mnt/ckptX/job/a", "file:/mnt/ckptX/job/a", "/mnt/ckp/a", "/mnt", "/mnt/", "/",
        "hdfs://host/mnt/ckpt/x", "hdfs:/mnt/ckpt/x", "s3://bucket/mnt/ckpt/x",
        "viewfs:///mnt/ckpt/x", "/other/mnt/ckpt/x"}) {
    SCOPED_TRACE(ref);
    EXPECT_EQ(ResolveInMount(ref, kMounts), "");
    // Neither as a writeUTF string nor as text in a marker.
    EXPECT_TRUE(InMount(ScanMarker(Utf(ref), kMounts)).empty());
    std::string json = "{\"dir\": \"" + std::string(ref) + "\"}\n";
    EXPECT_TRUE(InMount(ScanMarker(json, kMounts)).empty());
  }
}

// ---- Text runs ----------------------------------------------------------------------

TEST(MarkerScan, TextRunsInJsonAndProperties) {
  std::string json =
      "{\"checkpoint\": 7, \"shared\": [\"/mnt/ckpt/job/shared/a\", "
      "\"file:///mnt/ckpt/job/shared/b\",\"file:/mnt/ckpt/job/shared/a\"],\n"
      "\t\"dir\": \"file://localhost/mnt/old/job/c\", \"remote\": "
      "\"hdfs://nn/mnt/ckpt/job/shared/z\", \"other\": \"/mnt/ckptX/y\", "
      "\"up\": \"/mnt/ckpt/job/../../etc\", \"tail\": \"/x/mnt/ckpt/job/t\"}\n";
  EXPECT_EQ(InMount(ScanMarker(json, kMounts)),
            (std::vector<std::string>{"job/shared/a", "job/shared/b", "job/c"}));

  std::string props =
      "state.checkpoints.dir=/mnt/ckpt/job/chk-7\n"
      "shared=file:/mnt/ckpt/job/shared/p\n"
      "old = /mnt/old/job/q\r\n"
      "list=(/mnt/ckpt/job/r;/mnt/ckpt/job/s)\n";
  EXPECT_EQ(InMount(ScanMarker(props, kMounts)),
            (std::vector<std::string>{"job/chk-7", "job/shared/p", "job/q", "job/r", "job/s"}));
}

TEST(MarkerScan, TextRunReferencesInOrderOfAppearanceAcrossMountPoints) {
  std::string text = "[\"/mnt/old/job/x\", \"/mnt/ckpt/job/y\", \"/mnt/old/job/z\"]";
  EXPECT_EQ(InMount(ScanMarker(text, kMounts)),
            (std::vector<std::string>{"job/x", "job/y", "job/z"}));
}

TEST(MarkerScan, LongSingleLineJsonHasOnlyItsReferences) {
  // A long line of text is full of byte pairs that look like writeUTF lengths of
  // thousands; none of those is a string, so no reference has a tail of JSON.
  std::string json =
      "{\"paths\": [\"/mnt/ckpt/job/shared/a\", \"file:/mnt/ckpt/job/shared/b\"],"
      " \"pad\": \"" +
      std::string(40000, 'p') + "\", \"more\": [\"/mnt/old/job/c\"], \"pad2\": \"" +
      std::string(40000, 'q') + "\"}";
  auto refs = ScanMarker(json, kMounts);
  ExpectWellFormed(refs);
  EXPECT_EQ(InMount(refs), (std::vector<std::string>{"job/shared/a", "job/shared/b", "job/c"}));
}

TEST(MarkerScan, WriteUtfReferenceIsTakenWhole) {
  // Text right after a writeUTF string, or a space inside it, does not change it.
  std::string marker = Utf("file:/mnt/ckpt/job/a b") + Utf("/mnt/ckpt/job/c") + "xyz";
  EXPECT_EQ(InMount(ScanMarker(marker, kMount)), (std::vector<std::string>{"job/a b", "job/c"}));
}

// ---- Damaged markers ------------------------------------------------------------------

TEST(MarkerScan, EveryPrefixOfAMarkerYieldsASubset) {
  FlinkMarker m = MakeFlinkMarker(11, /*max_inline=*/64);
  const std::string& full = m.out.bytes();
  auto full_refs = ScanMarker(full, kMounts);
  std::set<std::string> full_in(m.in_mount.begin(), m.in_mount.end());
  std::set<std::string> full_bare;
  for (const auto& b : BareNames(full_refs)) full_bare.insert(b);
  for (size_t n = 0; n <= full.size(); n++) {
    auto refs = ScanMarker(std::string_view(full).substr(0, n), kMounts);
    ExpectWellFormed(refs);
    for (const auto& r : refs) {
      if (r.kind == MarkerReference::kBareName) {
        EXPECT_TRUE(full_bare.count(r.path)) << n << ": " << r.path;
      } else if (!full_in.count(r.path)) {
        // Only a path cut short by the end of the data, found as text.
        auto it = full_in.lower_bound(r.path);
        EXPECT_TRUE(it != full_in.end() && it->starts_with(r.path)) << n << ": " << r.path;
        EXPECT_EQ(r, refs.back());
      }
    }
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(MarkerScan, RandomBytesNeverCrash) {
  std::mt19937_64 rng(123);
  FlinkMarker m = MakeFlinkMarker(12, 256);
  for (int iter = 0; iter < 300; iter++) {
    std::string data;
    switch (iter % 3) {
      case 0:
        data = test::RandomBytes(rng, rng() % 4096);
        break;
      case 1: {  // random printable text sprinkled with mount points and schemes
        static const std::string_view kBits[] = {
            "/mnt/ckpt/", "/mnt/old/", "file:", "file://", "..", "/",
            "%2e",        "localhost", "\"",    "\n",      "=",  std::string_view("\0", 1)};
        while (data.size() < 2000) {
          if (rng() % 4 == 0) {
            data += kBits[rng() % std::size(kBits)];
          } else {
            data.push_back(static_cast<char>(0x20 + rng() % 95));
          }
        }
        break;
      }
      default: {  // a real marker with bytes flipped
        data = m.out.bytes();
        for (int k = 0; k < 20; k++) data[rng() % data.size()] = static_cast<char>(rng());
        break;
      }
    }
    auto refs = ScanMarker(data, kMounts);
    ExpectWellFormed(refs);
    for (const auto& s : FindUtfStrings(data)) {
      ASSERT_LE(s.offset + 2 + s.length, data.size());
    }
    size_t n = 0;
    auto same = RewriteMarkerPrefix(data, "/mnt/ckpt", "/mnt/ckpt", &n);
    ASSERT_TRUE(same.ok());
    EXPECT_EQ(*same, data);
    auto moved = RewriteMarkerPrefix(data, "file:/mnt/ckpt", "file:/backup/chk-7", &n);
    EXPECT_TRUE(moved.ok());
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(MarkerScan, LengthPastTheEndIsIgnored) {
  std::string marker =
      std::string("\0\0\0\3", 4) + Utf("keep") + std::string("\0\x40", 2) + "lost-name";
  auto strings = FindUtfStrings(marker);
  for (const auto& s : strings) EXPECT_NE(s.text(marker), "lost-name");
  EXPECT_EQ(BareNames(ScanMarker(marker, kMounts)), (std::vector<std::string>{"keep"}));
  // A length of 65535 with a few bytes behind it.
  std::string big = std::string("\xff\xff", 2) + "file:/mnt/ckpt/job/a";
  EXPECT_TRUE(FindUtfStrings(big, 20).empty());
}

// ---- FindUtfStrings -------------------------------------------------------------------

TEST(MarkerScan, FindUtfStringsMatchesNaiveScan) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 200; iter++) {
    std::string data(rng() % 600, '\0');
    for (auto& c : data) {
      // Mostly text, some small bytes so that short lengths appear.
      uint64_t r = rng() % 10;
      c = static_cast<char>(r < 7 ? 0x20 + rng() % 0x60 : r < 9 ? rng() % 0x30 : rng() % 256);
    }
    for (size_t min_length : {0, 1, 5, 40}) {
      std::vector<std::pair<size_t, size_t>> got;
      for (const auto& s : FindUtfStrings(data, min_length)) got.emplace_back(s.offset, s.length);
      ASSERT_EQ(got, NaiveUtfStrings(data, min_length)) << iter << " " << min_length;
    }
  }
}

TEST(MarkerScan, BigTextMarker) {
  // 1 MiB of random printable text: about one plausible writeUTF string per byte, none of
  // them a reference. FindUtfStrings, ScanMarker and the rewrite run in linear time.
  std::mt19937_64 rng(99);
  std::string text(1 << 20, ' ');
  for (auto& c : text) c = static_cast<char>(0x20 + rng() % 95);
  auto strings = FindUtfStrings(text);
  EXPECT_GT(strings.size(), text.size() / 2);
  for (const auto& s : strings) {
    ASSERT_LE(s.offset + 2 + s.length, text.size());
    ASSERT_GE(s.length, 0x2020u);  // both length bytes are printable
  }
  EXPECT_TRUE(InMount(ScanMarker(text, kMounts)).empty());
  size_t n = 0;
  auto r = RewriteMarkerPrefix(text, "/mnt/ckpt/", "/backup/", &n);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(*r, text);
}

TEST(MarkerScan, MegabyteOfMountPointsStaysBounded) {
  // One endless token made of mount points, and a megabyte of short ones.
  std::string one;
  while (one.size() < (1 << 20)) one += "file:/mnt/ckpt/";
  EXPECT_TRUE(ScanMarker(one, kMounts).empty());  // far longer than any path
  std::string many;
  for (int i = 0; many.size() < (1 << 20); i++)
    many += "file:/mnt/ckpt/" + std::to_string(i % 1000) + " ";
  auto refs = ScanMarker(many, kMounts);
  EXPECT_EQ(refs.size(), 1000u);
  EXPECT_EQ(refs.front().path, "0");
  EXPECT_EQ(refs.back().path, "999");
}

// ---- RewriteMarkerPrefix ----------------------------------------------------------------

// The marker's fields with every writeUTF string rewritten; `count` gets the occurrences.
std::vector<Field> Rewritten(const std::vector<Field>& fields, std::string_view from,
                             std::string_view to, size_t* count) {
  std::vector<Field> out = fields;
  *count = 0;
  for (auto& f : out) {
    if (f.type != Field::kUtf) continue;
    size_t n = 0;
    f.bytes = ReplaceAll(f.bytes, from, to, &n);
    *count += n;
  }
  return out;
}

TEST(MarkerScan, RewriteKeepsTheMarkerParseable) {
  for (uint64_t seed : {21, 22, 23}) {
    for (std::string_view to :
         {"file:/backup/chk-7", "file:/b", "file:/backup/checkpoints/long/chk-7"}) {
      SCOPED_TRACE(std::to_string(seed) + " " + std::string(to));
      FlinkMarker m = MakeFlinkMarker(seed);
      const std::string from = "file:/mnt/ckpt/job";
      size_t want_count = 0;
      auto want = Rewritten(m.out.fields(), from, to, &want_count);
      ASSERT_GT(want_count, 10u);
      size_t count = 0;
      auto r = RewriteMarkerPrefix(m.out.bytes(), from, to, &count);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(count, want_count);
      auto parsed = ReadFields(*r, TypesOf(m.out.fields()));
      ASSERT_TRUE(parsed.has_value());
      EXPECT_EQ(*parsed, want);
      // The rewritten marker scans as the references moved.
      std::vector<std::string> mounts = {"/mnt/ckpt", "/mnt/old"};
      mounts.push_back(std::string(to.substr(5)));
      auto refs = InMount(ScanMarker(*r, mounts));
      EXPECT_EQ(refs.size(), m.in_mount.size());
    }
  }
}

TEST(MarkerScan, RewriteSameLengthChangesOnlyTheMatchedBytes) {
  FlinkMarker m = MakeFlinkMarker(31);
  const std::string& in = m.out.bytes();
  const std::string from = "file:/mnt/ckpt/job", to = "file:/backup/chk-7";
  ASSERT_EQ(from.size(), to.size());
  size_t count = 0;
  auto r = RewriteMarkerPrefix(in, from, to, &count);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), in.size());
  size_t want = 0;
  EXPECT_EQ(*r, ReplaceAll(in, from, to, &want));
  EXPECT_EQ(count, want);
  // Spelled out: every byte outside the occurrences is as it was.
  std::vector<bool> inside(in.size(), false);
  for (size_t at = in.find(from); at != std::string::npos; at = in.find(from, at + 1)) {
    std::fill(inside.begin() + at, inside.begin() + at + from.size(), true);
  }
  for (size_t i = 0; i < in.size(); i++) {
    if (!inside[i]) {
      ASSERT_EQ((*r)[i], in[i]) << i;
    }
  }
}

TEST(MarkerScan, RewriteTextOutsideStringsAndLengthsInside) {
  std::string marker = std::string("\0\0\0\1", 4) + Utf("file:/mnt/ckpt/job/a") +
                       std::string("\0\0", 2) + "text file:/mnt/ckpt/job/b\n" + Utf("no match") +
                       Utf("x file:/mnt/ckpt/job/c file:/mnt/ckpt/job/d");
  size_t count = 0;
  auto r = RewriteMarkerPrefix(marker, "file:/mnt/ckpt/job", "file:/b", &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 4u);
  EXPECT_EQ(*r, std::string("\0\0\0\1", 4) + Utf("file:/b/a") + std::string("\0\0", 2) +
                    "text file:/b/b\n" + Utf("no match") + Utf("x file:/b/c file:/b/d"));
}

TEST(MarkerScan, RewriteTextMarkerIsPlainReplacement) {
  // Long text lines hold byte pairs that look like writeUTF lengths; rewriting must not
  // treat them as such (that would overwrite two characters of the text).
  std::string json =
      "{\"pad\": \"" + std::string(40000, 'a') +
      "\", \"p\": \"file:/mnt/ckpt/job/shared/a\", \"q\": [\"file:/mnt/ckpt/job/b\"]}";
  // "\nb" reads as a length of 0x0a62 = 2658 bytes of text holding the first reference.
  std::string lines = "first line\n" + std::string(2600, 'b') + " file:/mnt/ckpt/job/x " +
                      std::string(100, 'z') + "\r\n" + std::string(9000, 'c') +
                      "\tfile:/mnt/ckpt/job/y\n";
  for (const std::string& text : {json, lines}) {
    size_t count = 0, want = 0;
    auto r =
        RewriteMarkerPrefix(text, "file:/mnt/ckpt/job", "file:/backup/checkpoints/chk-7", &count);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, ReplaceAll(text, "file:/mnt/ckpt/job", "file:/backup/checkpoints/chk-7", &want));
    EXPECT_EQ(count, want);
    EXPECT_EQ(count, 2u);
  }
}

TEST(MarkerScan, RewriteLeftmostStringWinsOnOverlap) {
  // 00 1d "file:/mnt/ckpt/job/shared/abc" is a string; so is the one whose length is the
  // bytes 1d 66 ("\x1d" "f"), 7526 bytes from offset 1, reaching into the text behind.
  // Both hold the prefix, neither starts with it: the leftmost wins.
  std::string marker = Utf("file:/mnt/ckpt/job/shared/abc") + std::string(8000, 'x');
  auto strings = FindUtfStrings(marker);
  ASSERT_GE(strings.size(), 2u);
  EXPECT_EQ(strings[0].offset, 0u);
  EXPECT_EQ(strings[1].offset, 1u);
  EXPECT_EQ(strings[1].length, 0x1d66u);
  size_t count = 0;
  auto r = RewriteMarkerPrefix(marker, "/mnt/ckpt/job", "/backup/chk-77", &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(*r, Utf("file:/backup/chk-77/shared/abc") + std::string(8000, 'x'));
}

TEST(MarkerScan, RewriteLongStringAfterSmallInt) {
  // A string of 256+ bytes after writeInt(1): the int's last byte and the length's high
  // byte (01 01) look like the length of a 257-byte string holding the prefix too. The
  // string that starts with the prefix is the one rewritten.
  for (size_t len : {256u, 300u, 1000u, 8300u, 40000u}) {
    SCOPED_TRACE(len);
    DataOutput o;
    o.WriteInt(0x4960672d);
    o.WriteInt(3);
    o.WriteInt(1);  // say, a count of files
    std::string path = "file:/mnt/ckpt/job/shared/";
    path += std::string(len - path.size(), 'd');
    o.WriteUTF(path);
    o.WriteLong(77);
    o.WriteInt(1);
    o.WriteUTF(path.substr(0, 200));
    o.WriteLong(78);
    EXPECT_EQ(InMount(ScanMarker(o.bytes(), kMount)).size(), len < 4096 ? 2u : 1u);
    size_t count = 0, want_count = 0;
    auto r = RewriteMarkerPrefix(o.bytes(), "file:/mnt/ckpt/job", "file:/b", &count);
    ASSERT_TRUE(r.ok());
    auto want = Rewritten(o.fields(), "file:/mnt/ckpt/job", "file:/b", &want_count);
    EXPECT_EQ(count, want_count);
    auto parsed = ReadFields(*r, TypesOf(o.fields()));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, want);
  }
}

TEST(MarkerScan, RewriteOldEqualsNewIsIdentity) {
  FlinkMarker m = MakeFlinkMarker(41);
  size_t count = 0;
  auto r = RewriteMarkerPrefix(m.out.bytes(), "file:/mnt/ckpt/", "file:/mnt/ckpt/", &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, m.out.bytes());
  EXPECT_GT(count, 0u);
  r = RewriteMarkerPrefix(m.out.bytes(), "no such prefix", "other", &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, m.out.bytes());
  EXPECT_EQ(count, 0u);
}

TEST(MarkerScan, RewriteBeyond65535BytesFails) {
  DataOutput o;
  o.WriteInt(0x4960672d);
  o.WriteInt(3);
  std::string s = "file:/mnt/ckpt/job/" + std::string(65530 - 19, 'a');
  ASSERT_EQ(s.size(), 65530u);
  o.WriteUTF(s);
  o.WriteLong(1);
  size_t count = 0;
  // +5 bytes: exactly 65535, still fits.
  auto fits =
      RewriteMarkerPrefix(o.bytes(), "file:/mnt/ckpt/job/", "file:/mnt/ckpt/job/1234/", &count);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_EQ(count, 1u);
  auto parsed = ReadFields(*fits, TypesOf(o.fields()));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)[2].bytes.size(), 65535u);
  // +6 bytes: too long for writeUTF.
  auto r =
      RewriteMarkerPrefix(o.bytes(), "file:/mnt/ckpt/job/", "file:/mnt/ckpt/job/12345/", &count);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(MarkerScan, RewriteEmptyPrefixFails) {
  size_t count = 7;
  auto r = RewriteMarkerPrefix(Utf("file:/mnt/ckpt/a"), "", "file:/b", &count);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(count, 0u);
  r = RewriteMarkerPrefix("", "", "", &count);
  EXPECT_FALSE(r.ok());
}

// ---- Relocating references ----------------------------------------------------------

// Maps every in-mount reference to `root` + "/" + its path, keeping a file: scheme.
RelocateFn ToRoot(const std::string& root) {
  return [root](const MarkerReference& r, std::string_view text) -> std::optional<std::string> {
    return (text.starts_with("file:") ? "file:" : "") + root + "/" + r.path;
  };
}

TEST(MarkerScan, RelocateKeepsTheMarkerParseableAndFixesLengths) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    FlinkMarker m = MakeFlinkMarker(seed);
    for (const std::string root : {"/b", "/backup/a/much/longer/place/for/the/copy/chk-7"}) {
      size_t count = 0;
      auto r = RelocateMarkerReferences(m.out.bytes(), kMounts, ToRoot(root), &count);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      // What a DataInput reader must get: every in-mount string relocated, the rest as is.
      std::vector<Field> want = m.out.fields();
      size_t want_count = 0;
      for (auto& f : want) {
        if (f.type != Field::kUtf) continue;
        if (!f.bytes.starts_with("/") && !f.bytes.starts_with("file:")) continue;
        std::string rel = ResolveInMount(f.bytes, kMounts);
        if (rel.empty()) continue;
        f.bytes = (f.bytes.starts_with("file:") ? "file:" : "") + root + "/" + rel;
        want_count++;
      }
      EXPECT_EQ(count, want_count);
      auto parsed = ReadFields(*r, TypesOf(m.out.fields()));
      ASSERT_TRUE(parsed.has_value());
      EXPECT_EQ(*parsed, want);
      // Read again with the new root as the mount point: the same files, nothing left
      // in the old mount.
      std::vector<std::string> again = InMount(ScanMarker(*r, {root}));
      EXPECT_EQ(again, m.in_mount);
      EXPECT_TRUE(InMount(ScanMarker(*r, kMounts)).empty());
      EXPECT_EQ(BareNames(ScanMarker(*r, {})), BareNames(ScanMarker(m.out.bytes(), {})));
    }
  }
}

TEST(MarkerScan, RelocateRewritesOnlyWhatTheFunctionMaps) {
  DataOutput o;
  o.WriteInt(0x4960672d);
  o.WriteUTF("file:/mnt/ckpt/job/shared/kept-file");
  o.WriteLong(1);
  o.WriteUTF("file:/mnt/ckpt/job/chk-4/inline-name");  // names no file: left
  o.WriteBlob("small state");
  o.WriteUTF("bare-name");
  o.WriteLong(2);
  size_t count = 0;
  RelocateFn only_files = [](const MarkerReference& r,
                             std::string_view) -> std::optional<std::string> {
    if (r.path != "job/shared/kept-file") return std::nullopt;
    return "file:/dest/shared/kept-file";
  };
  auto r = RelocateMarkerReferences(o.bytes(), kMount, only_files, &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 1u);
  DataOutput want;
  want.WriteInt(0x4960672d);
  want.WriteUTF("file:/dest/shared/kept-file");
  want.WriteLong(1);
  want.WriteUTF("file:/mnt/ckpt/job/chk-4/inline-name");
  want.WriteBlob("small state");
  want.WriteUTF("bare-name");
  want.WriteLong(2);
  EXPECT_EQ(*r, want.bytes());
  // The function gets the text as written; giving it back changes nothing.
  std::vector<std::string> seen;
  RelocateFn same = [&](const MarkerReference&, std::string_view text) {
    seen.emplace_back(text);
    return std::optional<std::string>(std::string(text));
  };
  r = RelocateMarkerReferences(o.bytes(), kMount, same, &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, o.bytes());
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(seen, (std::vector<std::string>{"file:/mnt/ckpt/job/shared/kept-file",
                                            "file:/mnt/ckpt/job/chk-4/inline-name"}));
}

TEST(MarkerScan, RelocateTextRuns) {
  // JSON and properties: plain replacement of each path, nothing else changes.
  std::string json = R"({"shared":["file:/mnt/ckpt/job/shared/a","/mnt/ckpt/job/chk-3/b"],)"
                     R"("other":"hdfs://nn/mnt/ckpt/job/c"})";
  size_t count = 0;
  auto r = RelocateMarkerReferences(json, kMount, ToRoot("/backup/chk-3"), &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(*r, R"({"shared":["file:/backup/chk-3/job/shared/a","/backup/chk-3/job/chk-3/b"],)"
                R"("other":"hdfs://nn/mnt/ckpt/job/c"})");
  std::string props = "state.dir=/mnt/ckpt/job/x\nother=/mnt/ckpt/job/y z\n";
  r = RelocateMarkerReferences(props, kMount, ToRoot("/b"), &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(*r, "state.dir=/b/job/x\nother=/b/job/y z\n");
  // A path inside a writeUTF string that is no reference itself: the string's length is
  // fixed with it, and the fields around it still read.
  DataOutput o;
  o.WriteInt(7);
  o.WriteUTF("dir: /mnt/ckpt/job/x, again /mnt/ckpt/job/y");
  o.WriteLong(8);
  r = RelocateMarkerReferences(o.bytes(), kMount, ToRoot("/a/longer/root"), &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 2u);
  auto parsed = ReadFields(*r, TypesOf(o.fields()));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)[1].bytes, "dir: /a/longer/root/job/x, again /a/longer/root/job/y");
  EXPECT_EQ((*parsed)[2].num, 8);
}

TEST(MarkerScan, RelocateOverlappingCandidatesTakesTheRealString) {
  // writeInt(1), then a 303-byte path: 01 | 01 2f "/mnt/ckpt/...". The int's last byte
  // and the length's high byte (01 01) read as a 257-byte string "//mnt/ckpt/..." (the
  // length's low byte is '/'), which is an in-mount reference too. The longer, real one
  // is rewritten, and the marker still reads.
  std::string path = "/mnt/ckpt/job/shared/";
  path += std::string(0x12f - path.size(), 'd');
  DataOutput o;
  o.WriteInt(0x4960672d);
  o.WriteInt(1);
  o.WriteUTF(path);
  o.WriteLong(99);
  std::vector<MarkerOccurrence> occ = FindMarkerOccurrences(o.bytes(), kMount);
  ASSERT_EQ(occ.size(), 2u);
  EXPECT_EQ(occ[0].length, 257u);
  EXPECT_EQ(occ[1].length, path.size());
  EXPECT_TRUE(occ[0].utf && occ[1].utf);
  size_t count = 0;
  auto r = RelocateMarkerReferences(o.bytes(), kMount, ToRoot("/b"), &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(count, 1u);
  auto parsed = ReadFields(*r, TypesOf(o.fields()));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)[1].num, 1);
  EXPECT_EQ((*parsed)[2].bytes, "/b/" + path.substr(10));
  EXPECT_EQ((*parsed)[3].num, 99);
}

TEST(MarkerScan, RelocateBeyond65535BytesFails) {
  // References are at most a path long, but what they become is the caller's: a new text
  // of 65535 bytes still fits writeUTF, one more does not.
  DataOutput o;
  o.WriteInt(0x4960672d);
  o.WriteUTF("file:/mnt/ckpt/job/shared/a");
  o.WriteLong(1);
  size_t count = 0;
  auto to_size = [](size_t n) -> RelocateFn {
    return [n](const MarkerReference&, std::string_view) {
      return std::optional<std::string>("file:/" + std::string(n - 6, 'z'));
    };
  };
  auto fits = RelocateMarkerReferences(o.bytes(), kMount, to_size(65535), &count);
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_EQ(count, 1u);
  auto parsed = ReadFields(*fits, TypesOf(o.fields()));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ((*parsed)[1].bytes.size(), 65535u);
  EXPECT_EQ((*parsed)[2].num, 1);
  auto r = RelocateMarkerReferences(o.bytes(), kMount, to_size(65536), &count);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(count, 0u);
}

TEST(MarkerScan, OccurrencesAreWhatScanMarkerReports) {
  for (uint64_t seed : {5u, 6u}) {
    FlinkMarker m = MakeFlinkMarker(seed);
    std::vector<MarkerReference> from_occ;
    std::set<std::pair<int, std::string>> seen;
    size_t last = 0;
    for (const auto& o : FindMarkerOccurrences(m.out.bytes(), kMounts)) {
      EXPECT_GE(o.pos, last);
      last = o.pos;
      ASSERT_LE(o.pos + o.length, m.out.bytes().size());
      if (seen.insert({o.ref.kind, o.ref.path}).second) from_occ.push_back(o.ref);
    }
    EXPECT_EQ(from_occ, ScanMarker(m.out.bytes(), kMounts));
  }
}

}  // namespace
}  // namespace snapfs
