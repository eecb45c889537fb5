/* CUDA emulator, access checking. Emulated kernels (and tests) are compiled with
 * -fsanitize=thread, which makes the compiler call __tsan_readN/__tsan_writeN before each
 * memory access; instead of ThreadSanitizer's runtime, these hooks are ours (the approach of
 * the Linux kernel's KCSAN). An access is classified by address:
 *   shared memory  - bounds (the block's __shared__ variables, with red zones between them),
 *                    alignment, data races, reads of never-written bytes;
 *   device memory  - bounds (guard zones around every cudaMalloc), use after cudaFree,
 *                    alignment, races within a block and write-write races between blocks,
 *                    reads of never-initialized bytes, and host code touching it;
 *   fiber stacks   - fine;
 *   anything else  - from a kernel, must be a global of a loaded object (a __device__ or
 *                    __constant__ variable); heap memory means a host pointer reached a kernel.
 * Race rule (emu_internal.h, Shadow): two accesses to a byte by different threads of a block,
 * at least one a plain write (atomics do not race with atomics, nor with plain reads: CAS
 * loops start with one), with no __syncthreads between them - and, for two lanes of a warp,
 * no __syncwarp either. Plain writes by two blocks of one launch race too.
 * Atomics are implemented here too: they are checked as atomic accesses, then done plainly
 * (one OS thread runs everything). */
#include "kernels/cuda/emu/emu_internal.h"

