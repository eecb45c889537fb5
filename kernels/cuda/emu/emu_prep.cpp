/* Build-time tool of the CUDA emulation build: copies a .cu/.cuh/.cpp source into the build
 * tree with its __shared__ declarations rewritten for the emulator (see emu_scan.h), behind a
 * #line directive so that compiler messages and debug info name the original file.
 *   mf_emu_prep <in> <out> */
#include <cstdio>
#include <fstream>
#include <sstream>

#include "kernels/cuda/emu/emu_scan.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: mf_emu_prep <in> <out>\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    fprintf(stderr, "mf_emu_prep: cannot read %s\n", argv[1]);
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string out, err;
  if (!mf_emu_rewrite(ss.str(), argv[1], &out, &err)) {
    fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  std::string text = "#line 1 \"" + std::string(argv[1]) + "\"\n" + out;
  std::ifstream old(argv[2], std::ios::binary);
  std::stringstream os;
  if (old) os << old.rdbuf();
  if (old && os.str() == text) return 0; /* unchanged: keep the timestamp */
  std::ofstream o(argv[2], std::ios::binary);
  o << text;
  if (!o) {
    fprintf(stderr, "mf_emu_prep: cannot write %s\n", argv[2]);
    return 1;
  }
  return 0;
}
