/* Internal state shared by the emulator's runtime files (emu_sched.cpp: fibers, launches,
 * barriers, warp collectives; emu_check.cpp: access checks; emu_runtime.cpp: memory, API,
 * reports). Not for kernels or tests. The emulator runs on one OS thread: launches execute
 * synchronously, blocks one at a time, so plain globals describe "the current thread". */
#ifndef MF_CUDA_EMU_INTERNAL_H
#define MF_CUDA_EMU_INTERNAL_H

#include <string>
#include <vector>

#include "kernels/cuda/emu/emu.h"

namespace mf_emu {

/* Per byte of device and shared memory: who touched it last, and when. An "interval" is a
 * number from a global counter: each warp gets a fresh one at every barrier and __syncwarp,
 * and g_base is the first interval of the current block-wide barrier interval. Two accesses
 * by different threads are unordered when both fall after the last __syncthreads and, for
 * lanes of one warp, no __syncwarp separates them. */
struct Shadow {
  uint32_t w_iv, w_blk; /* last plain write: interval, block serial (1 = host / initialized) */
  uint32_t r_iv, r2_iv; /* two readers of the current interval */
  uint32_t a_iv;        /* last atomic */
  uint32_t w_pc;        /* writer's code offset, for reports */
  uint16_t w_tid, r_tid, r2_tid, a_tid; /* a_tid: bit 15 several threads, bit 14 several warps */
};
static_assert(sizeof(Shadow) == 32, "shadow entry size");

struct Alloc {
  uintptr_t lo, hi;  /* region with guards */
  uintptr_t base;    /* user pointer */
  size_t size;
  Shadow *shadow;    /* per byte; null for very large buffers */
  size_t shadow_bytes;
  int id;
  bool freed, host;  /* host: cudaMallocHost / managed, host code may touch it */
  const void *pc;    /* caller of cudaMalloc */
  std::string name;
};

enum FState : uint8_t { F_IDLE, F_READY, F_BAR, F_WARP, F_DONE };
struct Fiber {
  void *sp;
  char *stack;
  unsigned tid, warp, lane;
  uint3 idx;
  FState state;
  bool fresh; /* context must be (re)initialized before running */
  int op, arg, width;
  unsigned mask;
  uint64_t val, res;
  const void *wait_pc;
};

struct SiteInfo { size_t off, size; const void *pc; };

struct LaunchState {
  std::string name; /* base name of the kernel */
  const char *expr;
  const void *fn;
  dim3 grid, block;
  size_t dyn;          /* dynamic shared bytes */
  size_t static_start, static_top, static_bytes;
  uint64_t serial;
  unsigned nthreads, nwarps;
  Invoker invoke;
  const void *params;
  bool active;         /* a launch is running */
  bool abort;          /* stop this launch (deadlock, bad collective, ...) */
  int reports;         /* reports printed for this launch */
  std::vector<SiteInfo> sites;
};

/* ---- globals (hot path) ---- */
extern bool g_in_kernel;
extern Fiber *g_cur;
extern LaunchState g_launch;
extern uintptr_t g_arena_lo, g_arena_span, g_smem_lo, g_smem_span, g_stack_lo, g_stack_span;
extern Shadow *g_smem_shadow;
extern uint8_t *g_smem_valid;  /* 1 where the block's shared variables are */
extern uint32_t g_blk, g_first_blk, g_base, g_warp_iv[32];
extern unsigned g_checks;
extern uintptr_t g_text_base;  /* for code offsets in the shadow */
extern uint64_t g_seed_launches; /* launches since the seed was set: picks the schedule */

const size_t kSmemLimit = 227 * 1024;      /* opt-in shared memory per block (sm_90) */
const size_t kSmemStaticLimit = 48 * 1024; /* static __shared__ per block */
const size_t kSmemDefaultDyn = 48 * 1024;  /* dynamic, without cudaFuncSetAttribute */
const size_t kSmemBuffer = 512 * 1024;     /* layout room incl. red zones */

void init();
/* MF_EMU_HOST_GUARD: device memory readable and writable between open and close (nests) */
void device_memory_open();
void device_memory_close();
Alloc *find_alloc(uintptr_t a); /* region (data or guards) containing a */
bool in_image(uintptr_t a);     /* a global/static of a loaded object */
size_t max_dyn_smem(const void *fn);
void note_launch(const std::string &name);
/* grid, block and shared memory a launch may have; sets the launch error if not */
bool launch_config_ok(const void *fn, dim3 grid, dim3 block, size_t smem);

/* reports: kind is a short title; body lines follow; pc is where it happened */
void report(const char *kind, const void *pc, const std::string &body);
std::string where(const void *pc);         /* "file:line (function)" */
std::string where_off(uint32_t off);       /* same for a stored code offset */
std::string thread_str(unsigned tid);      /* "(x,y,z)" of a thread of this block */
std::string describe_device(const Alloc *al);
std::string describe_shared(uintptr_t off);
void fatal_launch(const char *kind, const void *pc, const std::string &body); /* report + abort launch */
[[noreturn]] void die(const char *fmt, ...);

/* scheduler services for the checker */
void abort_to_scheduler();
uint64_t rng_next();

}  // namespace mf_emu

#endif
