/* CUDA emulator, runtime: device memory, the CUDA runtime API our code calls, the emulated
 * device (an H100/H200-like sm_90 part), error reports and their symbolization.
 * Device memory comes from one reserved address range ("arena"): each cudaMalloc gets its own
 * pages between 1 MB guard zones (mapped, so a stray access is reported rather than fatal),
 * starts filled with 0xFF bytes (NaN as float) and is never reused after cudaFree, so late
 * accesses are recognised. Every byte has a Shadow entry (emu_internal.h) for the checker.
 * Reports resolve code addresses to file:line with addr2line (MF_EMU_SYMBOLIZE=0: off). */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <map>
#include <set>

#include "kernels/cuda/emu/emu_internal.h"

namespace mf_emu {

uintptr_t g_arena_lo, g_arena_span, g_smem_lo, g_smem_span, g_text_base;
Shadow *g_smem_shadow;
uint8_t *g_smem_valid;
unsigned g_checks = CHECK_ALL;
unsigned long long switches();

namespace {

const size_t kArenaSize = (size_t)1 << 38; /* 256 GB of address space, committed on use */
const size_t kGuard = (size_t)1 << 20;
const size_t kShadowMaxBytes = (size_t)256 << 20; /* larger buffers: bounds checks only */
const size_t kTotalMem = (size_t)80 << 30;
/* MF_EMU_MEM_MB: device memory the emulated GPU has (cudaMalloc fails beyond it, as out of
 * memory on a GPU), for tests of what fits; default kTotalMem */
size_t g_mem_total = kTotalMem;
const int kMaxReportsPerLaunch = 10;

bool g_inited, g_quiet, g_symbolize = true;
uint64_t g_seed = 1;
long g_errors;
std::string g_last_report, g_exe, g_src_dir;
uintptr_t g_bump;
std::vector<Alloc *> g_allocs;
/* MF_EMU_HOST_GUARD=1: device memory is PROT_NONE whenever the emulator is not inside a
 * runtime call or a launch, so host code that dereferences a device pointer faults at
 * once, as it would with a real GPU (where cudaMalloc memory is not host memory). */
bool g_host_guard;
int g_open_depth;
Alloc *g_last_alloc;
size_t g_live_bytes, g_dev_bytes; /* all live allocations; device ones (not pinned host) */
cudaError_t g_last_error = cudaSuccess;
std::map<const void *, size_t> g_dyn_limit;
std::map<std::string, long> g_launches;
std::vector<std::string> g_launch_order;
std::set<std::pair<std::string, const void *>> g_seen;
uint64_t g_seen_serial = ~0ull;
std::vector<std::pair<uintptr_t, uintptr_t>> g_image;
uint64_t g_image_serial = ~0ull;
std::map<uintptr_t, std::string> g_where_cache;
char g_altstack[65536];

uintptr_t round_up(uintptr_t v, uintptr_t a) { return (v + a - 1) / a * a; }

int collect_image(struct dl_phdr_info *info, size_t, void *) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD || ph.p_type == PT_TLS || ph.p_type == PT_GNU_RELRO)
      g_image.push_back({info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz});
  }
  return 0;
}
int main_base(struct dl_phdr_info *info, size_t, void *out) {
  *(uintptr_t *)out = info->dlpi_addr;
  return 1; /* the first object is the executable */
}

void on_signal(int sig, siginfo_t *si, void *) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "mf-emu: signal %d (%s)", sig, strsignal(sig));
  if (g_in_kernel && g_cur) {
    n += snprintf(buf + n, sizeof buf - n, " in kernel %s, block (%u,%u,%u), thread (%u,%u,%u)",
                  g_launch.name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
                  threadIdx.y, threadIdx.z);
    uintptr_t a = (uintptr_t)si->si_addr;
    if (sig == SIGSEGV && a - g_stack_lo < g_stack_span)
      n += snprintf(buf + n, sizeof buf - n,
                    "\n    the thread's stack overflowed (raise MF_EMU_STACK_KB, default 256)");
  }
  n += snprintf(buf + n, sizeof buf - n, "; seed %llu\n", (unsigned long long)g_seed);
  if (write(2, buf, (size_t)n) < 0) {}
  signal(sig, SIG_DFL);
  if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE) raise(sig);
}

void at_exit() {
  if (getenv("MF_EMU_STATS"))
    fprintf(stderr, "mf-emu: %zu kernels, %llu thread switches\n", g_launches.size(), switches());
  if (g_errors)
    fprintf(stderr, "mf-emu: %ld error report(s) in this process were not cleared\n", g_errors);
}

/* source-relative; prepared copies (build/cuda_emu/src/x.cu.cpp) map back to x.cu, whose line
 * numbers they keep */
