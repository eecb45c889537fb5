/* CUDA emulator, scheduling: a launch runs its blocks one after another in a seeded random
 * order; the threads of a block are fibers (own stacks, switched by a few instructions of
 * assembly on x86-64, ucontext elsewhere) that run cooperatively. A thread runs until it
 * reaches a meeting point - __syncthreads, a warp collective, exit - and the next thread is
 * drawn at random from the runnable ones, so between barriers threads run in a seeded random
 * order. Barriers release when every live thread of the block has arrived; a warp collective
 * completes when every lane named in its mask has arrived (lanes that exited are not waited
 * for; shuffles from them read a poison value). Nothing runnable while threads still wait is
 * a deadlock, reported with where each thread waits. Also here: __shared__ memory layout. */
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>

#include "kernels/cuda/emu/emu_internal.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace mf_emu {

bool g_in_kernel;
Fiber *g_cur;
LaunchState g_launch;
uint32_t g_blk, g_first_blk, g_base, g_warp_iv[32];
uintptr_t g_stack_lo, g_stack_span;
uint64_t g_seed_launches;
void set_last_error(cudaError_t e);

namespace {

const unsigned kMaxThreads = 1024;
size_t g_stack_size;
Fiber g_fibers[kMaxThreads];
uint32_t g_ctr = 1, g_blk_ctr = 1;
uint64_t g_rng, g_launch_serial, g_switches;
unsigned g_live, g_bar_waiting, g_spins;
std::vector<unsigned> g_ready;
struct Warp { unsigned exist, exited, waiting; };
Warp g_warps[32];
long long g_clock;

const char *const kOpName[] = {
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
    "__ballot_sync", "__any_sync", "__all_sync", "__match_any_sync", "__match_all_sync",
    "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync",
    "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync"};

/* ---- contexts ---- */
#if defined(__x86_64__) && !defined(MF_EMU_UCONTEXT)
extern "C" void mf_emu_ctx_switch(void **save, void *to);
extern "C" void mf_emu_ctx_start();
asm(R"(
.text
.p2align 4
.hidden mf_emu_ctx_switch
.globl mf_emu_ctx_switch
.type mf_emu_ctx_switch,@function
mf_emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size mf_emu_ctx_switch, .-mf_emu_ctx_switch
.hidden mf_emu_ctx_start
.globl mf_emu_ctx_start
.type mf_emu_ctx_start,@function
mf_emu_ctx_start:
  movq %r12, %rdi
  callq *%r13
  ud2
.size mf_emu_ctx_start, .-mf_emu_ctx_start
)");
void *g_sched_sp;
void fiber_main(Fiber *f);
void ctx_init(Fiber *f) {
  uintptr_t top = ((uintptr_t)f->stack + g_stack_size - 64) & ~(uintptr_t)15;
  uint64_t *sp = (uint64_t *)top;
  *--sp = (uint64_t)(uintptr_t)&mf_emu_ctx_start; /* ret target; rsp is 16-aligned after it */
  *--sp = 0;                                      /* rbp */
  *--sp = 0;                                      /* rbx */
  *--sp = (uint64_t)(uintptr_t)f;                 /* r12: argument */
  *--sp = (uint64_t)(uintptr_t)&fiber_main;       /* r13: entry */
  *--sp = 0;                                      /* r14 */
  *--sp = 0;                                      /* r15 */
  *--sp = 0x1f80;                                 /* mxcsr (at +8) */
  *--sp = 0x037f;                                 /* x87 control word */
  f->sp = sp;
  f->fresh = false;
}
inline void to_fiber(Fiber *f) { mf_emu_ctx_switch(&g_sched_sp, f->sp); }
inline void to_sched(Fiber *f) { mf_emu_ctx_switch(&f->sp, g_sched_sp); }
#else
ucontext_t g_sched_uc, g_fiber_uc[kMaxThreads];
void fiber_main(Fiber *f);
void uc_entry(unsigned hi, unsigned lo) { fiber_main((Fiber *)(((uintptr_t)hi << 32) | lo)); }
void ctx_init(Fiber *f) {
  ucontext_t *uc = &g_fiber_uc[f - g_fibers];
  getcontext(uc);
  uc->uc_stack.ss_sp = f->stack;
  uc->uc_stack.ss_size = g_stack_size;
  uc->uc_link = nullptr;
  uintptr_t p = (uintptr_t)f;
  makecontext(uc, (void (*)())uc_entry, 2, (unsigned)(p >> 32), (unsigned)p);
  f->fresh = false;
}
inline void to_fiber(Fiber *f) { swapcontext(&g_sched_uc, &g_fiber_uc[f - g_fibers]); }
inline void to_sched(Fiber *f) { swapcontext(&g_fiber_uc[f - g_fibers], &g_sched_uc); }
#endif

void init_stacks() {
  if (g_stack_lo) return;
  const char *e = getenv("MF_EMU_STACK_KB");
  g_stack_size = (size_t)(e ? atol(e) : 256) * 1024;
  if (g_stack_size < 64 * 1024) g_stack_size = 64 * 1024;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  g_stack_size = (g_stack_size + page - 1) / page * page;
  size_t each = g_stack_size + page; /* guard page below each stack */
  void *m = mmap(nullptr, each * kMaxThreads, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) die("cannot map fiber stacks: %s", strerror(errno));
  g_stack_lo = (uintptr_t)m;
  g_stack_span = each * kMaxThreads;
  for (unsigned i = 0; i < kMaxThreads; i++) {
    char *g = (char *)m + i * each;
    mprotect(g, page, PROT_NONE);
    g_fibers[i].stack = g + page;
    g_fibers[i].fresh = true;
  }
}

void run(Fiber *f) {
  if (f->fresh) ctx_init(f);
  g_cur = f;
  threadIdx = f->idx;
  g_in_kernel = true;
  g_switches++;
  to_fiber(f);
  g_in_kernel = false;
  g_cur = nullptr;
}

/* from a fiber: back to the scheduler; returns when the scheduler runs this fiber again */
void yield_to_sched(Fiber *f) {
  g_in_kernel = false;
  to_sched(f);
}

void make_ready(Fiber *f) {
  f->state = F_READY;
  g_ready.push_back(f->tid);
}

void new_block_interval() {
  g_base = g_ctr + 1;
  for (unsigned w = 0; w < g_launch.nwarps; w++) g_warp_iv[w] = ++g_ctr;
}

void release_barrier() {
  int count = 0, all = 1, any = 0;
  for (unsigned t = 0; t < g_launch.nthreads; t++) {
    Fiber &f = g_fibers[t];
    if (f.state != F_BAR) continue;
    count += (int)f.val;
    all &= (int)f.val;
    any |= (int)f.val;
  }
  new_block_interval();
  for (unsigned t = 0; t < g_launch.nthreads; t++) {
    Fiber &f = g_fibers[t];
    if (f.state != F_BAR) continue;
    f.res = (uint64_t)(f.op == 0 ? count : f.op == 1 ? all : any);
    make_ready(&f);
  }
  g_bar_waiting = 0;
}

std::string lanes_str(unsigned m) {
  char b[16];
  snprintf(b, sizeof b, "0x%08x", m);
  return b;
}

/* completes the collectives of warp w whose lanes have all arrived */
void try_warp(unsigned w) {
  Warp &W = g_warps[w];
  unsigned pending = W.waiting;
  while (pending) {
    unsigned L = (unsigned)__builtin_ctz(pending);
    Fiber &fl = g_fibers[w * 32 + L];
    if (!((fl.mask >> L) & 1u)) {
      fatal_launch("bad warp collective", fl.wait_pc,
                   "thread " + thread_str(fl.tid) + " calls " + kOpName[fl.op] + " with mask " +
                       lanes_str(fl.mask) + ", which does not include its own lane " +
                       std::to_string(L));
      return;
    }
    unsigned req = fl.mask & W.exist & ~W.exited;
    if ((W.waiting & req) != req) {
      pending &= ~(1u << L);
      continue;
    }
    for (unsigned m = req; m; m &= m - 1) {
      Fiber &x = g_fibers[w * 32 + (unsigned)__builtin_ctz(m)];
      if (x.op != fl.op || x.mask != fl.mask) {
        fatal_launch("divergent warp collective", x.wait_pc,
                     "in warp " + std::to_string(w) + ", thread " + thread_str(x.tid) + " is at " +
                         kOpName[x.op] + " (mask " + lanes_str(x.mask) + ", " + where(x.wait_pc) +
                         ") while thread " + thread_str(fl.tid) + " is at " + kOpName[fl.op] +
                         " (mask " + lanes_str(fl.mask) + ", " + where(fl.wait_pc) +
                         "); every lane named in a mask must reach the same intrinsic");
        return;
      }
    }
    const uint64_t poison = ~(uint64_t)0;
    uint64_t ballot = 0, rdc = 0;
    bool all = true, any = false, same = true;
    int op = fl.op;
    for (unsigned m = req; m; m &= m - 1) {
      Fiber &x = g_fibers[w * 32 + (unsigned)__builtin_ctz(m)];
      uint32_t v = (uint32_t)x.val;
      bool first = m == req;
      if (x.val) ballot |= 1u << x.lane;
      all &= x.val != 0;
      any |= x.val != 0;
      same &= x.val == fl.val;
      switch (op) {
        case W_RADD: rdc = first ? v : (uint32_t)(rdc + v); break;
        case W_RMIN_U: rdc = first ? v : std::min((uint32_t)rdc, v); break;
        case W_RMAX_U: rdc = first ? v : std::max((uint32_t)rdc, v); break;
        case W_RMIN_S: rdc = first ? v : (uint32_t)std::min((int32_t)rdc, (int32_t)v); break;
        case W_RMAX_S: rdc = first ? v : (uint32_t)std::max((int32_t)rdc, (int32_t)v); break;
        case W_RAND: rdc = first ? v : (rdc & v); break;
        case W_ROR: rdc = first ? v : (rdc | v); break;
        case W_RXOR: rdc = first ? v : (rdc ^ v); break;
        default: break;
      }
    }
    for (unsigned m = req; m; m &= m - 1) {
      unsigned l = (unsigned)__builtin_ctz(m);
      Fiber &x = g_fibers[w * 32 + l];
      unsigned wd = (unsigned)x.width, seg = l & ~(wd - 1);
      int src = (int)l;
      switch (op) {
        case W_SHFL: src = (int)(seg + ((unsigned)x.arg & (wd - 1))); break;
        case W_UP: src = (l - seg) >= (unsigned)x.arg ? (int)(l - (unsigned)x.arg) : (int)l; break;
        case W_DOWN: src = (l - seg) + (unsigned)x.arg < wd ? (int)(l + (unsigned)x.arg) : (int)l; break;
        case W_XOR: {
          unsigned s = l ^ (unsigned)x.arg;
          src = s >= seg + wd ? (int)l : (int)s;
          break;
        }
        default: break;
      }
      switch (op) {
        case W_SHFL: case W_UP: case W_DOWN: case W_XOR:
          x.res = (unsigned)src == l ? x.val
                  : ((req >> src) & 1u) ? g_fibers[w * 32 + (unsigned)src].val : poison;
          break;
        case W_BALLOT: x.res = ballot; break;
        case W_ANY: x.res = any; break;
        case W_ALL: x.res = all; break;
        case W_MATCH_ANY: {
          uint64_t mm = 0;
          for (unsigned k = req; k; k &= k - 1) {
            unsigned lk = (unsigned)__builtin_ctz(k);
            if (g_fibers[w * 32 + lk].val == x.val) mm |= 1u << lk;
          }
          x.res = mm;
          break;
        }
        case W_MATCH_ALL: x.res = same ? ((uint64_t)1 << 32) | req : 0; break;
        case W_SYNC: x.res = 0; break;
        default: x.res = rdc; break;
      }
    }
    if (op == W_SYNC) g_warp_iv[w] = ++g_ctr;
    W.waiting &= ~req;
    pending &= ~req;
    for (unsigned m = req; m; m &= m - 1) make_ready(&g_fibers[w * 32 + (unsigned)__builtin_ctz(m)]);
  }
}

void thread_exit(Fiber *f) {
  f->state = F_DONE;
  g_live--;
  Warp &W = g_warps[f->warp];
  W.exited |= 1u << f->lane;
  if (g_bar_waiting > 0 && g_bar_waiting == g_live) release_barrier();
  if (W.waiting) try_warp(f->warp);
  yield_to_sched(f);
}

void fiber_main(Fiber *f) {
  for (;;) {
    g_launch.invoke(const_cast<void *>(g_launch.fn), g_launch.params);
    thread_exit(f);
  }
}

std::string wait_str(const Fiber &f) {
  std::string s = "thread " + thread_str(f.tid) + " waits at ";
  if (f.state == F_BAR) return s + "__syncthreads (" + where(f.wait_pc) + ")";
  return s + kOpName[f.op] + " with mask " + lanes_str(f.mask) + " (" + where(f.wait_pc) + ")";
}

void report_deadlock() {
  std::string body = "no thread can run but " + std::to_string(g_live) +
                     " have not finished (" + std::to_string(g_launch.nthreads - g_live) +
                     " exited); threads wait at:";
  /* group the waiting threads by where and how they wait */
  std::vector<unsigned> firsts, counts;
  for (unsigned t = 0; t < g_launch.nthreads; t++) {
    const Fiber &f = g_fibers[t];
    if (f.state != F_BAR && f.state != F_WARP) continue;
    size_t k = 0;
    for (; k < firsts.size(); k++) {
      const Fiber &g = g_fibers[firsts[k]];
      if (g.state == f.state && g.wait_pc == f.wait_pc && (f.state == F_BAR || (g.op == f.op && g.mask == f.mask)))
        break;
    }
    if (k == firsts.size()) firsts.push_back(t), counts.push_back(0);
    counts[k]++;
  }
  for (size_t k = 0; k < firsts.size() && k < 8; k++)
    body += "\n    " + std::to_string(counts[k]) + " thread(s), e.g. " + wait_str(g_fibers[firsts[k]]);
  body += "\n    (a barrier or warp collective that not every thread/lane reaches?)";
  fatal_launch("deadlock", nullptr, body);
}

void run_block(uint3 b) {
  blockIdx = b;
  g_blk = ++g_blk_ctr;
  new_block_interval();
  memset((void *)g_smem_lo, 0xff, g_launch.static_top); /* shared memory starts as garbage */
  unsigned n = g_launch.nthreads;
  for (unsigned w = 0; w < g_launch.nwarps; w++) {
    unsigned lanes = std::min(32u, n - w * 32);
    g_warps[w] = {lanes == 32 ? ~0u : (1u << lanes) - 1u, 0u, 0u};
  }
  g_ready.clear();
  const dim3 bd = g_launch.block;
  for (unsigned t = 0; t < n; t++) {
    Fiber &f = g_fibers[t];
    f.tid = t;
    f.idx = {t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
    f.warp = t / 32;
    f.lane = t % 32;
    make_ready(&f);
  }
  g_live = n;
  g_bar_waiting = 0;
  g_spins = 0;
  while (!g_ready.empty() && !g_launch.abort) {
    size_t k = (size_t)(rng_next() % g_ready.size());
    unsigned t = g_ready[k];
    g_ready[k] = g_ready.back();
    g_ready.pop_back();
    run(&g_fibers[t]);
  }
  if (!g_launch.abort && g_live > 0) report_deadlock();
  if (g_launch.abort) /* abandon the threads where they stand; their stacks start afresh */
    for (unsigned t = 0; t < n; t++) g_fibers[t].fresh = true;
}

std::string base_name(const char *expr) {
  std::string s, out;
  int angle = 0;
  for (const char *p = expr; *p; p++) { /* drop template arguments */
    if (*p == '<') angle++;
    else if (*p == '>') angle--;
    else if (angle == 0) s += *p;
  }
  size_t c = s.rfind("::");
  if (c != std::string::npos) s = s.substr(c + 2);
  for (char ch : s)
    if (isalnum((unsigned char)ch) || ch == '_') out += ch;
  return out;
}

}  // namespace

uint64_t rng_next() { /* splitmix64 */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void abort_to_scheduler() {
  g_launch.abort = true;
  if (g_in_kernel && g_cur) {
    g_cur->fresh = true;
    yield_to_sched(g_cur);
    die("an aborted thread was resumed");
  }
}

void *param_space(size_t size, size_t align) {
  alignas(64) static char buf[32768];
  if (size > sizeof buf || align > 64) die("kernel parameters of %zu bytes do not fit", size);
  return buf;
}

bool launch_config_ok(const void *fn, dim3 grid, dim3 block, size_t smem) {
  uint64_t threads = (uint64_t)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    set_last_error(cudaErrorInvalidConfiguration);
    return false;
  }
  if (smem > max_dyn_smem(fn)) {
    set_last_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

void launch(const char *expr, const void *fn, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, Invoker invoke, const void *params) {
  (void)stream;
  init();
  init_stacks();
  static pthread_t owner = pthread_self(); /* the emulator's state is one thread's */
  if (!pthread_equal(owner, pthread_self()))
    die("kernel %s launched from a second OS thread; the emulator runs launches on one thread", expr);
  if (g_in_kernel) {
    fatal_launch("launch from device code", __builtin_return_address(0),
                 std::string("kernel ") + expr + " launched from a kernel (dynamic parallelism is not emulated)");
    return;
  }
  std::string name = base_name(expr);
  note_launch(name);
  struct Open { /* kernels see device memory; host code between launches does not */
    Open() { device_memory_open(); }
    ~Open() { device_memory_close(); }
  } open_device_memory;
  if (!launch_config_ok(fn, grid, block, smem)) return;
  uint64_t threads = (uint64_t)block.x * block.y * block.z;
  LaunchState &L = g_launch;
  /* forget the previous launch's shared layout */
  memset(g_smem_valid, 0, L.static_top);
  L.name = name;
  L.expr = expr;
  L.fn = fn;
  L.grid = grid;
  L.block = block;
  L.dyn = smem;
  L.static_start = L.static_top = (smem + 64 + 127) / 128 * 128; /* red zone after dynamic */
  L.static_bytes = 0;
  L.serial = ++g_launch_serial;
  L.nthreads = (unsigned)threads;
  L.nwarps = (L.nthreads + 31) / 32;
  L.invoke = invoke;
  L.params = params;
  L.abort = false;
  L.active = true;
  L.reports = 0;
  L.sites.clear();
  memset(g_smem_valid, 1, smem);
  blockDim = block;
  gridDim = grid;
  g_rng = seed() ^ (++g_seed_launches * 0xd1b54a32d192ed03ull);
  g_first_blk = g_blk_ctr + 1;
  uint64_t nb = (uint64_t)grid.x * grid.y * grid.z;
  std::vector<uint64_t> order;
  if (nb <= (1u << 22)) { /* random block order */
    order.resize(nb);
    for (uint64_t i = 0; i < nb; i++) order[i] = i;
    for (uint64_t i = nb; i > 1; i--) std::swap(order[i - 1], order[rng_next() % i]);
  }
  for (uint64_t i = 0; i < nb && !L.abort; i++) {
    uint64_t b = order.empty() ? i : order[i];
    run_block({(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / grid.x / grid.y)});
  }
  g_in_kernel = false;
  g_cur = nullptr;
  L.active = false;
  if (L.abort) set_last_error(cudaErrorLaunchFailure);
}

/* ---- device-side services ---- */
static Fiber *need_thread(const char *what) {
  if (g_in_kernel && g_cur) return g_cur;
  die("%s called outside a kernel", what);
}

void syncthreads() { syncthreads_op(0, 0); }

int syncthreads_op(int op, int pred) {
  Fiber *f = need_thread("__syncthreads");
  f->state = F_BAR;
  f->op = op;
  f->val = pred != 0;
  f->wait_pc = __builtin_return_address(0);
  g_bar_waiting++;
  if (g_bar_waiting == g_live) release_barrier();
  yield_to_sched(f);
  return (int)f->res;
}

uint64_t warp_op(int op, unsigned mask, uint64_t value, int arg, int width) {
  Fiber *f = need_thread(kOpName[op]);
  if (width < 1 || width > 32 || (width & (width - 1))) {
    fatal_launch("bad warp collective", __builtin_return_address(0),
                 std::string(kOpName[op]) + " with width " + std::to_string(width) +
                     " (must be a power of two <= 32)");
    return 0;
  }
  f->state = F_WARP;
  f->op = op;
  f->mask = mask;
  f->val = value;
  f->arg = arg;
  f->width = width;
  f->wait_pc = __builtin_return_address(0);
  g_warps[f->warp].waiting |= 1u << f->lane;
  try_warp(f->warp);
  yield_to_sched(f);
  return f->res;
}

unsigned active_mask() {
  Fiber *f = need_thread("__activemask");
  return g_warps[f->warp].exist & ~g_warps[f->warp].exited;
}

void yield() {
  Fiber *f = need_thread("__nanosleep");
  if (g_ready.empty() && ++g_spins > 100000) {
    fatal_launch("endless wait", __builtin_return_address(0),
                 "thread " + thread_str(f->tid) +
                     " spins in a wait loop that no other thread of its block can end (blocks "
                     "run one after another here: waiting for another block never ends)");
    return;
  }
  if (!g_ready.empty()) g_spins = 0;
  make_ready(f);
  yield_to_sched(f);
}

void fence() {}

void trap() {
  fatal_launch("__trap", __builtin_return_address(0), "the kernel called __trap()");
  die("__trap() outside a kernel");
}

long long clock_ticks() { return g_clock += 97; }

void *dyn_smem() {
  need_thread("extern __shared__");
  return (void *)g_smem_lo;
}

void *smem_site(SmemSite *s, size_t size, size_t align) {
  need_thread("__shared__");
  LaunchState &L = g_launch;
  if (s->launch != L.serial) {
    const void *pc = __builtin_return_address(0);
    if (align < 16) align = 16;
    size_t off = (L.static_top + 64 + align - 1) / align * align; /* 64-byte red zone */
    L.static_bytes += size;
    if (L.static_bytes > kSmemStaticLimit || L.static_bytes + L.dyn > kSmemLimit ||
        off + size > kSmemBuffer) {
      fatal_launch("too much shared memory", pc,
                   "static __shared__ " + std::to_string(L.static_bytes) + " bytes + dynamic " +
                       std::to_string(L.dyn) + " bytes; the limits are 48 KB static and 227 KB in all");
      return (void *)g_smem_lo;
    }
    s->off = off;
    s->launch = L.serial;
    L.static_top = off + size;
    memset(g_smem_valid + off, 1, size);
    memset((void *)(g_smem_lo + off), 0xff, size);
    L.sites.push_back({off, size, pc});
  }
  return (void *)(g_smem_lo + s->off);
}

bool is_shared(const void *p) { return (uintptr_t)p - g_smem_lo < g_smem_span; }
bool is_global(const void *p) {
  Alloc *a = find_alloc((uintptr_t)p);
  return (a && !a->freed) || in_image((uintptr_t)p);
}

std::string thread_str(unsigned tid) {
  const dim3 b = g_launch.block;
  char s[64];
  snprintf(s, sizeof s, "(%u,%u,%u)", tid % b.x, (tid / b.x) % b.y, tid / (b.x * b.y));
  return s;
}

unsigned long long switches() { return g_switches; }

}  // namespace mf_emu
