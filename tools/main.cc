// snapfs: the command-line entry point. Dispatches to one function per verb.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/cli_util.h"
#include "tools/commands.h"

namespace {

struct Verb {
  const char* name;
  int (*fn)(const snapfs::cli::Args&);
  const char* summary;
};

const Verb kVerbs[] = {
    {"init", snapfs::cli::CmdInit, "create a store"},
    {"mount", snapfs::cli::CmdMount, "mount a store (daemonises; -f stays in the foreground)"},
    {"umount", snapfs::cli::CmdUmount, "unmount, and wait until the daemon has flushed"},
    {"status", snapfs::cli::CmdStatus, "mounted or not, daemon health, last GC, metrics address"},
    {"ls", snapfs::cli::CmdLs,
     "snapshots with their bytes (--hidden: deleted files kept for them)"},
    {"du", snapfs::cli::CmdDu, "what deleting each snapshot, or all of them, would free"},
    {"rm", snapfs::cli::CmdRm, "drop snapshots and every file only they need"},
    {"prune", snapfs::cli::CmdPrune, "keep the newest N (or recent) snapshots of jobs, drop the rest"},
    {"why", snapfs::cli::CmdWhy, "the snapshots that keep a file"},
    {"orphans", snapfs::cli::CmdOrphans, "files no snapshot references (--delete removes them)"},
    {"export", snapfs::cli::CmdExport, "write a snapshot's self-contained copy anywhere"},
    {"stats", snapfs::cli::CmdStats, "logical and stored bytes, dedup ratio, chunks, packs"},
    {"fsck", snapfs::cli::CmdFsck, "recompute refcounts, check every chunk, snapshot and pin"},
    {"gc", snapfs::cli::CmdGc, "reclaim the space of unreferenced chunks now"},
    {"version", snapfs::cli::CmdVersion, "program, store format, libfuse and RocksDB versions"},
};

void Usage(FILE* out) {
  fprintf(out, "usage: snapfs <command> [options]\n\ncommands:\n");
  for (const auto& v : kVerbs) fprintf(out, "  %-8s %s\n", v.name, v.summary);
  fprintf(out, "\n'snapfs <command> --help' describes a command; 'snapfs --version' the build.\n");
  fprintf(out, "\n%s", snapfs::cli::kExitCodesHelp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(stderr);
    return snapfs::cli::kExitUsage;
  }
  std::string verb = argv[1];
  if (verb == "--version" || verb == "-V") return snapfs::cli::CmdVersion({});
  if (verb == "-h" || verb == "--help" || verb == "help") {
    Usage(stdout);
    return 0;
  }
  // The arguments are copied, then a password in them (a postgresql:// location) is
  // blanked out of argv: a daemon (a fork of this process) shows argv for its whole life.
  const snapfs::cli::Args all(argv + 1, argv + argc);
  snapfs::cli::HideSecretsInArgv(argc, argv);
  for (const auto& v : kVerbs) {
    if (verb == v.name) return v.fn(snapfs::cli::Args(all.begin() + 1, all.end()));
  }
  // mount(8) helper convention (mount -t fuse.snapfs STORE DIR -o opts, fstab):
  // mount.fuse3 runs "snapfs STORE DIR -o opts".
  if (argc >= 3 && all[0][0] != '-' && verb.find('/') != std::string::npos) {
    return snapfs::cli::CmdMount(all);
  }
  fprintf(stderr, "snapfs: unknown command '%s'\n", snapfs::cli::HideSecrets(verb).c_str());
  Usage(stderr);
  return snapfs::cli::kExitUsage;
}
