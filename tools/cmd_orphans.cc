// snapfs orphans PATH [--older-than DURATION] [--delete] [--json]: regular files under
// PATH that no snapshot references, outside snapshot folders, unmodified for DURATION
// (default 1h, so files of checkpoints still being written are left alone); --delete
// unlinks them. Each file is checked again just before its unlink: still the same file,
// still unmodified for DURATION, still referenced by no snapshot.
#include <sys/stat.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs/filesystem.h"
#include "core/fs/inode.h"
#include "tools/cli_util.h"
#include "tools/snap_requests.h"

namespace snapfs::cli {

namespace {
int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<int64_t> OlderThan(const nlohmann::json& req) {
  auto it = req.find("older_than_ns");
  if (it == req.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return Status::InvalidArgument("\"older_than_ns\" must be a whole number >= 0");
  }
  return it->get<int64_t>();
}
}  // namespace

Result<nlohmann::json> OrphansRequest(Filesystem& fs, const nlohmann::json& req) {
  ASSIGN_OR_RETURN(std::string rel, ArgString(req, "path"));
  std::string label = ArgLabel(req, rel);
  ASSIGN_OR_RETURN(int64_t older, OlderThan(req));
  ASSIGN_OR_RETURN(uint64_t ino, ResolveRel(fs, rel, label));
  ASSIGN_OR_RETURN(Attr a, fs.GetAttr(ino));
  if (!S_ISDIR(a.mode)) return Status::NotDirectory(label);
  int64_t now = WallNowNs();
  ASSIGN_OR_RETURN(auto orphans, fs.FindOrphans(ino, older));
  nlohmann::json list = nlohmann::json::array();
  uint64_t bytes = 0;
  for (const auto& o : orphans) {
    bytes += o.size;
    list.push_back({{"path", o.path},
                    {"ino", o.ino},
                    {"parent", o.parent},
                    {"name", o.name},
                    {"size", o.size},
                    {"mtime_ns", o.mtime_ns}});
  }
  return nlohmann::json{{"path", rel},     {"older_than_ns", older},  {"now_ns", now},
                        {"orphans", list}, {"count", orphans.size()}, {"bytes", bytes}};
}

Result<nlohmann::json> UnlinkRequest(Filesystem& fs, const nlohmann::json& req) {
  auto files = req.find("files");
  if (files == req.end() || !files->is_array()) {
    return Status::InvalidArgument("missing argument \"files\" (a list)");
  }
  ASSIGN_OR_RETURN(int64_t older, OlderThan(req));
  int64_t cutoff = WallNowNs() - older;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& f : *files) {
    std::string path = f.value("path", std::string());
    uint64_t parent = f.at("parent").get<uint64_t>();
    uint64_t ino = f.at("ino").get<uint64_t>();
    std::string name = f.at("name").get<std::string>();
    nlohmann::json r = {{"path", path}, {"deleted", false}};
    auto skip = [&](const std::string& why) {
      r["reason"] = why;
      results.push_back(r);
    };
    if (parent >= kViewInoBase || ino >= kViewInoBase) {
      skip("inside the snapshot views");
      continue;
    }
    auto a = fs.Lookup(parent, name);
    if (!a.ok()) {
      skip(a.status().Is(Code::kNotFound) ? "gone already" : a.status().ToString());
      continue;
    }
    r["size"] = a->size;
    if (a->ino != ino) {
      skip("replaced by another file since");
      continue;
    }
    if (!S_ISREG(a->mode)) {
      skip("not a regular file");
      continue;
    }
    if (a->mtime_ns > cutoff) {
      skip("modified since");
      continue;
    }
    if (fs.GetSnapshot(parent).ok()) {
      skip("its folder is a snapshot now");
      continue;
    }
    auto pins = fs.WhyPinned(ino);
    if (!pins.ok()) {
      skip(pins.status().ToString());
      continue;
    }
    if (!pins->empty()) {
      skip("referenced by a snapshot now (" + (*pins)[0].snapshot.path + ")");
      continue;
    }
    Status s = fs.Unlink(parent, name);
    if (s.ok()) fs.InvalidateEntry(parent, name);  // the kernel did not see this unlink
    if (!s.ok()) {
      r["error"] = s.ToString();
      skip("unlink failed: " + s.ToString());
      continue;
    }
    r["deleted"] = true;
    results.push_back(r);
  }
  return nlohmann::json{{"results", std::move(results)}};
}

