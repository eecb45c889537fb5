/* bf16 and half types of the CUDA emulator (__nv_bfloat16, __half and their x2 pairs) with
 * the hardware's conversions, bit for bit: float -> bf16/half round to nearest even, NaN to
 * the canonical 0x7FFF, overflow to inf, subnormals kept (no flush). Arithmetic is done in
 * float and rounded once, which is exact for + - * / (24 >= 2p+2 bits for p = 8 and 11);
 * fma goes through double. Mirrors cuda_bf16.h / cuda_fp16.h closely enough that kernel code
 * that compiles with nvcc compiles here (including its ambiguities, e.g. bf16 + float). */
#ifndef MF_CUDA_EMU_FP16_H
#define MF_CUDA_EMU_FP16_H

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mf_emu {
inline uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

/* float -> bf16 bits. mode: 0 nearest-even, 1 toward zero, 2 down, 3 up */
inline uint16_t f2bf_bits(float f, int mode = 0) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  if (mode == 0) return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  uint16_t t = (uint16_t)(u >> 16);
  bool inexact = (u & 0xffffu) != 0, neg = (u >> 31) != 0;
  if (inexact && ((mode == 2 && neg) || (mode == 3 && !neg))) t++;
  return t;
}
inline float bf_bits2f(uint16_t b) { return u2f((uint32_t)b << 16); }

/* float -> half bits, round to nearest even (or toward zero with rz) */
inline uint16_t f2h_bits(float f, bool rz = false) {
  uint32_t u = f2u(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fff;
  if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
  if (rz) {
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7bffu); /* >= 65536: max finite */
  } else if (a >= 0x477ff000u) {
    return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  }
  if (a >= 0x38800000u) { /* normal half */
    uint32_t r = (a >> 13) - (112u << 10), rem = a & 0x1fffu;
    if (!rz) r += (rem > 0x1000u) || (rem == 0x1000u && (r & 1u));
    return (uint16_t)(sign | r);
  }
  if (a <= 0x33000000u && !rz) return (uint16_t)sign; /* <= 2^-25 (a tie with 0) */
  if (a < 0x33800000u && rz) return (uint16_t)sign;   /* < 2^-24 */
  uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
  uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (!rz) r += (rem > half) || (rem == half && (r & 1u));
  return (uint16_t)(sign | r);
}
inline float h_bits2f(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return u2f(sign | 0x7f800000u | (m << 13));
  if (e != 0) return u2f(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return u2f(sign);
  float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
  return sign ? -v : v;
}
/* double -> float rounded to odd, so that a second rounding to bf16/half is exact */
inline float d2f_odd(double d) {
  if (std::isnan(d) || std::isinf(d)) return (float)d;
  float f = (float)d;
  if (std::fabs((double)f) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  if ((double)f != d) f = u2f(f2u(f) | 1u);
  return f;
}
}  // namespace mf_emu

struct __nv_bfloat16_raw { unsigned short x; };
struct __half_raw { unsigned short x; };
struct __nv_bfloat16;
struct __half;
inline float __bfloat162float(__nv_bfloat16 a);
inline float __half2float(__half a);

#define MF_EMU_FP16_TYPE(T, RAW, TOBITS, TOF)                                                \
  struct alignas(2) T {                                                                    \
    unsigned short __x;                                                                    \
    T() = default;                                                                         \
    constexpr T(const RAW &r) : __x(r.x) {}                                                \
    T(float f) : __x(TOBITS(f)) {}                                                         \
    T(double d) : __x(TOBITS(mf_emu::d2f_odd(d))) {}                                       \
    T(short v) : __x(TOBITS((float)v)) {}                                                  \
    T(unsigned short v) : __x(TOBITS((float)v)) {}                                         \
    T(int v) : __x(TOBITS((float)v)) {}                                                    \
    T(unsigned int v) : __x(TOBITS((float)v)) {}                                           \
    T(long v) : __x(TOBITS(mf_emu::d2f_odd((double)v))) {}                                 \
    T(unsigned long v) : __x(TOBITS(mf_emu::d2f_odd((double)v))) {}                        \
    T(long long v) : __x(TOBITS(mf_emu::d2f_odd((double)v))) {}                           \
    T(unsigned long long v) : __x(TOBITS(mf_emu::d2f_odd((double)v))) {}                  \
    T &operator=(const RAW &r) { __x = r.x; return *this; }                                \
    T &operator=(float f) { __x = TOBITS(f); return *this; }                               \
    T &operator=(double d) { __x = TOBITS(mf_emu::d2f_odd(d)); return *this; }            \
    operator RAW() const { RAW r; r.x = __x; return r; }                                   \
    operator float() const { return TOF(__x); }                                            \
    operator signed char() const { return (signed char)TOF(__x); }                         \
    operator unsigned char() const { return (unsigned char)TOF(__x); }                     \
    operator char() const { return (char)TOF(__x); }                                       \
    operator short() const { return (short)TOF(__x); }                                     \
    operator unsigned short() const { return (unsigned short)TOF(__x); }                   \
    operator int() const { return (int)TOF(__x); }                                         \
    operator unsigned int() const { return (unsigned int)TOF(__x); }                       \
    operator long() const { return (long)TOF(__x); }                                       \
    operator unsigned long() const { return (unsigned long)TOF(__x); }                     \
    operator long long() const { return (long long)TOF(__x); }                             \
    operator unsigned long long() const { return (unsigned long long)TOF(__x); }           \
    explicit operator bool() const { return (__x & 0x7fffu) != 0; }                        \
  };

#define MF_EMU_BF_TOBITS(f) mf_emu::f2bf_bits(f)
#define MF_EMU_H_TOBITS(f) mf_emu::f2h_bits(f)
MF_EMU_FP16_TYPE(__nv_bfloat16, __nv_bfloat16_raw, MF_EMU_BF_TOBITS, mf_emu::bf_bits2f)
MF_EMU_FP16_TYPE(__half, __half_raw, MF_EMU_H_TOBITS, mf_emu::h_bits2f)
#undef MF_EMU_FP16_TYPE

typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  __nv_bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) : x(a), y(b) {}
};
struct alignas(4) __half2 {
  __half x, y;
  __half2() = default;
  __half2(__half a, __half b) : x(a), y(b) {}
};
typedef __nv_bfloat162 nv_bfloat162;
typedef __half2 half2;