std::string short_path(std::string s) {
  size_t d = s.find(" (discriminator");
  if (d != std::string::npos) s = s.substr(0, d);
  size_t g = s.find("/cuda_emu/src/");
  if (g != std::string::npos) {
    s = s.substr(g + 14);
    size_t c = s.find(".cu.cpp:");
    if (c != std::string::npos) s.erase(c + 3, 4);
  } else if (!g_src_dir.empty() && s.compare(0, g_src_dir.size(), g_src_dir) == 0) {
    s = s.substr(g_src_dir.size());
  }
  return s;
}

Alloc *arena_alloc(size_t size, bool host, const void *pc) {
  init();
  size_t data = round_up(size ? size : 1, 4096), region = kGuard + data + kGuard;
  if (!host && g_dev_bytes + size > g_mem_total) return nullptr;
  if (g_bump + region > g_arena_lo + g_arena_span) return nullptr;
  if (mprotect((void *)g_bump, region, PROT_READ | PROT_WRITE) != 0) return nullptr;
  Alloc *al = new Alloc();
  al->lo = g_bump;
  al->base = g_bump + kGuard;
  al->hi = g_bump + region;
  al->size = size;
  al->host = host;
  al->pc = pc;
  al->id = (int)g_allocs.size() + 1;
  g_bump += region;
  memset((void *)al->base, 0xff, size); /* garbage, as on a GPU: NaN as float */
  if (g_host_guard && !host && g_open_depth == 0) mprotect((void *)al->base, round_up(size, 4096), PROT_NONE);
  if (size <= kShadowMaxBytes && size > 0) {
    al->shadow_bytes = round_up(size * sizeof(Shadow), 4096);
    void *m = mmap(nullptr, al->shadow_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    al->shadow = m == MAP_FAILED ? nullptr : (Shadow *)m;
  }
  g_allocs.push_back(al);
  g_live_bytes += size;
  if (!host) g_dev_bytes += size;
  return al;
}

/* host-side writes (cudaMemcpy/cudaMemset) initialize bytes and order them before kernels */
void mark_written(Alloc *al, uintptr_t p, size_t n) {
  if (!al || !al->shadow) return;
  Shadow *s = al->shadow + (p - al->base);
  for (size_t i = 0; i < n; i++) {
    s[i] = Shadow();
    s[i].w_blk = 1;
  }
}

/* device range [p, p+n) must lie in a live allocation; reports and returns false if not */
bool check_range(const char *call, const void *p, size_t n, Alloc **out, const void *pc) {
  Alloc *al = find_alloc((uintptr_t)p);
  *out = al;
  uintptr_t a = (uintptr_t)p;
  std::string what;
  if (!al) what = "is not device memory";
  else if (al->freed) what = "was freed";
  else if (a < al->base || a + n > al->base + al->size) {
    char b[128];
    snprintf(b, sizeof b, "[%zd, %zd) lies outside the allocation's %zu bytes",
             (ssize_t)(a - al->base), (ssize_t)(a + n - al->base), al->size);
    what = b;
  }
  if (what.empty()) return true;
  report("bad memory range in a runtime call", pc,
         std::string(call) + " of " + std::to_string(n) + " bytes at " + where(pc) +
             ": the device range " + what + (al ? "\n    memory: " + describe_device(al) : ""));
  return false;
}

bool in_arena(const void *p) { return (uintptr_t)p - g_arena_lo < g_arena_span; }

cudaError_t fail(cudaError_t e) { return g_last_error = e; }

}  // namespace

void set_last_error(cudaError_t e) { g_last_error = e; }

[[noreturn]] void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mf-emu: fatal: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void protect_device(int prot) {
  for (Alloc *al : g_allocs)
    if (!al->host && !al->freed && al->size) mprotect((void *)al->base, round_up(al->size, 4096), prot);
}
void device_memory_open() {
  if (g_host_guard && g_open_depth++ == 0) protect_device(PROT_READ | PROT_WRITE);
}
void device_memory_close() {
  if (g_host_guard && --g_open_depth == 0) protect_device(PROT_NONE);
}