namespace mf_emu {

namespace {

enum { RD = 0, WR = 1, AT = 2 };
const char *const kVerb[] = {"reads", "writes", "atomically updates"};

inline uint32_t pc_off(const void *pc) {
  uintptr_t d = (uintptr_t)pc - g_text_base;
  return d < 0xffffffffu ? (uint32_t)d : 0;
}

std::string access_line(unsigned size, int kind, const void *pc) {
  return "thread " + thread_str(g_cur->tid) + " " + kVerb[kind] + " " + std::to_string(size) +
         (size == 1 ? " byte" : " bytes") + " at " + where(pc);
}

std::string memory_line(bool shared, uintptr_t a, const Alloc *al) {
  if (shared) return "memory: shared, " + describe_shared(a - g_smem_lo);
  char b[64];
  snprintf(b, sizeof b, ", byte %zu", (size_t)(a - al->base));
  return "memory: " + describe_device(al) + b;
}

void check_bytes(uintptr_t a, unsigned size, int kind, const void *pc, Shadow *sh, bool shared,
                 const Alloc *al) {
  const Fiber *f = g_cur;
  const unsigned tid = f->tid, warp = f->warp;
  const uint32_t cur = g_warp_iv[warp], base = g_base, blk = g_blk;
  const bool race_on = g_checks & CHECK_RACE, init_on = g_checks & CHECK_INIT;
  bool raced = false, uninit = false;
  auto unordered = [&](unsigned t, uint32_t iv) {
    return iv >= base && t != tid && ((t >> 5) != warp || iv == cur);
  };
  auto atomic_conflict = [&](const Shadow &s) {
    if (s.a_iv < base) return false;
    unsigned at = s.a_tid & 0x3fffu;
    if ((s.a_tid & 0x4000u) || (at >> 5) != warp) return true;
    return s.a_iv == cur && ((s.a_tid & 0x8000u) || at != tid);
  };
  auto race = [&](const char *what, const std::string &other) {
    raced = true;
    report(what, pc,
           access_line(size, kind, pc) + "\n    " + other +
               "\n    nothing orders the two accesses (no __syncthreads between them, nor "
               "__syncwarp for lanes of one warp)\n    " + memory_line(shared, a, al));
  };
  for (unsigned i = 0; i < size; i++) {
    Shadow &s = sh[i];
    if (race_on && !raced) {
      if (unordered(s.w_tid, s.w_iv))
        race(kind == RD   ? "data race (read after write)"
             : kind == WR ? "data race (write after write)"
                          : "data race (atomic update of a location written plainly)",
             "thread " + thread_str(s.w_tid) + " wrote it at " + where_off(s.w_pc));
      if (!raced && kind == WR) {
        if (unordered(s.r_tid, s.r_iv))
          race("data race (write after read)", "thread " + thread_str(s.r_tid) + " read it");
        else if (unordered(s.r2_tid, s.r2_iv))
          race("data race (write after read)", "thread " + thread_str(s.r2_tid) + " read it");
      }
      /* plain reads next to atomics are allowed: CAS loops start with one */
      if (!raced && kind == WR && atomic_conflict(s))
        race("data race (plain write to a location updated atomically)",
             "thread " + thread_str(s.a_tid & 0x3ffu) + " updated it with an atomic");
      if (!raced && kind == WR && !shared && s.w_blk >= g_first_blk && s.w_blk != blk) {
        raced = true;
        report("data race between blocks (write after write)", pc,
               access_line(size, kind, pc) + "\n    another block of this launch wrote it at " +
                   where_off(s.w_pc) +
                   "\n    blocks run concurrently on a GPU: the result depends on their order\n    " +
                   memory_line(shared, a, al));
      }
    }
    if (kind != WR && init_on && !uninit && (shared ? s.w_blk != blk : s.w_blk == 0)) {
      uninit = true;
      report(shared ? "read of uninitialized shared memory" : "read of uninitialized device memory",
             pc, access_line(size, kind, pc) + ", which nothing has written" +
                     (shared ? " in this block" : " since cudaMalloc") + "\n    " +
                     memory_line(shared, a, al));
    }
    if (kind == RD) {
      if (s.r_iv < base) {
        s.r_tid = (uint16_t)tid;
        s.r_iv = cur;
        s.r2_iv = 0;
      } else if (s.r_tid == tid) {
        s.r_iv = cur;
      } else if (s.r2_iv < base || s.r2_tid == tid || (s.r2_tid >> 5) == (s.r_tid >> 5)) {
        s.r2_tid = (uint16_t)tid;
        s.r2_iv = cur;
      }
    } else if (kind == WR) {
      s.w_tid = (uint16_t)tid;
      s.w_iv = cur;
      s.w_blk = blk;
      s.w_pc = pc_off(pc);
      s.r_iv = s.r2_iv = s.a_iv = 0;
    } else {
      if (shared) s.w_blk = blk;
      else if (s.w_blk == 0) s.w_blk = 1;
      if (s.a_iv < base) {
        s.a_tid = (uint16_t)tid;
      } else {
        unsigned fl = s.a_tid & 0xc000u, at = s.a_tid & 0x3fffu;
        if (at != tid) fl |= 0x8000u;
        if ((at >> 5) != warp) fl |= 0x4000u;
        s.a_tid = (uint16_t)(fl | tid);
      }
      s.a_iv = cur;
    }
  }
}

bool misaligned(uintptr_t a, unsigned size, int kind, bool aligned, const void *pc, bool shared,
                const Alloc *al) {
  if (!aligned || (size & (size - 1)) || size > 16 || !(a & (size - 1))) return false;
  if (g_checks & CHECK_BOUNDS)
    report("misaligned access", pc,
           access_line(size, kind, pc) + " at an address that is not a multiple of " +
               std::to_string(size) + " (a GPU faults: cudaErrorMisalignedAddress)\n    " +
               memory_line(shared, a, al));
  return true;
}

void shared_access(uintptr_t a, unsigned size, int kind, const void *pc, bool aligned) {
  size_t off = a - g_smem_lo;
  for (unsigned i = 0; i < size; i++) {
    if (off + i >= kSmemBuffer || !g_smem_valid[off + i]) {
      if (g_checks & CHECK_BOUNDS)
        report("out-of-bounds shared memory access", pc,
               access_line(size, kind, pc) + "\n    memory: shared, " + describe_shared(off + i));
      return;
    }
  }
  if (misaligned(a, size, kind, aligned, pc, true, nullptr)) return;
  check_bytes(a, size, kind, pc, g_smem_shadow + off, true, nullptr);
}

void device_access(uintptr_t a, unsigned size, int kind, const void *pc, bool aligned) {
  Alloc *al = find_alloc(a);
  if (!g_in_kernel) {
    if ((g_checks & CHECK_HOST) && al && !al->host)
      report("host code dereferences device memory", pc,
             std::string("host code ") + kVerb[kind] + " " + std::to_string(size) + " bytes at " +
                 where(pc) + " (a GPU pointer: use cudaMemcpy)\n    memory: " + describe_device(al));
    return;
  }
  if (!(g_checks & CHECK_BOUNDS)) {
    if (!al || al->freed || a < al->base || a + size > al->base + al->size) return;
  } else if (!al) {
    report("out-of-bounds device memory access", pc,
           access_line(size, kind, pc) + "\n    memory: device address not in any allocation");
    return;
  } else if (al->freed) {
    report("use of freed device memory", pc,
           access_line(size, kind, pc) + "\n    memory: " + describe_device(al) + ", already freed");
    return;
  } else if (a < al->base || a + size > al->base + al->size) {
    char b[96];
    if (a < al->base) snprintf(b, sizeof b, "%zu bytes before the start of ", (size_t)(al->base - a));
    else snprintf(b, sizeof b, "%zu bytes past the end of ", (size_t)(a + size - al->base - al->size));
    report("out-of-bounds device memory access", pc,
           access_line(size, kind, pc) + "\n    memory: " + b + describe_device(al));
    return;
  }
  if (misaligned(a, size, kind, aligned, pc, false, al)) return;
  if (al->shadow) check_bytes(a, size, kind, pc, al->shadow + (a - al->base), false, al);
}

void other_access(uintptr_t a, unsigned size, int kind, const void *pc) {
  if (!(g_checks & CHECK_HOST) || in_image(a)) return;
  report("kernel accesses host memory", pc,
         access_line(size, kind, pc) +
             "\n    memory: not from cudaMalloc, not shared, not a __device__ variable, not the "
             "thread's stack (a host pointer passed to a kernel?)");
}

inline void access(const void *p, unsigned size, int kind, const void *pc, bool aligned) {
  uintptr_t a = (uintptr_t)p;
  if (a - g_smem_lo < g_smem_span) {
    if (g_in_kernel) shared_access(a, size, kind, pc, aligned);
    return;
  }
  if (a - g_arena_lo < g_arena_span) {
    device_access(a, size, kind, pc, aligned);
    return;
  }
  if (!g_in_kernel || a - g_stack_lo < g_stack_span) return;
  other_access(a, size, kind, pc);
}

template <class T, class F> T rmw(T *p, F f, const void *pc) {
  access(p, sizeof(T), AT, pc, true);
  T old;
  memcpy(&old, p, sizeof(T));
  T nv = f(old);
  memcpy(p, &nv, sizeof(T));
  return old;
}

}  // namespace

}  // namespace mf_emu