/* ---- conversions ---- */
inline float __bfloat162float(__nv_bfloat16 a) { return mf_emu::bf_bits2f(a.__x); }
inline float __half2float(__half a) { return mf_emu::h_bits2f(a.__x); }
inline __nv_bfloat16 mf_emu_bf(uint16_t b) { __nv_bfloat16_raw r{b}; return __nv_bfloat16(r); }
inline __half mf_emu_h(uint16_t b) { __half_raw r{b}; return __half(r); }
inline __nv_bfloat16 __float2bfloat16(float f) { return mf_emu_bf(mf_emu::f2bf_bits(f)); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return mf_emu_bf(mf_emu::f2bf_bits(f)); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) { return mf_emu_bf(mf_emu::f2bf_bits(f, 1)); }
inline __nv_bfloat16 __float2bfloat16_rd(float f) { return mf_emu_bf(mf_emu::f2bf_bits(f, 2)); }
inline __nv_bfloat16 __float2bfloat16_ru(float f) { return mf_emu_bf(mf_emu::f2bf_bits(f, 3)); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline __half __float2half(float f) { return mf_emu_h(mf_emu::f2h_bits(f)); }
inline __half __float2half_rn(float f) { return mf_emu_h(mf_emu::f2h_bits(f)); }
inline __half __float2half_rz(float f) { return mf_emu_h(mf_emu::f2h_bits(f, true)); }
inline __half __double2half(double d) { return __half(d); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return mf_emu_bf(b); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 a) { return a.__x; }
inline __nv_bfloat16 __short_as_bfloat16(short b) { return mf_emu_bf((uint16_t)b); }
inline short __bfloat16_as_short(__nv_bfloat16 a) { return (short)a.__x; }
inline __half __ushort_as_half(unsigned short b) { return mf_emu_h(b); }
inline unsigned short __half_as_ushort(__half a) { return a.__x; }
inline __half __short_as_half(short b) { return mf_emu_h((uint16_t)b); }
inline short __half_as_short(__half a) { return (short)a.__x; }
inline __nv_bfloat16 __int2bfloat16_rn(int v) { return __nv_bfloat16(v); }
inline __half __int2half_rn(int v) { return __half(v); }
inline int __bfloat162int_rz(__nv_bfloat16 a) { return (int)__bfloat162float(a); }
inline int __half2int_rz(__half a) { return (int)__half2float(a); }
inline int __bfloat162int_rn(__nv_bfloat16 a) { return (int)std::nearbyint(__bfloat162float(a)); }
inline int __half2int_rn(__half a) { return (int)std::nearbyint(__half2float(a)); }
inline __nv_bfloat16 __half2bfloat16(__half a) { return __float2bfloat16(__half2float(a)); }

/* ---- pairs ---- */
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16(a), __float2bfloat16(b)}; }
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return {__float2bfloat16(a), __float2bfloat16(a)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half(a), __float2half(b)}; }
inline __half2 __float2half2_rn(float a) { return {__float2half(a), __float2half(a)}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline __half2 __halves2half2(__half a, __half b) { return {a, b}; }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return {a, a}; }
inline __half2 __half2half2(__half a) { return {a, a}; }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
inline __half __low2half(__half2 a) { return a.x; }
inline __half __high2half(__half2 a) { return a.y; }
inline float __low2float(__nv_bfloat162 a) { return __bfloat162float(a.x); }
inline float __high2float(__nv_bfloat162 a) { return __bfloat162float(a.y); }
inline float __low2float(__half2 a) { return __half2float(a.x); }
inline float __high2float(__half2 a) { return __half2float(a.y); }