void init() {
  if (g_inited) return;
  g_inited = true;
  if (const char *e = getenv("MF_EMU_SEED")) g_seed = strtoull(e, nullptr, 0);
  if (const char *e = getenv("MF_EMU_SYMBOLIZE")) g_symbolize = atoi(e) != 0;
  if (const char *e = getenv("MF_EMU_CHECKS")) g_checks = (unsigned)strtoul(e, nullptr, 0);
  if (const char *e = getenv("MF_EMU_HOST_GUARD")) g_host_guard = atoi(e) != 0;
  if (const char *e = getenv("MF_EMU_MEM_MB")) g_mem_total = (size_t)strtoull(e, nullptr, 0) << 20;
#ifdef MF_SOURCE_DIR
  g_src_dir = std::string(MF_SOURCE_DIR) + "/";
#endif
  size_t span = kArenaSize;
  void *m = mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  while (m == MAP_FAILED && span > ((size_t)4 << 30)) { /* ulimit -v may refuse */
    span /= 4;
    m = mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (m == MAP_FAILED) die("cannot reserve the device address range: %s", strerror(errno));
  g_arena_lo = g_bump = (uintptr_t)m;
  g_arena_span = span;
  m = mmap(nullptr, kSmemBuffer, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *sh = mmap(nullptr, kSmemBuffer * sizeof(Shadow), PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED || sh == MAP_FAILED) die("cannot map shared memory");
  g_smem_lo = (uintptr_t)m;
  g_smem_span = kSmemBuffer;
  g_smem_shadow = (Shadow *)sh;
  g_smem_valid = (uint8_t *)calloc(kSmemBuffer, 1);
  dl_iterate_phdr(main_base, &g_text_base);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) g_exe.assign(exe, (size_t)n);
  stack_t ss;
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  ss.ss_flags = 0;
  sigaltstack(&ss, nullptr);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(s, &sa, nullptr);
  atexit(at_exit);
}

Alloc *find_alloc(uintptr_t a) {
  if (g_last_alloc && a - g_last_alloc->lo < g_last_alloc->hi - g_last_alloc->lo) return g_last_alloc;
  auto it = std::upper_bound(g_allocs.begin(), g_allocs.end(), a,
                             [](uintptr_t v, const Alloc *al) { return v < al->lo; });
  if (it == g_allocs.begin()) return nullptr;
  Alloc *al = *(it - 1);
  if (a >= al->hi) return nullptr;
  g_last_alloc = al;
  return al;
}

bool in_image(uintptr_t a) {
  for (int pass = 0; pass < 2; pass++) {
    if (g_image.empty() || (pass == 1 && g_image_serial != g_launch.serial)) {
      if (pass == 1) g_image_serial = g_launch.serial; /* rescan once per launch on a miss */
      g_image.clear();
      dl_iterate_phdr(collect_image, nullptr);
      std::sort(g_image.begin(), g_image.end());
    } else if (pass == 1) {
      return false;
    }
    auto it = std::upper_bound(g_image.begin(), g_image.end(), std::make_pair(a, ~(uintptr_t)0));
    if (it != g_image.begin() && a < (it - 1)->second) return true;
    /* segments may overlap (RELRO in LOAD): check a few before */
    for (int k = 2; k <= 4 && it - g_image.begin() >= k; k++)
      if (a >= (it - k)->first && a < (it - k)->second) return true;
  }
  return false;
}

size_t max_dyn_smem(const void *fn) {
  auto it = g_dyn_limit.find(fn);
  return it == g_dyn_limit.end() ? kSmemDefaultDyn : it->second;
}

void note_launch(const std::string &name) {
  if (g_launches[name]++ > 0) return;
  g_launch_order.push_back(name);
  const char *log = getenv("MF_EMU_LAUNCH_LOG");
  if (!log || !*log) return;
  std::string dir(log);
  for (size_t p = dir.find('/', 1); p != std::string::npos; p = dir.find('/', p + 1))
    mkdir(dir.substr(0, p).c_str(), 0777);
  if (FILE *f = fopen(log, "a")) {
    fprintf(f, "%s\n", name.c_str());
    fclose(f);
  }
}

/* ---- reports ---- */
std::string where(const void *pc) {
  if (!pc) return "?";
  uintptr_t a = (uintptr_t)pc - 1;
  char hex[32];
  snprintf(hex, sizeof hex, "0x%zx", (size_t)a);
  auto c = g_where_cache.find(a);
  if (c != g_where_cache.end()) return c->second;
  std::string res = hex;
  Dl_info info;
  if (g_symbolize && g_where_cache.size() < 256 && dladdr(pc, &info) && info.dli_fbase) {
    std::string file = (uintptr_t)info.dli_fbase == g_text_base || !info.dli_fname || !*info.dli_fname
                           ? g_exe : info.dli_fname;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)info.dli_fbase;
    uintptr_t rel = eh->e_type == ET_DYN ? a - (uintptr_t)info.dli_fbase : a;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "addr2line -C -f -i -e '%s' 0x%zx 2>/dev/null", file.c_str(), (size_t)rel);
    if (FILE *p = popen(cmd, "r")) {
      /* pairs of lines (function, file:line), innermost inlined frame first: report the
       * first frame outside the emulator's own headers */
      char fn[4096] = "", loc[4096] = "";
      bool first = true;
      while (fgets(fn, sizeof fn, p) && fgets(loc, sizeof loc, p)) {
        fn[strcspn(fn, "\n")] = 0;
        loc[strcspn(loc, "\n")] = 0;
        if (loc[0] == '?') {
          if (first && info.dli_sname) res = std::string(info.dli_sname) + "+" + hex;
          break;
        }
        bool ours = strstr(loc, "/kernels/cuda/emu/") != nullptr;
        if (first || !ours) res = short_path(loc) + " (" + fn + ")";
        first = false;
        if (!ours) break;
      }
      pclose(p);
    }
  }
  g_where_cache[a] = res;
  return res;
}

