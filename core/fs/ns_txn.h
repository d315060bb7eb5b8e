// NsTxn: one namespace change as one metadata engine transaction (kv::Txn),
// with the inodes it touches kept in memory so that several steps of the change (a
// rename, then the end of the snapshot whose marker it replaced, then the hidden entries
// that end frees) see each other's edits. Shared by the Namespace and the SnapshotEngine,
// which work on one change together; private to core/fs/ and core/snap/.
//
// Reads that decide the change (inodes, entries) go through the transaction: they are
// conflict-checked, so a namespace change that raced another (a thread of this daemon
// holding no common lock, or another daemon on a shared store) fails its Commit with
// Conflict and the public operation runs again from the start (RetryOnConflict).
// Namespace::mu() is held around each attempt (the constructor requires it, so a
// function handed an NsTxn runs under it): it keeps this process's own namespace
// changes from conflicting needlessly, it decides nothing.
//
// Thread-safety: not thread-safe; one thread uses a transaction.
#pragma once

#include <map>
#include <set>
#include <string>

#include "core/fs/namespace.h"
#include "core/meta/meta_store.h"

namespace snapfs {

class NsTxn {
 public:
  explicit NsTxn(Namespace& ns) REQUIRES(ns.mu()) : ns_(ns), kv_(ns.meta().engine().Begin()) {}
  NsTxn(const NsTxn&) = delete;
  NsTxn& operator=(const NsTxn&) = delete;

  // The engine transaction: every write of the change goes here.
  kv::Txn& kv() { return *kv_; }

  // The inode as this transaction sees it; written back at Commit. NotFound if purged.
  Result<Inode*> Get(uint64_t ino) {
    if (purged_.count(ino)) return Status::NotFound("inode " + std::to_string(ino) + " purged");
    auto it = nodes_.find(ino);
    if (it != nodes_.end()) return &it->second.node;
    std::string v;
    Status s = kv_->Get(Cf::kInodes, keys::Ino(ino), &v);
    if (s.Is(Code::kNotFound)) return Status::NotFound();
    RETURN_IF_ERROR(s);
    ASSIGN_OR_RETURN(auto n, Inode::Decode(ino, v));
    return &nodes_.emplace(ino, Node{std::move(n), std::move(v)}).first->second.node;
  }
  // A copy of the inode as this transaction sees it.
  Result<Inode> Load(uint64_t ino) {
    ASSIGN_OR_RETURN(Inode * n, Get(ino));
    return *n;
  }
  // The entry (parent, name), conflict-checked. NotFound if absent.
  Status Lookup(uint64_t parent, std::string_view name, Dentry* e) {
    std::string v;
    RETURN_IF_ERROR(kv_->Get(Cf::kDentries, keys::Dentry(parent, name), &v));
    return Namespace::DecodeEntry(v, e);
  }
  // Takes the caller's copy as the current state of the inode.
  void Put(const Inode& n) {
    nodes_[n.ino] = Node{n, std::string()};
    purged_.erase(n.ino);
  }
  void Purged(uint64_t ino) {
    nodes_.erase(ino);
    purged_.insert(ino);
  }
  bool IsPurged(uint64_t ino) const { return purged_.count(ino) > 0; }

  // What the transaction changed, kept for the code that decides on it (the iterators
  // below see the transaction's writes too; these sets say it without a scan).
  std::set<std::string> gone_dentries;                // dentry keys deleted
  std::set<std::pair<uint64_t, uint64_t>> gone_pins;  // (ino, snapshot folder)
  std::set<std::pair<uint64_t, uint64_t>> new_pins;   // (ino, snapshot folder)
  // Inodes SnapshotEngine::IsPinned found no pin of (an unlink asks twice: before it
  // removes the name and when the last link goes). A pin is only ever added for an
  // inode in new_pins, which IsPinned checks first, so the answer holds.
  std::set<uint64_t> unpinned;
  std::set<std::string> gone_hidden;                  // hidden keys deleted
  std::set<uint64_t> collapse;                        // folders that may now hold nothing
  std::set<uint64_t> ended;                           // snapshots ended
  // Snapshots being committed: their pins are resolved (and in new_pins) before any old
  // snapshot lets go of its own; FinishSnapshots writes them.
  struct Prepared {
    uint64_t marker = 0;
    uint64_t content_hash = 0;
    std::string marker_name;
    std::map<uint64_t, std::pair<std::string, std::string>> pins;  // ino -> (view, path)
  };
  std::map<uint64_t, Prepared> prepared;
  bool snapshots_changed = false;
  // A snapshot is committed by this transaction: the commit must be durable when it
  // returns (Flink records the checkpoint as complete in its HA store once the rename of
  // _metadata returns, and restores from it after a power cut).
  bool commits_snapshot = false;
  std::vector<std::pair<uint64_t, std::string>> touched;  // entries removed or hidden

  // One iterator per key space for the whole transaction: creating one costs more than
  // a seek, and a removal of 10,000 files seeks ~6 times per file. They see the
  // transaction's own writes as of each Seek. Never write the key an iterator is on
  // while using it (collect first, then write).
  kv::Iterator* It(Cf c) {
    auto& slot = its_[static_cast<int>(c)];
    if (!slot) slot = kv_->NewIterator(c);
    return slot.get();
  }

  // Applies the change, or nothing: Conflict when a key it read or wrote changed since
  // it began (the caller runs the whole operation again).
  Status Commit(bool sync = false) {
    // Inodes only read are not written back: a write would make every other writer of
    // them conflict (the read alone already guards the decision made on them).
    for (auto& [ino, n] : nodes_) {
      std::string v = n.node.Encode();
      if (v != n.loaded) kv_->Put(Cf::kInodes, keys::Ino(ino), v);
    }
    if (commits_snapshot) {
      // Pack bytes first (the marker's and any file it pins that nobody fsync'd), then
      // the log with this transaction and everything before it. Usually the writers'
      // fsyncs have synced the pack already and this costs one log sync.
      RETURN_IF_ERROR(ns_.store().chunks().SyncAll().WithContext("make the snapshot durable"));
      sync = true;
    }
    for (auto& s : its_) s.reset();  // iterators must not outlive the transaction
    Status s = kv_->Commit(sync);
    if (s.ok() && ns_.attr_cache().enabled()) {
      // Read (conflict-checked) or written: each is current as of this commit.
      for (auto& [ino, n] : nodes_) ns_.attr_cache().Committed(n.node);
      for (uint64_t ino : purged_) ns_.attr_cache().Erase(ino);
    }
    if (s.ok()) {
      for (uint64_t ino : purged_) ns_.NotePurged(ino);
    }
    if (s.ok() && sync) ns_.meta().CountLogSync();
    if (s.ok() && snapshots_changed) ns_.SnapshotsChanged();
    return s;
  }

 private:
  Namespace& ns_;
  std::unique_ptr<kv::Txn> kv_;
  struct Node {
    Inode node;
    std::string loaded;  // its encoding as read ("" if put by the transaction)
  };
  std::map<uint64_t, Node> nodes_;
  std::set<uint64_t> purged_;
  std::unique_ptr<kv::Iterator> its_[static_cast<int>(Cf::kCount)];
};

}  // namespace snapfs
