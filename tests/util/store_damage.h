// Damage to an unmounted local store, the way a failing disk or a careless operator does
// it, for the corruption tests: where a file's chunks lie in the pack files, flipping a
// byte of a chunk, truncating or deleting a pack, and the RocksDB table files of each key
// space (to damage them).
//
//   packs: backends/local_backend.cc, STORE/packs/<id % 256 as 2 hex>/<id as 16 hex>.pack
//   metadata: STORE/meta (RocksDB; one column family per key space, core/meta/spaces.h)
//
// Thread-safety: free functions on paths; the store must not be mounted while its
// metadata is read (ChunksOfFiles, SstFilesByKeySpace take RocksDB's lock).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/pack_names.h"
#include "base/coding.h"
#include "core/fs/filesystem.h"
#include "core/meta/meta_store.h"
#include "core/store.h"
#include "tests/util/mount_fixture.h"

namespace snapfs::mounttest {

struct ChunkAt {
  std::string hex;
  ChunkLocation loc;
};

// The chunks of each file (path relative to the store root; a hidden entry resolves too),
// in file order, read with the engine in this process. Opens the store once.
inline std::map<std::string, std::vector<ChunkAt>> ChunksOfFiles(
    const std::string& store_dir, const std::vector<std::string>& rels) {
  std::map<std::string, std::vector<ChunkAt>> out;
  auto st = Store::Open(store_dir);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return out;
  auto fs = Filesystem::Open(st->get());
  EXPECT_TRUE(fs.ok()) << fs.status().ToString();
  if (!fs.ok()) return out;
  MetaStore& meta = (*st)->meta();
  for (const auto& rel : rels) {
    auto ino = (*fs)->ResolvePath(rel);
    EXPECT_TRUE(ino.ok()) << rel << ": " << ino.status().ToString();
    if (!ino.ok()) continue;
    std::vector<ChunkAt>& chunks = out[rel];
    std::string prefix = keys::Ino(*ino);
    auto it = meta.NewIterator(Cf::kExtents);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      auto e = ExtentValue::Decode(it->value());
      EXPECT_TRUE(e.ok());
      if (!e.ok()) continue;
      std::string v;
      EXPECT_TRUE(meta.Get(Cf::kChunks, keys::Chunk(e->id), &v).ok());
      auto loc = ChunkLocation::Decode(v);
      EXPECT_TRUE(loc.ok());
      if (loc.ok()) chunks.push_back(ChunkAt{e->id.Hex(), *loc});
    }
  }
  fs->reset();
  return out;
}

inline std::vector<ChunkAt> ChunksOf(const std::string& store_dir, const std::string& rel) {
  return ChunksOfFiles(store_dir, {rel})[rel];
}

inline std::string PackPath(const std::string& store_dir, uint64_t pack) {
  return store_dir + "/packs/" + pack_names::Fanout(pack) + "/" + pack_names::FileName(pack);
}

// Flips one byte in the middle of the chunk's bytes in its pack file (works while
// mounted too: packs are only appended to, and this one is not written any more).
inline void FlipChunkByte(const std::string& store_dir, const ChunkAt& c) {
  ASSERT_FALSE(c.loc.is_inline()) << "an inline chunk has no pack bytes to corrupt";
  std::string path = PackPath(store_dir, c.loc.pack);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok()) << path << ": " << ErrnoName(errno);
  off_t at = static_cast<off_t>(c.loc.offset + c.loc.length / 2);
  char b = 0;
  ASSERT_EQ(::pread(fd.get(), &b, 1, at), 1);
  b = static_cast<char>(b ^ 0x5a);
  ASSERT_EQ(::pwrite(fd.get(), &b, 1, at), 1);
}

// Flips `n` bytes at `offset` of any file (XOR 0xff).
inline void FlipFileBytes(const std::string& path, off_t offset, size_t n = 4) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok()) << path << ": " << ErrnoName(errno);
  std::string b(n, '\0');
  ASSERT_EQ(::pread(fd.get(), b.data(), n, offset), static_cast<ssize_t>(n)) << path;
  for (char& c : b) c = static_cast<char>(c ^ 0xff);
  ASSERT_EQ(::pwrite(fd.get(), b.data(), n, offset), static_cast<ssize_t>(n)) << path;
}

// The live RocksDB table files of the store's metadata, by key space (column family)
// name: absolute paths. Opens the metadata read-only.
inline std::map<std::string, std::vector<std::string>> SstFilesByKeySpace(
    const std::string& store_dir) {
  std::map<std::string, std::vector<std::string>> out;
  const std::string dir = store_dir + "/meta";
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, cfs, &handles, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  std::vector<rocksdb::LiveFileMetaData> files;
  db->GetLiveFilesMetaData(&files);
  for (const auto& f : files) out[f.column_family_name].push_back(f.db_path + f.name);
  for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
  delete db;
  return out;
}

// ---- What fsck says about it ----

// `snapfs fsck ARGS... --json`, parsed; the exit code goes to *code.
inline nlohmann::json FsckJson(std::vector<std::string> args, int* code) {
  args.insert(args.begin(), "fsck");
  args.insert(args.begin(), SNAPFS_BINARY);
  args.push_back("--json");
  CmdResult r = RunCmd(args);
  *code = r.code;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << ShellJoin(args) << " printed no JSON:\n" << r.Describe();
  return j.is_object() ? j : nlohmann::json::object();
}

// damaged_chunks by chunk id.
inline std::map<std::string, nlohmann::json> Damaged(const nlohmann::json& j) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& d : j.value("damaged_chunks", nlohmann::json::array())) {
    out[d["chunk"].get<std::string>()] = d;
  }
  return out;
}

// "path" or "path (hidden)" of each file of a damaged chunk, sorted.
inline std::vector<std::string> Files(const nlohmann::json& d) {
  std::vector<std::string> out;
  for (const auto& f : d["files"]) {
    out.push_back(f["path"].get<std::string>() + (f["hidden"].get<bool>() ? " (hidden)" : ""));
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<std::string> Snaps(const nlohmann::json& d) {
  return d["snapshots"].get<std::vector<std::string>>();
}

}  // namespace snapfs::mounttest