std::string where_off(uint32_t off) {
  return off ? where((const void *)(g_text_base + off)) : "an unknown place";
}

std::string describe_device(const Alloc *al) {
  std::string n = std::to_string(al->size) + " bytes";
  if (!al->name.empty()) return "'" + al->name + "' (" + n + ")";
  return "allocation #" + std::to_string(al->id) + " (" + n + ", " +
         (al->host ? "cudaMallocHost" : "cudaMalloc") + " at " + where(al->pc) + ")";
}

std::string describe_shared(uintptr_t off) {
  const LaunchState &L = g_launch;
  char b[160];
  if (off < L.dyn) {
    snprintf(b, sizeof b, "dynamic (extern __shared__), byte %zu of %zu", (size_t)off, L.dyn);
    return b;
  }
  const SiteInfo *before = nullptr, *after = nullptr;
  for (const SiteInfo &s : L.sites) {
    if (off >= s.off && off < s.off + s.size) {
      snprintf(b, sizeof b, ", byte %zu of %zu", (size_t)(off - s.off), s.size);
      return "__shared__ declared at " + where(s.pc) + b;
    }
    if (s.off + s.size <= off && (!before || s.off > before->off)) before = &s;
    if (s.off > off && (!after || s.off < after->off)) after = &s;
  }
  if (L.dyn && off < L.static_start && (!before)) {
    snprintf(b, sizeof b, "%zu bytes past the end of the dynamic shared memory (%zu bytes)",
             (size_t)(off - L.dyn + 1), L.dyn);
    return b;
  }
  if (before && (!after || off - (before->off + before->size) <= after->off - off)) {
    snprintf(b, sizeof b, "%zu bytes past the end of ", (size_t)(off - before->off - before->size + 1));
    return b + ("the __shared__ declared at " + where(before->pc)) + " (" + std::to_string(before->size) + " bytes)";
  }
  if (after) {
    snprintf(b, sizeof b, "%zu bytes before the start of ", (size_t)(after->off - off));
    return b + ("the __shared__ declared at " + where(after->pc)) + " (" + std::to_string(after->size) + " bytes)";
  }
  return "outside every __shared__ variable of the kernel";
}

void report(const char *kind, const void *pc, const std::string &body) {
  LaunchState &L = g_launch;
  bool kern = L.active;
  if (g_seen_serial != L.serial) {
    g_seen.clear();
    g_seen_serial = L.serial;
  }
  if (!g_seen.insert({kind, pc}).second) return; /* one report per kind and place per launch */
  g_errors++;
  std::string t = std::string("mf-emu: ") + kind;
  if (kern) {
    char b[160];
    snprintf(b, sizeof b, " in kernel %s, block (%u,%u,%u)", L.name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z);
    t += b;
    if (g_cur) t += ", thread " + thread_str(g_cur->tid);
  }
  t += "\n    " + body + "\n    seed " + std::to_string(g_seed) + " (MF_EMU_SEED)\n";
  g_last_report = t;
  if (g_quiet) return;
  if (L.reports++ == kMaxReportsPerLaunch)
    fprintf(stderr, "mf-emu: further reports of this launch are counted, not printed\n");
  if (L.reports <= kMaxReportsPerLaunch) fputs(t.c_str(), stderr);
}

void fatal_launch(const char *kind, const void *pc, const std::string &body) {
  report(kind, pc, body + "\n    the launch is abandoned (cudaErrorLaunchFailure)");
  abort_to_scheduler();
}

/* ---- controls ---- */
void set_seed(uint64_t s) {
  init();
  g_seed = s;
  g_seed_launches = 0; /* the same seed gives the same schedules again */
}
uint64_t seed() { init(); return g_seed; }
void set_checks(unsigned m) { init(); g_checks = m; }
unsigned checks() { return g_checks; }
long error_count() { return g_errors; }
void clear_errors() { g_errors = 0; g_last_report.clear(); g_seen.clear(); }
std::string last_report() { return g_last_report; }
void set_quiet(bool q) { g_quiet = q; }
void name_alloc(const void *p, const char *name) {
  Alloc *al = find_alloc((uintptr_t)p);
  if (al) al->name = name;
}
long launch_count(const char *k) {
  auto it = g_launches.find(k);
  return it == g_launches.end() ? 0 : it->second;
}
std::vector<std::string> launched_kernels() { return g_launch_order; }

}  // namespace mf_emu

using namespace mf_emu;
#define RA __builtin_return_address(0)

/* ---- streams and their captures (the API functions are further down) ---- */
typedef std::vector<std::function<void()>> Work;
struct CUstream_st {
  int live;
  cudaStreamCaptureStatus capture;
  cudaStreamCaptureMode mode;
  Work work; /* what the capture recorded */
};
struct CUgraph_st { Work work; };
struct CUgraphExec_st { Work work; };
static std::vector<cudaStream_t> g_capturing; /* streams between Begin- and EndCapture */

