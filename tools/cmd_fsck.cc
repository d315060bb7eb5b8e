// snapfs fsck STORE|MOUNTPOINT [--verify [--subset SPEC]]: recompute and compare; also
// check snapshots and their pins against the markers. Every damaged chunk is named with
// the files (their paths, hidden ones marked) and the snapshots that hold it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "core/chunks/gc.h"
#include "core/fs/filesystem.h"
#include "core/fsck.h"
#include "core/sessions.h"
#include "core/store.h"
#include "tools/cli_util.h"

namespace snapfs::cli {

namespace {

// Which part of the chunks --verify re-hashes.
struct Subset {
  double fraction = 1.0;
  uint64_t bytes = 0;  // > 0: about this many bytes instead of a fraction
};

// "10%", "0.1", "0", "1" (fractions), "500M", "1G" (bytes: a unit is required, so that
// "1" means all, not one byte). InvalidArgument on anything else.
Result<Subset> ParseSubset(const std::string& s) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad --subset '" + s + "': " + why +
                                   " (use a percentage like 10%, a fraction like 0.1, or a "
                                   "size like 500M or 1G)");
  };
  if (s.empty()) return bad("empty");
  if (!std::isdigit(static_cast<unsigned char>(s[0])) && s[0] != '.') {
    return bad("it must start with a number");
  }
  Subset out;
  if (std::isalpha(static_cast<unsigned char>(s.back()))) {
    auto n = ParseSize(s);
    if (!n.ok()) return bad(std::string(n.status().message()));
    out.bytes = *n;
    if (out.bytes == 0) out.fraction = 0;
    return out;
  }
  bool percent = s.back() == '%';
  std::string num = percent ? s.substr(0, s.size() - 1) : s;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(num, &pos);
  } catch (...) {
    return bad("not a number");
  }
  if (pos != num.size() || !std::isfinite(v)) return bad("not a number");
  if (percent) {
    if (v < 0 || v > 100) return bad("a percentage must be between 0% and 100%");
    out.fraction = v / 100;
  } else {
    if (v < 0 || v > 1) return bad("a fraction must be between 0 and 1");
    out.fraction = v;
  }
  return out;
}

// The files and snapshots of each damaged chunk, from the namespace.
Result<nlohmann::json> DamagedJson(Filesystem& fs, const std::vector<DamagedChunk>& damaged) {
  std::vector<uint64_t> inos;
  for (const auto& d : damaged) inos.insert(inos.end(), d.inodes.begin(), d.inodes.end());
  ASSIGN_OR_RETURN(auto located, fs.LocateInodes(inos));
  std::unordered_map<uint64_t, const InodeLocation*> where;
  for (const auto& l : located) where[l.ino] = &l;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& d : damaged) {
    nlohmann::json files = nlohmann::json::array();
    std::set<std::string> snaps;
    for (uint64_t ino : d.inodes) {
      const InodeLocation& l = *where.at(ino);
      for (const auto& n : l.names) {
        files.push_back({{"path", n.path}, {"ino", ino}, {"hidden", n.hidden}});
      }
      // A file with no name left is still read through its snapshots' views.
      if (l.names.empty() && !l.view_paths.empty()) {
        files.push_back({{"path", std::string(kViewsName) + "/" + l.view_paths.front()},
                         {"ino", ino},
                         {"hidden", true}});
      }
      snaps.insert(l.snapshots.begin(), l.snapshots.end());
    }
    out.push_back({{"chunk", d.id.Hex()},
                   {"pack", d.pack},
                   {"offset", d.offset},
                   {"length", d.length},
                   {"problem", d.problem},
                   {"description", d.description},
                   {"files", std::move(files)},
                   {"snapshots", snaps}});
  }
  return out;
}

}  // namespace

