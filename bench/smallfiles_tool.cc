// snapfs_smallfiles: Flink's small-file pattern, timed in-process so that no interpreter
// overhead skews the comparison between a native folder and a mount.
//   snapfs_smallfiles create DIR COUNT SIZE   open(O_CREAT|O_TRUNC|O_WRONLY), write, fsync, close
//   snapfs_smallfiles delete DIR COUNT        unlink each file
//   snapfs_smallfiles touch DIR COUNT         open(O_CREAT|O_WRONLY), close: empty files, no
//                                             fsync (fills a folder for the `ls -l` benchmark)
//   snapfs_smallfiles stat DIR COUNT          lstat each file (names as create/touch make them)
//   snapfs_smallfiles list DIR COUNT          read the whole folder (opendir, readdir to the
//                                             end) COUNT times; prints entries per second
//   snapfs_smallfiles marker DIR COUNT        write DIR/_metadata naming the COUNT files
//                                             (Flink's writeUTF bare names), making DIR a snapshot
// Prints "<ops per second>" on stdout.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s create DIR COUNT SIZE | delete|touch|stat|list|marker DIR COUNT\n", argv[0]);
    return 2;
  }
  std::string mode = argv[1], dir = argv[2];
  long count = atol(argv[3]);
  size_t size = argc > 4 ? static_cast<size_t>(atol(argv[4])) : 16384;
  std::vector<char> buf(size);
  uint64_t x = 88172645463325252ull;
  auto t0 = std::chrono::steady_clock::now();
  if (mode == "list") {
    long entries = 0;
    for (long i = 0; i < count; i++) {
      DIR* d = opendir(dir.c_str());
      if (!d) {
        perror(dir.c_str());
        return 1;
      }
      while (readdir(d)) entries++;
      closedir(d);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%.1f\n", entries / s);
    return 0;
  }
  if (mode == "marker") {
    std::string md = "\x49\x60\x67\x2d";
    md += std::string("\0\0\0\3", 4);
    for (long i = 0; i < count; i++) {
      char name[64];
      int n = snprintf(name, sizeof name, "f-%08ld", i);
      md.push_back(0);
      md.push_back(static_cast<char>(n));
      md.append(name, static_cast<size_t>(n));
    }
    std::string tmp = dir + "/._metadata.inprogress", final_path = dir + "/_metadata";
    int fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, md.data(), md.size()) != static_cast<ssize_t>(md.size()) ||
        fsync(fd) != 0 || close(fd) != 0 || rename(tmp.c_str(), final_path.c_str()) != 0) {
      perror(tmp.c_str());
      return 1;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%.1f\n", 1 / s);
    return 0;
  }
  for (long i = 0; i < count; i++) {
    char name[64];
    snprintf(name, sizeof name, "/f-%08ld", i);
    std::string path = dir + name;
    if (mode == "create") {
      for (size_t k = 0; k + 8 <= size; k += 8) {  // unique content per file
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __builtin_memcpy(&buf[k], &x, 8);
      }
      int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0 || write(fd, buf.data(), size) != static_cast<ssize_t>(size) || fsync(fd) != 0) {
        perror(path.c_str());
        return 1;
      }
      close(fd);
    } else if (mode == "touch") {
      int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0 || close(fd) != 0) {
        perror(path.c_str());
        return 1;
      }
    } else if (mode == "stat") {
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) {
        perror(path.c_str());
        return 1;
      }
    } else if (mode == "delete") {
      if (unlink(path.c_str()) != 0) {
        perror(path.c_str());
        return 1;
      }
    } else {
      fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("%.1f\n", count / s);
  return 0;
}