static bool legacy_stream(cudaStream_t s) { return !s || s == cudaStreamLegacy; }
static bool pseudo_stream(cudaStream_t s) { return legacy_stream(s) || s == cudaStreamPerThread; }
static bool is_capturing(cudaStream_t s) {
  return !g_capturing.empty() && !pseudo_stream(s) && s->capture != cudaStreamCaptureStatusNone;
}

/* A call a capture does not allow: on a GPU it fails and invalidates the capture, so here
 * too, with a report naming the call. relaxed: the call is one that relaxed mode permits
 * (cudaMalloc, cudaFree); only s's capture is affected when s is given. Returns the error,
 * or cudaSuccess when no capture is concerned. */
static cudaError_t capture_forbids(const std::string &call, const void *pc, cudaError_t e, bool relaxed,
                                   cudaStream_t s = nullptr) {
  bool hit = false;
  for (cudaStream_t c : g_capturing) {
    if ((s && c != s) || (relaxed && c->mode == cudaStreamCaptureModeRelaxed)) continue;
    c->capture = cudaStreamCaptureStatusInvalidated;
    hit = true;
  }
  if (!hit) return cudaSuccess;
  report("call not allowed during stream capture", pc,
         call + " at " + where(pc) + " while a stream captures a CUDA graph: a GPU refuses it (" +
             cudaGetErrorName(e) + ") and invalidates the capture (cudaStreamEndCapture fails)");
  return fail(e);
}

/* where an asynchronous operation on s goes: 0 run now, 1 record into s's capture,
 * -1 refused (error set) */
static int capture_route(cudaStream_t s, const std::string &what, const void *pc) {
  if (g_capturing.empty()) return 0;
  if (is_capturing(s)) {
    if (s->capture == cudaStreamCaptureStatusInvalidated) {
      fail(cudaErrorStreamCaptureInvalidated);
      return -1;
    }
    return 1;
  }
  if (legacy_stream(s) &&
      capture_forbids(what + " on the legacy stream", pc, cudaErrorStreamCaptureImplicit, false) != cudaSuccess)
    return -1;
  return 0;
}

int mf_emu::capture_launch(cudaStream_t s, const char *expr, const void *fn, dim3 grid, dim3 block,
                           size_t smem) {
  int r = capture_route(s, std::string("launch of ") + expr, RA);
  if (r > 0 && !launch_config_ok(fn, grid, block, smem)) return -1;
  return r;
}
void mf_emu::record(cudaStream_t s, std::function<void()> work) {
  if (!is_capturing(s)) die("record: the stream is not capturing");
  s->work.push_back(std::move(work));
}

/* host memory in an asynchronous copy during capture must be pinned (cudaMallocHost): a
 * graph cannot copy pageable memory */
static bool pageable(const void *p) { return !in_arena(p); } /* the arena: device or pinned */

/* ---- memory ---- */
static cudaError_t do_malloc(void **p, size_t n, bool host, const void *pc) {
  if (!p) return fail(cudaErrorInvalidValue);
  *p = nullptr;
  if (cudaError_t e = capture_forbids(host ? "cudaMallocHost" : "cudaMalloc", pc, cudaErrorStreamCaptureUnsupported, true))
    return e;
  if (n == 0) return cudaSuccess;
  Alloc *al = arena_alloc(n, host, pc);
  if (!al) return fail(cudaErrorMemoryAllocation);
  *p = (void *)al->base;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) { return do_malloc(p, n, false, RA); }
cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) { return do_malloc(p, n, false, RA); }
cudaError_t cudaMallocHost(void **p, size_t n) { return do_malloc(p, n, true, RA); }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int) { return do_malloc(p, n, true, RA); }
cudaError_t cudaMallocManaged(void **p, size_t n, unsigned int) { return do_malloc(p, n, true, RA); }

static cudaError_t do_free(void *p, const void *pc) {
  init();
  if (!p) return cudaSuccess;
  if (cudaError_t e = capture_forbids("cudaFree", pc, cudaErrorStreamCaptureUnsupported, true)) return e;
  Alloc *al = find_alloc((uintptr_t)p);
  if (!al || al->base != (uintptr_t)p || al->freed) {
    report(al && al->freed ? "double cudaFree" : "bad cudaFree", pc,
           "cudaFree at " + where(pc) + " of a pointer that " +
               (al && al->freed ? "was already freed" : "cudaMalloc did not return") +
               (al ? "\n    memory: " + describe_device(al) : ""));
    return fail(cudaErrorInvalidValue);
  }
  al->freed = true;
  g_live_bytes -= al->size;
  if (!al->host) g_dev_bytes -= al->size;
  madvise((void *)al->base, round_up(al->size, 4096), MADV_DONTNEED);
  if (al->shadow) munmap(al->shadow, al->shadow_bytes);
  al->shadow = nullptr;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) { return do_free(p, RA); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t) { return do_free(p, RA); }