using mf_emu::rmw;
#define RA __builtin_return_address(0)

/* ---- the compiler's instrumentation calls ---- */
#define MF_EMU_HOOKS(N)                                                                          \
  extern "C" void __tsan_read##N(void *p) { mf_emu::access(p, N, mf_emu::RD, RA, true); }         \
  extern "C" void __tsan_write##N(void *p) { mf_emu::access(p, N, mf_emu::WR, RA, true); }        \
  extern "C" void __tsan_unaligned_read##N(void *p) { mf_emu::access(p, N, mf_emu::RD, RA, false); } \
  extern "C" void __tsan_unaligned_write##N(void *p) { mf_emu::access(p, N, mf_emu::WR, RA, false); } \
  extern "C" void __tsan_volatile_read##N(void *p) { mf_emu::access(p, N, mf_emu::RD, RA, true); } \
  extern "C" void __tsan_volatile_write##N(void *p) { mf_emu::access(p, N, mf_emu::WR, RA, true); } \
  extern "C" void __tsan_unaligned_volatile_read##N(void *p) { mf_emu::access(p, N, mf_emu::RD, RA, false); } \
  extern "C" void __tsan_unaligned_volatile_write##N(void *p) { mf_emu::access(p, N, mf_emu::WR, RA, false); }
MF_EMU_HOOKS(1)
MF_EMU_HOOKS(2)
MF_EMU_HOOKS(4)
MF_EMU_HOOKS(8)
MF_EMU_HOOKS(16)
extern "C" void __tsan_read_range(void *p, unsigned long n) {
  for (unsigned long i = 0; i < n; i += 16)
    mf_emu::access((char *)p + i, (unsigned)std::min(16ul, n - i), mf_emu::RD, RA, false);
}
extern "C" void __tsan_write_range(void *p, unsigned long n) {
  for (unsigned long i = 0; i < n; i += 16)
    mf_emu::access((char *)p + i, (unsigned)std::min(16ul, n - i), mf_emu::WR, RA, false);
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void **, void *) {}
extern "C" void __tsan_vptr_read(void **) {}
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) {}

/* __atomic builtins in instrumented code (e.g. libstdc++ inlines in tests) */
#define MF_EMU_TSAN_ATOMIC(N, T)                                                                 \
  extern "C" T __tsan_atomic##N##_load(const volatile T *a, int) {                               \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                 \
  }                                                                                              \
  extern "C" void __tsan_atomic##N##_store(volatile T *a, T v, int) {                            \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                    \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_exchange(volatile T *a, T v, int) {                            \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_add(volatile T *a, T v, int) {                           \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_sub(volatile T *a, T v, int) {                           \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_and(volatile T *a, T v, int) {                           \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_or(volatile T *a, T v, int) {                            \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_xor(volatile T *a, T v, int) {                           \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_fetch_nand(volatile T *a, T v, int) {                          \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                              \
  extern "C" int __tsan_atomic##N##_compare_exchange_strong(volatile T *a, T *c, T v, int, int) { \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);      \
  }                                                                                              \
  extern "C" int __tsan_atomic##N##_compare_exchange_weak(volatile T *a, T *c, T v, int, int) {   \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
  }                                                                                              \
  extern "C" T __tsan_atomic##N##_compare_exchange_val(volatile T *a, T c, T v, int, int) {       \
    mf_emu::access((const void *)a, sizeof(T), mf_emu::AT, RA, true);                            \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);            \
    return c;                                                                                    \
  }
