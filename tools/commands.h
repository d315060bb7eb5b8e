// One function per CLI verb, each in tools/cmd_<verb>.cc. Each returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace snapfs {
class Store;
class Filesystem;
}  // namespace snapfs

namespace snapfs::cli {

using Args = std::vector<std::string>;  // the verb's own arguments (argv after the verb)

int CmdInit(const Args& args);
int CmdStats(const Args& args);
int CmdFsck(const Args& args);
int CmdGc(const Args& args);
int CmdMount(const Args& args);
int CmdUmount(const Args& args);
int CmdLs(const Args& args);
int CmdDu(const Args& args);
int CmdRm(const Args& args);
int CmdPrune(const Args& args);
int CmdWhy(const Args& args);
int CmdOrphans(const Args& args);
int CmdExport(const Args& args);
int CmdStatus(const Args& args);
int CmdVersion(const Args& args);

// The daemon's control-socket dispatcher (tools/control_handlers.cc).
std::string HandleControl(Store& store, Filesystem& fs, const std::string& request);

// Exit codes, the same for every verb (README, `snapfs --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // the operation failed
inline constexpr int kExitUsage = 2;     // bad arguments
inline constexpr int kExitProblems = 3;  // fsck found problems
inline constexpr int kExitBusy = 4;      // the store or mount point is busy (locked, mounted)
inline constexpr int kExitNotFound = 5;  // no such store, snapshot, file or mount

}  // namespace snapfs::cli