// Snapshots, pins and hidden entries checked against the markers (Filesystem::
// CheckSnapshots), with the daemon's namespace or, unmounted, one opened here (also used
// by gc).
Result<std::vector<std::string>> SnapshotProblems(Store& store, Filesystem* fs) {
  std::unique_ptr<Filesystem> own;
  if (!fs) {
    ASSIGN_OR_RETURN(own, Filesystem::Open(&store));
    fs = own.get();
  }
  return fs->CheckSnapshots();
}

// How long fsck of a shared store waits for a GC in progress (it holds GC off while it
// runs: see FsckJson).
constexpr std::chrono::minutes kGcLeaseWait{10};

// `fs`: the daemon's namespace, or null for an unmounted store (then one is opened here,
// after the chunk scan, so that the scan sees the store as it was left). `subset`: as
// given to --subset ("" = all).
Result<std::string> FsckJson(Store& store, Filesystem* fs, bool verify, const std::string& subset) {
  // A shared store is checked while other hosts may be writing: the metadata is read in
  // one view (Fsck, CheckSnapshots), and GC on every host, which removes packs that view
  // may still point into, is held off for the run (waiting for a GC in progress to end),
  // whether this runs in the CLI or in a daemon the CLI asked.
  auto gc_off = GcLeaseHold::Take(store, kGcLeaseWait, [](const Status& busy) {
    std::cerr << "snapfs fsck: " << busy.message() << "; waiting for it to end\n";
  });
  if (!gc_off.ok()) return gc_off.status().WithContext("fsck holds off GC while it runs");
  FsckOptions fo;
  fo.verify_data = verify;
  if (verify && !subset.empty()) {
    ASSIGN_OR_RETURN(Subset sub, ParseSubset(subset));
    fo.verify_fraction = sub.fraction;
    fo.verify_bytes = sub.bytes;
  }
  auto r = Fsck(store, fo);
  if (!r.ok()) return r.status();
  std::unique_ptr<Filesystem> own;
  if (!fs) {
    ASSIGN_OR_RETURN(own, Filesystem::Open(&store));
    fs = own.get();
  }
  ASSIGN_OR_RETURN(auto snap_problems, SnapshotProblems(store, fs));
  ASSIGN_OR_RETURN(nlohmann::json damaged, DamagedJson(*fs, r->damaged));
  std::vector<std::string> problems = r->problems;
  problems.insert(problems.end(), snap_problems.begin(), snap_problems.end());
  nlohmann::json j = {{"inodes", r->inodes},
                      {"dentries", r->dentries},
                      {"extents", r->extents},
                      {"chunks", r->chunks},
                      {"packs", r->packs},
                      {"stored_bytes", r->stored_bytes},
                      {"verified", verify},
                      {"subset", subset.empty() ? nlohmann::json(nullptr) : nlohmann::json(subset)},
                      {"verify_fraction", r->verify_fraction},
                      {"verified_chunks", r->verified_chunks},
                      {"verified_bytes", r->verified_bytes},
                      {"problems", problems},
                      {"damaged_chunks", std::move(damaged)},
                      {"snapshot_problems", snap_problems}};
  return DumpJson(j, 2) + "\n";
}

namespace {

std::string Percent(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, f * 100 >= 10 || f == 0 ? "%.0f%%" : "%.1f%%", f * 100);
  return buf;
}