cudaError_t cudaFreeHost(void *p) { return do_free(p, RA); }

static cudaError_t do_memcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, const void *pc) {
  init();
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  bool dd = in_arena(dst), sd = in_arena(src);
  if (kind == cudaMemcpyDefault) kind = (cudaMemcpyKind)((sd ? 2 : 0) + (dd ? 1 : 0));
  static const char *const names[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice"};
  if ((int)kind < 0 || kind > cudaMemcpyDeviceToDevice) return fail(cudaErrorInvalidMemcpyDirection);
  bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  Alloc *ad = nullptr, *as = nullptr;
  if ((want_dd && !dd) || (want_sd && !sd) || (kind != cudaMemcpyDeviceToDevice && dd && sd)) {
    report("cudaMemcpy direction does not match the pointers", pc,
           std::string("cudaMemcpy") + names[kind] + " at " + where(pc) + ": destination is " +
               (dd ? "device" : "host") + " memory, source is " + (sd ? "device" : "host") + " memory");
    return fail(cudaErrorInvalidValue);
  }
  if (dd && !check_range("cudaMemcpy (destination)", dst, n, &ad, pc)) return fail(cudaErrorInvalidValue);
  if (sd && !check_range("cudaMemcpy (source)", src, n, &as, pc)) return fail(cudaErrorInvalidValue);
  device_memory_open();
  memmove(dst, src, n);
  device_memory_close();
  if (dd) mark_written(ad, (uintptr_t)dst, n);
  return cudaSuccess;
}
/* synchronous copies and memsets wait for the device: never during a capture */
static cudaError_t sync_call(const char *call, const void *pc) {
  return g_capturing.empty() ? cudaSuccess
                             : capture_forbids(call, pc, cudaErrorStreamCaptureUnsupported, false);
}
/* an asynchronous copy on st: now, or recorded (its host side pinned) */
static cudaError_t async_copy(cudaStream_t st, const void *d, const void *s, const char *call, const void *pc,
                              std::function<cudaError_t()> op) {
  int r = capture_route(st, call, pc);
  if (r < 0) return g_last_error;
  if (r == 0) return op();
  if (pageable(d) || pageable(s))
    return capture_forbids(std::string(call) + " of pageable host memory", pc, cudaErrorStreamCaptureUnsupported,
                           false, st);
  record(st, [op] { op(); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
  if (cudaError_t e = sync_call("cudaMemcpy", RA)) return e;
  return do_memcpy(d, s, n, k, RA);
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
  const void *pc = RA;
  return async_copy(st, d, s, "cudaMemcpyAsync", pc, [=] { return do_memcpy(d, s, n, k, pc); });
}
static cudaError_t do_memcpy2d(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                               cudaMemcpyKind k, const void *pc) {
  if (w > dp || w > sp) return fail(cudaErrorInvalidValue);
  for (size_t r = 0; r < h; r++) {
    cudaError_t e = do_memcpy((char *)d + r * dp, (const char *)s + r * sp, w, k, pc);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, cudaMemcpyKind k) {
  if (cudaError_t e = sync_call("cudaMemcpy2D", RA)) return e;
  return do_memcpy2d(d, dp, s, sp, w, h, k, RA);
}
cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                              cudaMemcpyKind k, cudaStream_t st) {
  const void *pc = RA;
  return async_copy(st, d, s, "cudaMemcpy2DAsync", pc, [=] { return do_memcpy2d(d, dp, s, sp, w, h, k, pc); });
}
static cudaError_t do_memset(void *p, int v, size_t n, const void *pc) {
  init();
  if (n == 0) return cudaSuccess;
  Alloc *al;
  if (!check_range("cudaMemset", p, n, &al, pc)) return fail(cudaErrorInvalidValue);
  device_memory_open();
  memset(p, v, n);
  device_memory_close();
  mark_written(al, (uintptr_t)p, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
  if (cudaError_t e = sync_call("cudaMemset", RA)) return e;
  return do_memset(p, v, n, RA);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
  const void *pc = RA;
  int r = capture_route(st, "cudaMemsetAsync", pc);
  if (r < 0) return g_last_error;
  if (r == 0) return do_memset(p, v, n, pc);
  Alloc *al;
  if (n && !check_range("cudaMemsetAsync", p, n, &al, pc)) return fail(cudaErrorInvalidValue);
  record(st, [=] { do_memset(p, v, n, pc); });
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
  init();
  if (f) *f = g_dev_bytes < g_mem_total ? g_mem_total - g_dev_bytes : 0;
  if (t) *t = g_mem_total;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p) {
  if (!a) return fail(cudaErrorInvalidValue);
  Alloc *al = in_arena(p) ? find_alloc((uintptr_t)p) : nullptr;
  a->device = 0;
  a->type = !al ? cudaMemoryTypeUnregistered : al->host ? cudaMemoryTypeHost : cudaMemoryTypeDevice;
  a->devicePointer = al ? (void *)p : nullptr;
  a->hostPointer = !al || al->host ? (void *)p : nullptr;
  return cudaSuccess;
}

/* ---- the device: H100/H200-like, sm_90 ---- */
static void fill_props(cudaDeviceProp *p) {
  init();
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "mforge CUDA emulator (H100-like, sm_90)");
  p->totalGlobalMem = g_mem_total;
  p->sharedMemPerBlock = kSmemDefaultDyn;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->memPitch = 2147483647;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->clockRate = 1980000;
  p->totalConstMem = 65536;
  p->major = 9, p->minor = 0;
  p->textureAlignment = 512, p->texturePitchAlignment = 32;
  p->deviceOverlap = 1, p->multiProcessorCount = 132, p->canMapHostMemory = 1;
  p->concurrentKernels = 1, p->ECCEnabled = 1, p->asyncEngineCount = 3, p->unifiedAddressing = 1;
  p->memoryClockRate = 2619000, p->memoryBusWidth = 5120, p->l2CacheSize = 50 * 1024 * 1024;
  p->persistingL2CacheMaxSize = 32 * 1024 * 1024, p->maxThreadsPerMultiProcessor = 2048;
  p->streamPrioritiesSupported = 1, p->globalL1CacheSupported = 1, p->localL1CacheSupported = 1;
  p->sharedMemPerMultiprocessor = 228 * 1024, p->regsPerMultiprocessor = 65536;
  p->managedMemory = 1, p->concurrentManagedAccess = 1, p->cooperativeLaunch = 1;
  p->sharedMemPerBlockOptin = kSmemLimit, p->reservedSharedMemPerBlock = 1024;
  p->maxBlocksPerMultiProcessor = 32, p->accessPolicyMaxWindowSize = 134213632;
}
cudaError_t cudaGetDeviceCount(int *n) {
  if (!n) return fail(cudaErrorInvalidValue);
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) {
  if (d) *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (!p || d != 0) return fail(d != 0 ? cudaErrorInvalidDevice : cudaErrorInvalidValue);
  fill_props(p);
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
  if (!v || d != 0) return fail(d != 0 ? cudaErrorInvalidDevice : cudaErrorInvalidValue);
  cudaDeviceProp p;
  fill_props(&p);
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: case cudaDevAttrMaxBlockDimY: case cudaDevAttrMaxBlockDimZ:
      *v = p.maxThreadsDim[a - cudaDevAttrMaxBlockDimX]; break;
    case cudaDevAttrMaxGridDimX: case cudaDevAttrMaxGridDimY: case cudaDevAttrMaxGridDimZ:
      *v = p.maxGridSize[a - cudaDevAttrMaxGridDimX]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrTotalConstantMemory: *v = (int)p.totalConstMem; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *v = p.regsPerBlock; break;
    case cudaDevAttrClockRate: *v = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrMemoryClockRate: *v = p.memoryClockRate; break;
    case cudaDevAttrGlobalMemoryBusWidth: *v = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *v = p.regsPerMultiprocessor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *v = p.maxBlocksPerMultiProcessor; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return sync_call("cudaDeviceSynchronize", RA); }
cudaError_t cudaDeviceReset() {
  g_last_error = cudaSuccess;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
  if (v) *v = 12080;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  if (v) *v = 12080;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }

static const struct { cudaError_t e; const char *name, *text; } kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidSymbol, "cudaErrorInvalidSymbol", "invalid device symbol"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorAssert, "cudaErrorAssert", "device-side assert triggered"},
    {cudaErrorMisalignedAddress, "cudaErrorMisalignedAddress", "misaligned address"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureUnmatched, "cudaErrorStreamCaptureUnmatched", "the capture was not initiated in this stream"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit", "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorStreamCaptureWrongThread, "cudaErrorStreamCaptureWrongThread", "attempt to terminate a thread-local capture sequence from another thread"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};
const char *cudaGetErrorString(cudaError_t e) {
  for (auto &k : kErrors)
    if (k.e == e) return k.text;
  return "unrecognized error code";
}
const char *cudaGetErrorName(cudaError_t e) {
  for (auto &k : kErrors)
    if (k.e == e) return k.name;
  return "cudaErrorUnknown";
}

/* ---- streams and events: work is done when the call returns, so order always holds ---- */
struct CUevent_st { int live; unsigned flags; bool recorded; double t; };
static bool stream_ok(cudaStream_t s) { return !s || s == cudaStreamLegacy || s == cudaStreamPerThread || s->live; }
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int) {
  if (!s) return fail(cudaErrorInvalidValue);
  *s = new CUstream_st{1, cudaStreamCaptureStatusNone, cudaStreamCaptureModeGlobal, {}};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int f, int) { return cudaStreamCreateWithFlags(s, f); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s || !stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
  if (is_capturing(s)) return fail(cudaErrorStreamCaptureUnsupported);
  s->live = 0; /* kept allocated: a later use is recognised */
  return cudaSuccess;
}
/* waiting for a stream during a capture: on the capturing stream itself in every mode */
static cudaError_t stream_wait(cudaStream_t s, const char *call, const void *pc) {
  if (!stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
  if (g_capturing.empty()) return cudaSuccess;
  if (is_capturing(s)) return capture_forbids(call, pc, cudaErrorStreamCaptureUnsupported, false, s);
  return legacy_stream(s) ? capture_forbids(call, pc, cudaErrorStreamCaptureImplicit, false) : cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return stream_wait(s, "cudaStreamSynchronize", RA); }
cudaError_t cudaStreamQuery(cudaStream_t s) { return stream_wait(s, "cudaStreamQuery", RA); }

/* ---- stream capture and graphs: a graph is the capture's records, replayed in order ---- */
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  init();
  if (pseudo_stream(s)) return fail(cudaErrorStreamCaptureUnsupported); /* as on a GPU */
  if (!s->live || (unsigned)mode > cudaStreamCaptureModeRelaxed) return fail(cudaErrorInvalidValue);
  if (s->capture != cudaStreamCaptureStatusNone) return fail(cudaErrorIllegalState);
  s->capture = cudaStreamCaptureStatusActive;
  s->mode = mode;
  s->work.clear();
  g_capturing.push_back(s);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  *graph = nullptr;
  if (pseudo_stream(s) || !s->live) return fail(cudaErrorInvalidResourceHandle);
  if (s->capture == cudaStreamCaptureStatusNone) return fail(cudaErrorIllegalState);
  bool valid = s->capture == cudaStreamCaptureStatusActive;
  g_capturing.erase(std::find(g_capturing.begin(), g_capturing.end(), s));
  s->capture = cudaStreamCaptureStatusNone;
  Work w;
  w.swap(s->work);
  if (!valid) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(w)};
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
  if (!status || !stream_ok(s)) return fail(!status ? cudaErrorInvalidValue : cudaErrorInvalidResourceHandle);
  *status = pseudo_stream(s) ? cudaStreamCaptureStatusNone : s->capture;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->work}; /* a copy: the graph may be destroyed now */
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long f) {
  return cudaGraphInstantiate(exec, graph, f);
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec || !stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
  int r = capture_route(s, "cudaGraphLaunch", RA);
  if (r < 0) return g_last_error;
  if (r > 0) { /* into another capture: its records, as a child graph would run */
    for (const auto &f : exec->work) record(s, f);
    return cudaSuccess;
  }
  for (const auto &f : exec->work) f(); /* launches report their own errors */
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return fail(cudaErrorInvalidValue);
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  return stream_ok(s) && e && e->live ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int f) {
  if (!e) return fail(cudaErrorInvalidValue);
  *e = new CUevent_st{1, f, false, 0};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e || !e->live) return fail(cudaErrorInvalidResourceHandle);
  e->live = 0;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e || !e->live || !stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  e->t = tv.tv_sec * 1e3 + tv.tv_usec * 1e-3;
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e || !e->live) return fail(cudaErrorInvalidResourceHandle);
  return sync_call("cudaEventSynchronize", RA);
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e && e->live ? cudaSuccess : fail(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms || !a || !b || !a->live || !b->live || (a->flags & cudaEventDisableTiming) ||
      (b->flags & cudaEventDisableTiming))
    return fail(cudaErrorInvalidResourceHandle);
  if (!a->recorded || !b->recorded) return fail(cudaErrorNotReady);
  *ms = (float)(b->t - a->t);
  return cudaSuccess;
}

/* ---- kernel attributes ---- */
cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v) {
  if (!fn) return fail(cudaErrorInvalidDeviceFunction);
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (v < 0 || (size_t)v > kSmemLimit) return fail(cudaErrorInvalidValue);
    g_dyn_limit[fn] = (size_t)v;
  } else if (a != cudaFuncAttributePreferredSharedMemoryCarveout) {
    return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *fn) {
  if (!a || !fn) return fail(cudaErrorInvalidValue);
  memset(a, 0, sizeof *a);
  a->maxThreadsPerBlock = 1024;
  a->numRegs = 32;
  a->ptxVersion = a->binaryVersion = 90;
  a->maxDynamicSharedSizeBytes = (int)max_dyn_smem(fn);
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *fn, int block, size_t smem) {
  if (!n || !fn || block <= 0 || block > 1024) return fail(cudaErrorInvalidValue);
  int by_threads = 2048 / block, by_smem = (int)((228 * 1024) / (smem + 1024));
  *n = std::max(0, std::min(32, std::min(by_threads, by_smem)));
  return cudaSuccess;
}