MF_EMU_TSAN_ATOMIC(8, unsigned char)
MF_EMU_TSAN_ATOMIC(16, unsigned short)
MF_EMU_TSAN_ATOMIC(32, unsigned int)
MF_EMU_TSAN_ATOMIC(64, unsigned long long)

/* ---- CUDA atomics ---- */
#define MF_EMU_ATOMIC(name, T, expr) \
  T name(T *p, T v) { return rmw(p, [&](T o) -> T { return (expr); }, RA); }
MF_EMU_ATOMIC(atomicAdd, int, (int)((unsigned)o + (unsigned)v))
MF_EMU_ATOMIC(atomicAdd, unsigned int, o + v)
MF_EMU_ATOMIC(atomicAdd, unsigned long long, o + v)
MF_EMU_ATOMIC(atomicAdd, float, o + v)
MF_EMU_ATOMIC(atomicAdd, double, o + v)
MF_EMU_ATOMIC(atomicAdd, __half, __hadd(o, v))
MF_EMU_ATOMIC(atomicAdd, __nv_bfloat16, __hadd(o, v))
MF_EMU_ATOMIC(atomicAdd, __half2, __hadd2(o, v))
MF_EMU_ATOMIC(atomicAdd, __nv_bfloat162, __hadd2(o, v))
MF_EMU_ATOMIC(atomicAdd, float2, make_float2(o.x + v.x, o.y + v.y))
MF_EMU_ATOMIC(atomicAdd, float4, make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w))
MF_EMU_ATOMIC(atomicSub, int, (int)((unsigned)o - (unsigned)v))
MF_EMU_ATOMIC(atomicSub, unsigned int, o - v)
MF_EMU_ATOMIC(atomicExch, int, v)
MF_EMU_ATOMIC(atomicExch, unsigned int, v)
MF_EMU_ATOMIC(atomicExch, unsigned long long, v)
MF_EMU_ATOMIC(atomicExch, float, v)
MF_EMU_ATOMIC(atomicMin, int, std::min(o, v))
MF_EMU_ATOMIC(atomicMin, unsigned int, std::min(o, v))
MF_EMU_ATOMIC(atomicMin, long long, std::min(o, v))
MF_EMU_ATOMIC(atomicMin, unsigned long long, std::min(o, v))
MF_EMU_ATOMIC(atomicMax, int, std::max(o, v))
MF_EMU_ATOMIC(atomicMax, unsigned int, std::max(o, v))
MF_EMU_ATOMIC(atomicMax, long long, std::max(o, v))
MF_EMU_ATOMIC(atomicMax, unsigned long long, std::max(o, v))
MF_EMU_ATOMIC(atomicInc, unsigned int, o >= v ? 0u : o + 1u)
MF_EMU_ATOMIC(atomicDec, unsigned int, (o == 0u || o > v) ? v : o - 1u)
MF_EMU_ATOMIC(atomicAnd, int, o & v)
MF_EMU_ATOMIC(atomicAnd, unsigned int, o & v)
MF_EMU_ATOMIC(atomicAnd, unsigned long long, o & v)
MF_EMU_ATOMIC(atomicOr, int, o | v)
MF_EMU_ATOMIC(atomicOr, unsigned int, o | v)
MF_EMU_ATOMIC(atomicOr, unsigned long long, o | v)
MF_EMU_ATOMIC(atomicXor, int, o ^ v)
MF_EMU_ATOMIC(atomicXor, unsigned int, o ^ v)
MF_EMU_ATOMIC(atomicXor, unsigned long long, o ^ v)
#define MF_EMU_CAS(T) \
  T atomicCAS(T *p, T c, T v) { return rmw(p, [&](T o) -> T { return o == c ? v : o; }, RA); }
MF_EMU_CAS(int)
MF_EMU_CAS(unsigned int)
MF_EMU_CAS(unsigned long long)
MF_EMU_CAS(unsigned short)