int CmdOrphans(const Args& args) {
  po::options_description opts("options");
  std::string path, older_text = "1h";
  opts.add_options()("path", po::value(&path)->required(),
                     "a folder inside a snapfs mount, or STORE[/folder] of an unmounted store")(
      "older-than", po::value(&older_text)->default_value(older_text),
      "only files unmodified for this long: 30s, 15m, 1h, 2d, or 0")(
      "delete", po::bool_switch(), "unlink the orphans found")("offline", po::bool_switch(), kOfflineHelp)(
      "json", po::bool_switch(),
                                                               "print JSON (raw numbers)");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (auto rc = Parse("orphans", "PATH [--older-than DURATION] [--delete] [--json]", args, opts,
                      pos, &vm)) {
    return *rc;
  }
  auto older = ParseDuration(older_text);
  if (!older.ok()) {
    return UsageError("orphans", "--older-than: " + older.status().message());
  }
  bool del = vm["delete"].as<bool>();
  bool json = vm["json"].as<bool>();

  auto pt = ResolvePathArg(path);
  if (!pt.ok()) return Fail("orphans", pt.status());
  FsClient client(pt->target);
  auto answer =
      client.Ask("snap-orphans", {{"path", pt->rel}, {"label", path}, {"older_than_ns", *older}});
  if (!answer.ok()) return Fail("orphans", answer.status());
  nlohmann::json j = std::move(answer).value();
  std::string root = pt->mountpoint.empty() ? pt->target.store : pt->mountpoint;
  j["root"] = root;
  const auto& orphans = j["orphans"];
  int64_t now = j["now_ns"].get<int64_t>();

  if (!json) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& o : orphans) {
      rows.push_back({HumanBytes(o["size"].get<uint64_t>()),
                      HumanAge(now - o["mtime_ns"].get<int64_t>()), o["path"].get<std::string>()});
    }
    if (!rows.empty()) PrintTable({"size", "age", "path"}, rows, {true, true, false});
    printf("%llu orphan%s, %s (%llu bytes), unmodified for %s or more; paths relative to %s\n",
           static_cast<unsigned long long>(j["count"].get<uint64_t>()),
           j["count"].get<uint64_t>() == 1 ? "" : "s",
           HumanBytes(j["bytes"].get<uint64_t>()).c_str(),
           static_cast<unsigned long long>(j["bytes"].get<uint64_t>()), older_text.c_str(),
           root.c_str());
  }
  if (!del) {
    if (json) PrintJson(j);
    return kExitOk;
  }

  // Delete in batches: a bounded request each, and progress between them.
  Progress progress;
  nlohmann::json results = nlohmann::json::array();
  uint64_t deleted = 0, deleted_bytes = 0, failed = 0;
  size_t done = 0;
  while (done < orphans.size()) {
    nlohmann::json batch = nlohmann::json::array();
    size_t request_bytes = 0;
    while (done < orphans.size() && batch.size() < 512 && request_bytes < (256 << 10)) {
      const auto& o = orphans[done++];
      batch.push_back(
          {{"path", o["path"]}, {"ino", o["ino"]}, {"parent", o["parent"]}, {"name", o["name"]}});
      request_bytes += o["path"].get<std::string>().size() + 64;
    }
    auto r = client.Ask("snap-unlink", {{"files", batch}, {"older_than_ns", *older}});
    if (!r.ok()) {
      progress.Done();
      return Fail("orphans",
                  r.status().WithContext("after deleting " + std::to_string(deleted) + " files"));
    }
    for (auto& x : (*r)["results"]) {
      if (x["deleted"].get<bool>()) {
        deleted++;
        deleted_bytes += x.value("size", uint64_t{0});
      } else if (x.contains("error")) {
        failed++;
      }
      if (!json) {
        if (x["deleted"].get<bool>()) {
          progress.Done();
          printf("deleted %s\n", x["path"].get<std::string>().c_str());
        } else {
          progress.Done();
          printf("kept    %s: %s\n", x["path"].get<std::string>().c_str(),
                 x["reason"].get<std::string>().c_str());
        }
      }
      results.push_back(std::move(x));
    }
    progress.Show("deleting orphans: " + std::to_string(done) + "/" +
                  std::to_string(orphans.size()));
  }
  progress.Done();
  if (json) {
    j["deleted"] = {{"results", results}, {"count", deleted}, {"bytes", deleted_bytes}};
    PrintJson(j);
  } else {
    printf("deleted %llu orphan%s, %s; %s\n", static_cast<unsigned long long>(deleted),
           deleted == 1 ? "" : "s", HumanBytes(deleted_bytes).c_str(),
           deleted ? ("the space comes back when GC runs (or now: snapfs gc " + root + ")").c_str()
                   : "nothing to reclaim");
  }
  return failed ? kExitFailure : kExitOk;
}

}  // namespace snapfs::cli
