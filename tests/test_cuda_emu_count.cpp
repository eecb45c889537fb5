/* Kernels checked by emulation vs kernels that exist. Runs after the other emulation tests
 * (a ctest fixture cleanup): every __global__ function in kernels/cuda (.cu and .cuh) must have been
 * launched by some emulated test (their launches are logged, one file per test, by the
 * emulator: MF_EMU_LAUNCH_LOG) or be listed in kernels/cuda/emu/skip.txt with a reason.
 *   test_cuda_emu_count <source dir> <launch log dir>
 * Prints the list, the skipped kernels with reasons and the count; fails when a kernel is
 * unchecked. */
#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/emu/emu_scan.h"

static std::string slurp(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

static std::vector<std::string> list_dir(const std::string &dir, const std::string &suffix) {
  std::vector<std::string> v;
  if (DIR *d = opendir(dir.c_str())) {
    while (struct dirent *e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        v.push_back(n);
    }
    closedir(d);
  }
  std::sort(v.begin(), v.end());
  return v;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_cuda_emu_count <source dir> <launch log dir>\n");
    return 2;
  }
  std::string src = argv[1], logs = argv[2], kdir = src + "/kernels/cuda";

  /* skip list: "kernel <name> <reason>" / "file <name.cu> <reason>" */
  std::map<std::string, std::string> skip_kernel, skip_file;
  std::istringstream sl(slurp(kdir + "/emu/skip.txt"));
  for (std::string line; std::getline(sl, line);) {
    std::istringstream ls(line);
    std::string kind, name, reason;
    ls >> kind >> name;
    std::getline(ls, reason);
    reason.erase(0, reason.find_first_not_of(" \t"));
    if (kind == "kernel") skip_kernel[name] = reason;
    else if (kind == "file") skip_file[name] = reason;
  }

  /* launched kernels, and by which test */
  std::map<std::string, std::set<std::string>> launched;
  for (const std::string &f : list_dir(logs, ".txt")) {
    std::istringstream ls(slurp(logs + "/" + f));
    for (std::string k; std::getline(ls, k);)
      if (!k.empty()) launched[k].insert(f.substr(0, f.size() - 4));
  }

  int total = 0, checked = 0, skipped = 0, unchecked = 0;
  std::set<std::string> existing;
  std::vector<std::string> files = list_dir(kdir, ".cu"), hdrs = list_dir(kdir, ".cuh");
  files.insert(files.end(), hdrs.begin(), hdrs.end());
  printf("kernels in kernels/cuda (%zu .cu/.cuh files):\n", files.size());
  for (const std::string &f : files) {
    for (const mf_emu_kernel_def &k : mf_emu_list_kernels(slurp(kdir + "/" + f))) {
      total++;
      existing.insert(k.name);
      std::string where = f + ":" + std::to_string(k.line);
      auto l = launched.find(k.name);
      if (l != launched.end()) {
        checked++;
        std::string by;
        for (const std::string &t : l->second) by += (by.empty() ? "" : ", ") + t;
        printf("  checked    %-36s %-22s by %s\n", k.name.c_str(), where.c_str(), by.c_str());
      } else if (skip_kernel.count(k.name) || skip_file.count(f)) {
        skipped++;
        const std::string &why = skip_kernel.count(k.name) ? skip_kernel[k.name] : skip_file[f];
        printf("  skipped    %-36s %-22s %s\n", k.name.c_str(), where.c_str(), why.c_str());
      } else {
        unchecked++;
        printf("  UNCHECKED  %-36s %-22s no emulation test launched it\n", k.name.c_str(), where.c_str());
      }
    }
  }
  for (auto &s : skip_file) printf("file not built in emulation: %s: %s\n", s.first.c_str(), s.second.c_str());
  for (auto &s : skip_kernel)
    if (!existing.count(s.first)) printf("note: skip.txt names a kernel that does not exist: %s\n", s.first.c_str());
  std::string extra;
  for (auto &l : launched)
    if (!existing.count(l.first)) extra += (extra.empty() ? "" : ", ") + l.first;
  if (!extra.empty()) printf("test-only kernels also launched: %s\n", extra.c_str());
  printf("cuda emulation: %d kernels exist in kernels/cuda, %d checked by emulation, %d skipped, "
         "%d unchecked\n", total, checked, skipped, unchecked);
  if (unchecked)
    fprintf(stderr, "test_cuda_emu_count: %d custom kernel(s) never ran in the emulation suite: add a "
            "test (mf_cuda_emu_test) or list them in kernels/cuda/emu/skip.txt with the reason\n",
            unchecked);
  return unchecked ? 1 : 0;
}