void PrintHuman(const nlohmann::json& j) {
  auto u = [&](const char* k) { return j[k].get<uint64_t>(); };
  std::string verified;
  if (j["verified"].get<bool>()) {
    verified = "; re-hashed " + std::to_string(u("verified_chunks")) + " of " +
               std::to_string(u("chunks")) + " chunks (" + HumanBytes(u("verified_bytes")) +
               " of " + HumanBytes(u("stored_bytes"));
    if (!j["subset"].is_null()) {
      verified += ", a random " + Percent(j["verify_fraction"].get<double>()) +
                  " subset: --subset " + j["subset"].get<std::string>();
    }
    verified += ")";
  }
  printf(
      "checked %llu inodes, %llu entries, %llu extents, %llu chunks in %llu packs%s\n",
      static_cast<unsigned long long>(u("inodes")), static_cast<unsigned long long>(u("dentries")),
      static_cast<unsigned long long>(u("extents")), static_cast<unsigned long long>(u("chunks")),
      static_cast<unsigned long long>(u("packs")), verified.c_str());
  // Damaged chunks get their own block below; the other problems one line each.
  std::set<std::string> chunk_lines;
  for (const auto& d : j["damaged_chunks"]) chunk_lines.insert(d["description"].get<std::string>());
  for (const auto& p : j["problems"]) {
    if (!chunk_lines.count(p.get<std::string>())) {
      printf("PROBLEM: %s\n", p.get<std::string>().c_str());
    }
  }
  std::set<std::string> files, snaps;
  for (const auto& d : j["damaged_chunks"]) {
    std::string at = d["pack"].get<uint64_t>() == 0
                         ? ""
                         : " in pack " + std::to_string(d["pack"].get<uint64_t>()) + " at offset " +
                               std::to_string(d["offset"].get<uint64_t>());
    printf("PROBLEM: damaged chunk %s (%s)%s, %s\n", d["chunk"].get<std::string>().c_str(),
           d["problem"].get<std::string>().c_str(), at.c_str(),
           HumanBytes(d["length"].get<uint64_t>()).c_str());
    if (d["files"].empty()) printf("    no file uses it\n");
    for (const auto& f : d["files"]) {
      std::string p = f["path"].get<std::string>();
      files.insert(p);
      printf("    file      %s%s\n", p.c_str(),
             f["hidden"].get<bool>() ? "  (hidden: kept for snapshots)" : "");
    }
    for (const auto& s : d["snapshots"]) {
      std::string p = s.get<std::string>();
      snaps.insert(p);
      printf("    snapshot  %s\n", p.empty() ? "/" : p.c_str());
    }
  }
  size_t n = j["problems"].size();
  if (n == 0) {
    printf("no problems found\n");
  } else if (j["damaged_chunks"].empty()) {
    printf("%zu problem(s) found\n", n);
  } else {
    printf("%zu problem(s) found; %zu damaged chunk(s) in %zu file(s) and %zu snapshot(s)\n", n,
           j["damaged_chunks"].size(), files.size(), snaps.size());
  }
}

}  // namespace

int CmdFsck(const Args& args) {
  po::options_description opts("options");
  std::string target, subset;
  opts.add_options()("target", po::value(&target)->required(), "a store folder or a mount point")(
      "verify", po::bool_switch(), "also re-hash every chunk's bytes")(
      "subset", po::value(&subset),
      "with --verify, re-hash only a random part of the chunks: 10%, 0.1 or a size like 1G "
      "(implies --verify)")("offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(), "print JSON");
  po::positional_options_description pos;
  pos.add("target", 1);
  po::variables_map vm;
  if (auto rc = Parse("fsck", "STORE|MOUNTPOINT [--verify [--subset 10%|0.1|1G]] [--json]", args,
                      opts, pos, &vm,
                      {"snapfs fsck /mnt/ckpt", "snapfs fsck /mnt/ckpt --verify",
                       "snapfs fsck /mnt/ckpt --verify --subset 10%   # a random tenth"})) {
    return *rc;
  }
  bool verify = vm["verify"].as<bool>() || vm.count("subset");
  if (vm.count("subset")) {
    auto s = ParseSubset(subset);
    if (!s.ok()) {
      return UsageError("fsck", s.status().message());
    }
  }

  Target t = ResolveTarget(target);
  std::string request = verify ? "fsck --verify" : "fsck";
  if (!subset.empty()) request += " " + subset;
  auto answer =
      AskStore(t, request, [&](Store& store) { return FsckJson(store, nullptr, verify, subset); });
  if (!answer.ok()) return Fail("fsck", answer.status());
  nlohmann::json j = std::move(answer).value();
  if (vm["json"].as<bool>()) {
    PrintJson(j);
  } else {
    PrintHuman(j);
  }
  return j["problems"].empty() ? kExitOk : kExitProblems;
}

}  // namespace snapfs::cli