/* ---- arithmetic: computed in float (double for fma), rounded once ---- */
#define MF_EMU_FP16_OPS(T, T2, TOF, FROMF)                                                         \
  inline T __hadd(T a, T b) { return FROMF(TOF(a) + TOF(b)); }                                     \
  inline T __hsub(T a, T b) { return FROMF(TOF(a) - TOF(b)); }                                     \
  inline T __hmul(T a, T b) { return FROMF(TOF(a) * TOF(b)); }                                     \
  inline T __hdiv(T a, T b) { return FROMF(TOF(a) / TOF(b)); }                                     \
  inline T __hfma(T a, T b, T c) {                                                                 \
    return FROMF(mf_emu::d2f_odd((double)TOF(a) * (double)TOF(b) + (double)TOF(c)));               \
  }                                                                                                \
  inline T __hneg(T a) { T r = a; r.__x ^= 0x8000u; return r; }                                    \
  inline T __habs(T a) { T r = a; r.__x &= 0x7fffu; return r; }                                    \
  inline T __hmax(T a, T b) { return FROMF(std::fmax(TOF(a), TOF(b))); }                           \
  inline T __hmin(T a, T b) { return FROMF(std::fmin(TOF(a), TOF(b))); }                           \
  inline bool __heq(T a, T b) { return TOF(a) == TOF(b); }                                         \
  inline bool __hne(T a, T b) { return TOF(a) != TOF(b); }                                         \
  inline bool __hlt(T a, T b) { return TOF(a) < TOF(b); }                                          \
  inline bool __hle(T a, T b) { return TOF(a) <= TOF(b); }                                         \
  inline bool __hgt(T a, T b) { return TOF(a) > TOF(b); }                                          \
  inline bool __hge(T a, T b) { return TOF(a) >= TOF(b); }                                         \
  inline bool __hisnan(T a) { return std::isnan(TOF(a)); }                                         \
  inline int __hisinf(T a) { float f = TOF(a); return std::isinf(f) ? (f < 0 ? -1 : 1) : 0; }     \
  inline T hexp(T a) { return FROMF(std::exp(TOF(a))); }                                           \
  inline T hlog(T a) { return FROMF(std::log(TOF(a))); }                                           \
  inline T hsqrt(T a) { return FROMF(std::sqrt(TOF(a))); }                                         \
  inline T hrsqrt(T a) { return FROMF(1.0f / std::sqrt(TOF(a))); }                                 \
  inline T operator+(const T &a, const T &b) { return __hadd(a, b); }                              \
  inline T operator-(const T &a, const T &b) { return __hsub(a, b); }                              \
  inline T operator*(const T &a, const T &b) { return __hmul(a, b); }                              \
  inline T operator/(const T &a, const T &b) { return __hdiv(a, b); }                              \
  inline T &operator+=(T &a, const T &b) { a = __hadd(a, b); return a; }                           \
  inline T &operator-=(T &a, const T &b) { a = __hsub(a, b); return a; }                           \
  inline T &operator*=(T &a, const T &b) { a = __hmul(a, b); return a; }                           \
  inline T &operator/=(T &a, const T &b) { a = __hdiv(a, b); return a; }                           \
  inline T operator+(const T &a) { return a; }                                                     \
  inline T operator-(const T &a) { return __hneg(a); }                                             \
  inline T &operator++(T &a) { a = __hadd(a, FROMF(1.0f)); return a; }                             \
  inline T &operator--(T &a) { a = __hsub(a, FROMF(1.0f)); return a; }                             \
  inline T operator++(T &a, int) { T r = a; ++a; return r; }                                       \
  inline T operator--(T &a, int) { T r = a; --a; return r; }                                       \
  inline bool operator==(const T &a, const T &b) { return __heq(a, b); }                           \
  inline bool operator!=(const T &a, const T &b) { return __hne(a, b); }                           \
  inline bool operator<(const T &a, const T &b) { return __hlt(a, b); }                            \
  inline bool operator<=(const T &a, const T &b) { return __hle(a, b); }                           \
  inline bool operator>(const T &a, const T &b) { return __hgt(a, b); }                            \
  inline bool operator>=(const T &a, const T &b) { return __hge(a, b); }                           \
  inline T2 __hadd2(T2 a, T2 b) { return {__hadd(a.x, b.x), __hadd(a.y, b.y)}; }                   \
  inline T2 __hsub2(T2 a, T2 b) { return {__hsub(a.x, b.x), __hsub(a.y, b.y)}; }                   \
  inline T2 __hmul2(T2 a, T2 b) { return {__hmul(a.x, b.x), __hmul(a.y, b.y)}; }                   \
  inline T2 __h2div(T2 a, T2 b) { return {__hdiv(a.x, b.x), __hdiv(a.y, b.y)}; }                   \
  inline T2 __hfma2(T2 a, T2 b, T2 c) { return {__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)}; }   \
  inline T2 __hneg2(T2 a) { return {__hneg(a.x), __hneg(a.y)}; }                                   \
  inline T2 __hmax2(T2 a, T2 b) { return {__hmax(a.x, b.x), __hmax(a.y, b.y)}; }                   \
  inline T2 __hmin2(T2 a, T2 b) { return {__hmin(a.x, b.x), __hmin(a.y, b.y)}; }                   \
  inline T2 operator+(const T2 &a, const T2 &b) { return __hadd2(a, b); }                          \
  inline T2 operator-(const T2 &a, const T2 &b) { return __hsub2(a, b); }                          \
  inline T2 operator*(const T2 &a, const T2 &b) { return __hmul2(a, b); }                          \
  inline T2 operator/(const T2 &a, const T2 &b) { return __h2div(a, b); }                          \
  inline T2 &operator+=(T2 &a, const T2 &b) { a = __hadd2(a, b); return a; }                       \
  inline T2 &operator*=(T2 &a, const T2 &b) { a = __hmul2(a, b); return a; }

#define MF_EMU_BF_FROMF(f) __float2bfloat16(f)
#define MF_EMU_H_FROMF(f) __float2half(f)
MF_EMU_FP16_OPS(__nv_bfloat16, __nv_bfloat162, __bfloat162float, MF_EMU_BF_FROMF)
MF_EMU_FP16_OPS(__half, __half2, __half2float, MF_EMU_H_FROMF)
#undef MF_EMU_FP16_OPS

inline float2 __bfloat1622float2(__nv_bfloat162 a) { return {__bfloat162float(a.x), __bfloat162float(a.y)}; }
inline float2 __half22float2(__half2 a) { return {__half2float(a.x), __half2float(a.y)}; }
inline __nv_bfloat162 __float22bfloat162_rn(float2 a) { return __floats2bfloat162_rn(a.x, a.y); }
inline __half2 __float22half2_rn(float2 a) { return __floats2half2_rn(a.x, a.y); }

#endif
