// Fused selective scan for CPUs: forward and backward of
//     dt_t = softplus(delta_t + delta_bias)   (bias and softplus optional)
//     h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t,   y_t = <h_t, C_t>,
//     out_t = (y_t + D u_t) * silu(z_t)   (D and z optional; the gate as mamba_ssm fuses it)
// without ever writing a [b, d, l, n] tensor. A task owns one batch row and a block of W
// channels; the W channels sit in the lanes of one vector register, so every step is W-wide
// arithmetic on n independent states (no reductions in the forward, plenty of independent work
// for the CPU), and softplus, exp(dt A) and the gate are computed where they are used. The
// backward recomputes the states of one chunk of K steps at a time from checkpoints the
// forward keeps every K steps.
//
// Layouts (prepared by tsfm/kernels/cpu_scan.py; dp = d rounded up to a multiple of W):
//   u, delta, z, out, du, ddelta, dz  [b, d, l] (a task copies its block to [l, W] and back;
//                        the lanes past d read u = 0, which keeps their state at zero)
//   D, delta_bias and their partials   [dp] (zero-padded), [b, dp]
//   A, dA partial        [n, dp] (zero-padded), [b, n, dp]
//   selective B or C     [b, l, n]          time-invariant B or C  [n, dp]
//   checkpoints          [b, blocks, nk, n, W]   last state  [b, blocks, n, W]
//   dB / dC partials     selective [blocks, b, l, n] (summed over blocks here, returned as
//                        [b, l, n]); time-invariant [b, n, dp]
// Every partial sum over channels or batch has its own slot, reduced in a fixed order (here or
// in Python), so results do not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t W = 16;  // channels per task = lanes of one AVX-512 float register

// W lanes of T as one value (GCC/Clang vector extension): the compiler maps it to the widest
// registers the build targets (one AVX-512 register for 16 floats), with no scalar fallback
// between the steps of a loop.
template <typename T> struct Lanes;
template <> struct Lanes<float> {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
  typedef int32_t bits __attribute__((vector_size(W * sizeof(int32_t))));
};
template <> struct Lanes<double> {
  typedef double type __attribute__((vector_size(W * sizeof(double))));
  typedef int64_t bits __attribute__((vector_size(W * sizeof(int64_t))));
};
template <typename T> using V = typename Lanes<T>::type;

template <typename T> inline V<T> load(const T* p) {
  V<T> x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
template <typename T> inline void store(T* p, const V<T>& x) { std::memcpy(p, &x, sizeof x); }
template <typename T> inline V<T> splat(T x) { return V<T>{} + x; }
// The floats whose bit patterns are the lanes of an integer vector.
template <typename T> inline V<T> from_bits(const typename Lanes<T>::bits& b) {
  V<T> x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

constexpr double LOG2E = 1.4426950408889634;  // log2(e)

// exp for the per-element functions (softplus, sigmoid), where accuracy matters more than
// speed: 2^k * p(r), |r| <= ln2 / 2: relative error ~1e-8 (float), ~1e-16 (double). The input
// is held in [one above the log of the smallest normal number, log of the largest]: results
// stay normal (x86's subnormal path is 10-40x slower) and finite. k is rounded with the
// 1.5 * 2^mantissa trick.
template <typename T> struct ExpConstants;
template <> struct ExpConstants<float> {
  static constexpr float lo = -86.3f, hi = 88.0f, log2e = 1.44269504088896341f,
                         ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f,
                         round = 12582912.0f;  // 1.5 * 2^23
  static constexpr int degree = 7, mantissa = 23, bias = 127;
};
template <> struct ExpConstants<double> {
  static constexpr double lo = -707.4, hi = 709.0, log2e = 1.4426950408889634,
                          ln2_hi = 0.6931471803691238, ln2_lo = 1.9082149292705877e-10,
                          round = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int degree = 13, mantissa = 52, bias = 1023;
};

template <typename T> inline V<T> vexp(V<T> x) {
  using E = ExpConstants<T>;
  using Bits = typename Lanes<T>::bits;
  x = x < E::lo ? splat<T>(E::lo) : x;
  x = x > E::hi ? splat<T>(E::hi) : x;
  const V<T> k = (x * E::log2e + E::round) - E::round;
  const V<T> r = (x - k * E::ln2_hi) - k * E::ln2_lo;
  T coefficient = 1;  // 1 / degree!
  for (int i = 2; i <= E::degree; ++i) coefficient /= T(i);
  V<T> p = splat<T>(coefficient);
  for (int i = E::degree - 1; i >= 0; --i) {  // Horner with 1 / i!
    coefficient *= T(i + 1);
    p = p * r + coefficient;
  }
  const Bits scale = (__builtin_convertvector(k, Bits) + E::bias) << E::mantissa;
  return p * from_bits<T>(scale);
}

// 2^x for the state decays, exp(dt A) = 2^(dt A log2(e)) with A scaled once per block (as
// mamba_ssm's CUDA kernel does): 9 vector operations with AVX-512 where exp takes 17, and exp
// is most of the scan's arithmetic. x = k + f with k = round(x), |f| <= 1/2; 2^f by a
// polynomial with p(0) = 1 exactly, so that a decay of exp(0) keeps a state unchanged (float:
// degree 5 fitted for relative error, 1.8e-7, about 2 ulp as CUDA's exp2f; double: Taylor to
// degree 13); 2^k goes into the exponent. With AVX-512 that is vscalefps, which overflows to
// inf by itself; x is held above -150, where 2^x is 0 in float, and the tasks run with
// subnormals flushed to zero (see FlushSubnormals). The portable path builds the exponent bits
// by hand from x held in [-125, 127] (float), which also keeps its results normal.
template <typename T> struct Exp2Constants;
template <> struct Exp2Constants<float> {
  static constexpr float lo = -125.0f, hi = 127.0f, zero_below = -150.0f,
                         round = 12582912.0f;  // 1.5 * 2^23
  static constexpr int degree = 5, mantissa = 23, bias = 127;
  static constexpr float coefficients[degree + 1] = {
      1.0f, 0.6931468844413757f, 0.24022237956523895f, 0.05550893023610115f,
      0.009671698324382305f, 0.0013218672247603536f};
};
template <> struct Exp2Constants<double> {
  static constexpr double lo = -1021.0, hi = 1023.0, round = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int degree = 13, mantissa = 52, bias = 1023;
  static constexpr double coefficients[degree + 1] = {  // ln(2)^i / i!
      1.0, 0.6931471805599453, 0.2402265069591007, 0.055504108664821576,
      0.009618129107628477, 0.0013333558146428441, 0.00015403530393381606,
      1.5252733804059838e-05, 1.3215486790144305e-06, 1.0178086009239696e-07,
      7.054911620801121e-09, 4.44553827187081e-10, 2.5678435993488196e-11,
      1.3691488853904124e-12};
};

template <typename T> inline V<T> exp2_fraction(const V<T>& f) {
  using E = Exp2Constants<T>;
  V<T> p = splat<T>(E::coefficients[E::degree]);
  for (int i = E::degree - 1; i >= 0; --i) p = p * f + E::coefficients[i];
  return p;
}

template <typename T> inline V<T> vexp2(V<T> x) {
  using E = Exp2Constants<T>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && W == 16) {
    x = x < E::zero_below ? splat<T>(E::zero_below) : x;  // -inf gives 0, NaN stays NaN
    const __m512 k = _mm512_roundscale_ps(__m512(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return V<T>(_mm512_scalef_ps(__m512(exp2_fraction<T>(x - V<T>(k))), k));
  }
#endif
  using Bits = typename Lanes<T>::bits;
  x = x < E::lo ? splat<T>(E::lo) : x;
  x = x > E::hi ? splat<T>(E::hi) : x;
  const V<T> k = (x + E::round) - E::round;
  const Bits scale = (__builtin_convertvector(k, Bits) + E::bias) << E::mantissa;
  return exp2_fraction<T>(x - k) * from_bits<T>(scale);
}

// 1 / x for finite, nonzero x; with AVX-512 (float) a 14-bit estimate and one Newton step
// (about 1 ulp), which takes a fraction of a vector division's time.
template <typename T> inline V<T> reciprocal(const V<T>& x) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && W == 16) {
    const V<T> r = V<T>(_mm512_rcp14_ps(__m512(x)));
    return r * (T(2) - x * r);
  }
#endif
  return T(1) / x;
}

template <typename T> inline V<T> sigmoid(const V<T>& x) {
  return reciprocal<T>(T(1) + vexp<T>(-x));
}
template <typename T> inline V<T> silu(const V<T>& x) { return x * sigmoid<T>(x); }

// log1p(y) for 0 <= y <= 1 as 2 atanh(s), s = y / (2 + y) <= 1/3, by the odd series of atanh
// (float to s^15, double to s^33: below one ulp); no 1 + y is formed, so tiny y keep their bits.
template <typename T> inline V<T> log1p_unit(const V<T>& y) {
  constexpr int terms = std::is_same_v<T, float> ? 8 : 17;
  const V<T> s = y * reciprocal<T>(T(2) + y), s2 = s * s;
  V<T> p = splat<T>(T(1) / T(2 * terms - 1));
  for (int k = terms - 2; k >= 0; --k) p = p * s2 + T(1) / T(2 * k + 1);
  return T(2) * s * p;
}

constexpr double SOFTPLUS_THRESHOLD = 20;  // torch's and the CUDA kernel's: identity above

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), identity above the threshold.
template <typename T> inline V<T> softplus(const V<T>& x) {
  const V<T> magnitude = x < T(0) ? -x : x;
  const V<T> soft = (x > T(0) ? x : V<T>{}) + log1p_unit<T>(vexp<T>(-magnitude));
  return x > T(SOFTPLUS_THRESHOLD) ? x : soft;
}

// d softplus(x) / dx = sigmoid(x), 1 above the threshold.
template <typename T> inline V<T> softplus_slope(const V<T>& x) {
  return x > T(SOFTPLUS_THRESHOLD) ? splat<T>(1) : sigmoid<T>(x);
}

// out[j] = sum over the W lanes of tile[j] for j < n. A reduction per row costs about as much
// as the scan step it follows, so a full tile of 16 float rows is summed at once with AVX-512:
// a transpose-and-add tree of 15 additions, then one permutation back into row order.
template <typename T>
inline void row_sums(const T* tile, T* out, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && W == 16) if (n == 16) {
    __m512 r[16], l1[8], l2[4], l3[2];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(tile + 16 * i);
    for (int i = 0; i < 8; ++i)
      l1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0x44),
                            _mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; ++i)
      l2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(l1[2 * i], l1[2 * i + 1], 0x88),
                            _mm512_shuffle_f32x4(l1[2 * i], l1[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; ++i)
      l3[i] = _mm512_add_ps(_mm512_shuffle_ps(l2[2 * i], l2[2 * i + 1], 0x44),
                            _mm512_shuffle_ps(l2[2 * i], l2[2 * i + 1], 0xEE));
    const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(l3[0], l3[1], 0x88),
                                      _mm512_shuffle_ps(l3[0], l3[1], 0xDD));
    // lane k of sums holds row 4 (k % 4) + k / 4
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(order, sums));
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) {
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t w = 0; w < W; ++w) sum += tile[j * W + w];
    out[j] = sum;
  }
}

// The per-step gradient of a selective B or C: row (t, j) is summed over the block's W lanes.
// Rows are collected in a tile of W rows, W / n steps of them when n divides W, so that a small
// state size still fills one transpose-and-add tree, and summed when the tile's first step is
// reached (the adjoint walks time backwards); out is this task's [l, n].
template <typename T> class StepSums {
  std::vector<V<T>> tile_;
  T* out_;
  int64_t n_, l_, steps_;  // steps per tile
 public:
  StepSums(T* out, int64_t n, int64_t l)
      : tile_(std::max(W, n)), out_(out), n_(n), l_(l), steps_(W % n == 0 ? W / n : 1) {}
  V<T>& row(int64_t t, int64_t j) { return tile_[(t % steps_) * n_ + j]; }
  void step_done(int64_t t) {
    if (t % steps_ != 0) return;
    const T* rows = reinterpret_cast<const T*>(tile_.data());
    const int64_t count = std::min(steps_, l_ - t) * n_;  // the last tile may pass the end
    if (count == W || steps_ == 1) {  // a full tile, or n rows of one step
      row_sums<T>(rows, out_ + t * n_, count);
      return;
    }
    T sums[W];
    row_sums<T>(rows, sums, W);
    std::copy(sums, sums + count, out_ + t * n_);
  }
};

struct Dims {
  int64_t b, d, dp, l, n, K, nk, blocks;
};

// Transposes a 16 x 16 tile of floats (rows in_stride apart) into rows out_stride apart;
// returns false where the build has no AVX-512 (the caller copies element by element).
// Unpacking pairs of 32- and 64-bit elements leaves 4 x 4 blocks in 128-bit lanes, which
// two rounds of lane shuffles put in place: 64 instructions for 256 elements, against 256
// strided scalar stores, which took a third of the kernel's time.
template <typename T>
inline bool transpose_tile(const T* in, int64_t in_stride, T* out, int64_t out_stride) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && W == 16) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * in_stride);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    auto pd = [](__m512 x) { return _mm512_castps_pd(x); };
    for (int i = 0; i < 16; i += 4) {  // r[i + c] holds column c (+ 4, 8, 12) of rows i..i+3
      r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i]), pd(t[i + 2])));
      r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i]), pd(t[i + 2])));
      r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[i + 1]), pd(t[i + 3])));
      r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[i + 1]), pd(t[i + 3])));
    }
    for (int c = 0; c < 4; ++c) {
      const __m512 even_lo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88),
                   odd_lo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD),
                   even_hi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88),
                   odd_hi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
      _mm512_storeu_ps(out + c * out_stride, _mm512_shuffle_f32x4(even_lo, even_hi, 0x88));
      _mm512_storeu_ps(out + (8 + c) * out_stride, _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD));
      _mm512_storeu_ps(out + (4 + c) * out_stride, _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88));
      _mm512_storeu_ps(out + (12 + c) * out_stride, _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD));
    }
    return true;
  }
#endif
  return false;
}

// A block's W channels of a [b, d, l] tensor as [l, W] (time-major, lanes contiguous) and
// back; channels past d read as zero. Whole 16-step tiles of a full block are transposed with
// AVX-512 (float); everything else is copied element by element.
template <typename T>
void gather_block(const Dims& s, const T* x, T* out, int64_t bi, int64_t d0) {
  const T* src = x + (bi * s.d + d0) * s.l;
  int64_t t0 = 0;
  if (d0 + W <= s.d)
    for (; t0 + W <= s.l && transpose_tile(src + t0, s.l, out + t0 * W, W); t0 += W) {}
  for (int64_t w = 0; w < W; ++w) {
    const bool real = d0 + w < s.d;
    for (int64_t t = t0; t < s.l; ++t) out[t * W + w] = real ? src[w * s.l + t] : T(0);
  }
}

template <typename T>
void scatter_block(const Dims& s, const T* in, T* x, int64_t bi, int64_t d0) {
  T* dst = x + (bi * s.d + d0) * s.l;
  int64_t t0 = 0;
  if (d0 + W <= s.d)
    for (; t0 + W <= s.l && transpose_tile(in + t0 * W, W, dst + t0, s.l); t0 += W) {}
  for (int64_t w = 0; w < W && d0 + w < s.d; ++w)
    for (int64_t t = t0; t < s.l; ++t) dst[w * s.l + t] = in[t * W + w];
}

// B_t or C_t for state j over the block's lanes: one scalar for all of them (selective) or one
// value per channel (time-invariant).
template <typename T, bool Selective> struct Input {
  using Scalar = T;
  const T* base;
  const Dims& s;
  inline V<T> at(int64_t bi, int64_t t, int64_t j, int64_t d0) const {
    return Selective ? splat<T>(base[(bi * s.l + t) * s.n + j]) : load(base + j * s.dp + d0);
  }
};

// A block's [l, W] rows, left uninitialised: every row is written before it is read.
template <typename T> class Rows {
  std::unique_ptr<T[]> rows_;
 public:
  explicit Rows(int64_t size) : rows_(size > 0 ? new T[size] : nullptr) {}
  T* data() const { return rows_.get(); }
};

// Fixed-size storage for the common state sizes (N > 0), heap storage otherwise.
template <typename T, int N> struct States {
  std::vector<V<T>> heap;
  alignas(64) V<T> fixed[N > 0 ? N : 1];
  V<T>* data;
  explicit States(int64_t n) : heap(N > 0 ? 0 : n), data(N > 0 ? fixed : heap.data()) {
    for (int64_t j = 0; j < n; ++j) data[j] = V<T>{};
  }
};

// A's block scaled by log2(e), for vexp2: exp(dt A) = 2^(dt A2).
template <typename T, int N>
void scaled_decay_rates(const Dims& s, const T* A, int64_t d0, States<T, N>& a2) {
  for (int64_t j = 0; j < s.n; ++j) a2.data[j] = load(A + j * s.dp + d0) * T(LOG2E);
}

// The block's steps, in place over its [l, W] rows: dt = softplus(delta + bias) (either part
// optional); with slope, also d dt / d delta for the backward (softplus only).
template <typename T>
void discretise(const Dims& s, T* dt, T* slope, const T* bias, bool use_softplus, int64_t d0) {
  if (bias == nullptr && !use_softplus) return;
  const V<T> shift = bias == nullptr ? V<T>{} : load(bias + d0);
  for (int64_t row = 0; row < s.l * W; row += W) {
    const V<T> x = load(dt + row) + shift;
    store(dt + row, use_softplus ? softplus<T>(x) : x);
    if (slope != nullptr) store(slope + row, softplus_slope<T>(x));
  }
}

template <typename T, int N, bool SelB, bool SelC>
void forward_block(const Dims& s, const T* u_in, const T* delta_in, const T* A, Input<T, SelB> B,
                   Input<T, SelC> C, const T* D, const T* z_in, const T* bias,
                   bool use_softplus, T* y_out, T* last, T* ck, int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, d0 = blk * W;
  States<T, N> state(n), a2(n);
  V<T>* h = state.data;
  scaled_decay_rates(s, A, d0, a2);
  Rows<T> u_block(s.l * W), dt_block(s.l * W), y_block(s.l * W);
  gather_block(s, u_in, u_block.data(), bi, d0);
  gather_block(s, delta_in, dt_block.data(), bi, d0);
  discretise(s, dt_block.data(), static_cast<T*>(nullptr), bias, use_softplus, d0);
  Rows<T> z_block(z_in == nullptr ? 0 : s.l * W);
  if (z_in != nullptr) gather_block(s, z_in, z_block.data(), bi, d0);
  const T *u = u_block.data(), *dt = dt_block.data();
  const V<T> skip = D == nullptr ? V<T>{} : load(D + d0);
  T* next_checkpoint = ck == nullptr ? nullptr : ck + (bi * s.blocks + blk) * s.nk * n * W;
  for (int64_t t = 0, until_checkpoint = 0; t < s.l; ++t, --until_checkpoint) {
    if (next_checkpoint != nullptr && until_checkpoint == 0) {
      for (int64_t j = 0; j < n; ++j, next_checkpoint += W) store(next_checkpoint, h[j]);
      until_checkpoint = s.K;
    }
    const int64_t row = t * W;
    const V<T> step = load(dt + row), v = step * load(u + row);
    V<T> acc{};
#pragma GCC unroll 16
    for (int64_t j = 0; j < n; ++j) {
      h[j] = vexp2<T>(step * a2.data[j]) * h[j] + v * B.at(bi, t, j, d0);
      acc += h[j] * C.at(bi, t, j, d0);
    }
    acc += skip * load(u + row);  // (y + D u) * silu(z)
    if (z_in != nullptr) acc *= silu<T>(load(z_block.data() + row));
    store(y_block.data() + row, acc);
  }
  scatter_block(s, y_block.data(), y_out, bi, d0);
  for (int64_t j = 0; j < n; ++j) store(last + ((bi * s.blocks + blk) * n + j) * W, h[j]);
}

template <typename T, int N, bool SelB, bool SelC>
void backward_block(const Dims& s, const T* u_in, const T* delta_in, const T* A, Input<T, SelB> B,
                    Input<T, SelC> C, const T* D, const T* z_in, const T* bias,
                    bool use_softplus, const T* ck, const T* dy_in, const T* dlast, T* du_out,
                    T* ddelta_out, T* dz_out, T* dD_part, T* dbias_part, T* dA_part,
                    T* dB_part, T* dC_part, int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, K = s.K, d0 = blk * W, nw = n * W;
  States<T, N> a2(n);
  scaled_decay_rates(s, A, d0, a2);
  // states and decays of one chunk; the adjoint carry r = exp(dt_{t+1} A) g_{t+1}; sums
  std::vector<V<T>> hs((K + 1) * n), decay(K * n), r(n), dA(n, V<T>{}), dBw(n, V<T>{}),
      dCw(n, V<T>{});  // time-invariant B, C: gradients summed over time
  const int64_t task_rows = (blk * s.b + bi) * s.l * s.n;
  StepSums<T> step_dB(SelB ? dB_part + task_rows : nullptr, n, s.l),
      step_dC(SelC ? dC_part + task_rows : nullptr, n, s.l);
  Rows<T> u_block(s.l * W), dt_block(s.l * W), dy_block(s.l * W), du_block(s.l * W),
      ddt_block(s.l * W);
  gather_block(s, u_in, u_block.data(), bi, d0);
  gather_block(s, delta_in, dt_block.data(), bi, d0);
  Rows<T> slope_block(use_softplus ? s.l * W : 0);
  discretise(s, dt_block.data(), use_softplus ? slope_block.data() : nullptr, bias, use_softplus,
             d0);
  gather_block(s, dy_in, dy_block.data(), bi, d0);
  // through the gate (y + D u) * silu(z), element by element: dy becomes the gradient of
  // y + D u, and dz_block holds dout * silu'(z) until the adjoint multiplies in y + D u
  // (recomputed there: cheaper than keeping it from the forward); silu'(z) =
  // sigmoid(z) (1 + z (1 - sigmoid(z)))
  Rows<T> dz_block(z_in == nullptr ? 0 : s.l * W);
  if (z_in != nullptr) {
    gather_block(s, z_in, dz_block.data(), bi, d0);
    for (int64_t row = 0; row < s.l * W; row += W) {
      const V<T> zt = load(dz_block.data() + row), sig = sigmoid<T>(zt),
                 dout = load(dy_block.data() + row);
      store(dz_block.data() + row, dout * sig * (T(1) + zt * (T(1) - sig)));
      store(dy_block.data() + row, dout * zt * sig);
    }
  }
  const T *u = u_block.data(), *dt = dt_block.data(), *dy = dy_block.data();
  T *du = du_block.data(), *ddt = ddt_block.data();
  const V<T> skip = D == nullptr ? V<T>{} : load(D + d0);
  V<T> dD{};
  for (int64_t j = 0; j < n; ++j)  // no gradient of the last state: an empty dlast
    r[j] = dlast == nullptr ? V<T>{} : load(dlast + (bi * s.blocks + blk) * nw + j * W);
  for (int64_t k = s.nk - 1; k >= 0; --k) {
    const int64_t t0 = k * K, len = std::min(K, s.l - t0);
    const T* start = ck + ((bi * s.blocks + blk) * s.nk + k) * nw;
    for (int64_t j = 0; j < n; ++j) hs[j] = load(start + j * W);
    if (k > 0)  // the next checkpoint was written long ago by the forward: fetch it meanwhile
      for (int64_t at = 0; at < nw; at += 64 / sizeof(T)) __builtin_prefetch(start - nw + at);
    for (int64_t i = 0; i < len; ++i) {  // the chunk's decays and states, again
      const int64_t t = t0 + i, row = t * W;
      const V<T> step = load(dt + row), v = step * load(u + row);
      const V<T>* hp = hs.data() + i * n;
      V<T>* hn = hs.data() + (i + 1) * n;
      V<T>* e = decay.data() + i * n;
#pragma GCC unroll 16
      for (int64_t j = 0; j < n; ++j) {
        e[j] = vexp2<T>(step * a2.data[j]);
        hn[j] = e[j] * hp[j] + v * B.at(bi, t, j, d0);
      }
    }
    for (int64_t i = len - 1; i >= 0; --i) {  // adjoint, newest step first
      const int64_t t = t0 + i, row = t * W;
      const V<T> step = load(dt + row), ut = load(u + row), v = step * ut, gy = load(dy + row);
      const V<T>* hp = hs.data() + i * n;
      const V<T>* hn = hs.data() + (i + 1) * n;
      const V<T>* e = decay.data() + i * n;
      V<T> sum_sa{}, sum_gb{}, y{};
#pragma GCC unroll 16
      for (int64_t j = 0; j < n; ++j) {
        const V<T> g = r[j] + C.at(bi, t, j, d0) * gy;  // adjoint of h_t
        const V<T> sv = g * e[j] * hp[j];                // adjoint of the log-decay dt A
        dA[j] += sv * step;
        sum_sa += sv * load(A + j * s.dp + d0);
        sum_gb += g * B.at(bi, t, j, d0);
        if constexpr (SelB) step_dB.row(t, j) = g * v; else dBw[j] += g * v;
        if constexpr (SelC) step_dC.row(t, j) = hn[j] * gy; else dCw[j] += hn[j] * gy;
        r[j] = g * e[j];
        if (z_in != nullptr) y += hn[j] * C.at(bi, t, j, d0);  // y_t again, for dz
      }
      if (z_in != nullptr) store(dz_block.data() + row, load(dz_block.data() + row) * (y + skip * ut));
      dD += gy * ut;
      if constexpr (SelB) step_dB.step_done(t);
      if constexpr (SelC) step_dC.step_done(t);
      store(ddt + row, sum_sa + load(u + row) * sum_gb);
      store(du + row, step * sum_gb + gy * skip);
    }
  }
  // through dt = softplus(delta + bias): the kernel's gradient is w.r.t. delta
  V<T> dbias{};
  for (int64_t row = 0; row < s.l * W; row += W) {
    const V<T> ddelta = use_softplus ? load(ddt + row) * load(slope_block.data() + row)
                                     : load(ddt + row);
    store(ddt + row, ddelta);
    dbias += ddelta;
  }
  if (bias != nullptr) store(dbias_part + bi * s.dp + d0, dbias);
  scatter_block(s, du, du_out, bi, d0);
  scatter_block(s, ddt, ddelta_out, bi, d0);
  if (z_in != nullptr) scatter_block(s, dz_block.data(), dz_out, bi, d0);
  store(dD_part + bi * s.dp + d0, dD);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t at = (bi * s.n + j) * s.dp + d0;
    store(dA_part + at, dA[j]);
    if (!SelB) store(dB_part + at, dBw[j]);
    if (!SelC) store(dC_part + at, dCw[j]);
  }
}

constexpr int64_t SCRATCH_BYTES = int64_t(64) << 20;  // the most the backward keeps between calls

// The layouts cpu_scan.py prepares: CPU, one dtype, contiguous, nothing empty but the optional.
Dims dims_of(const torch::Tensor& u, const torch::Tensor& A, int64_t K,
             std::initializer_list<const torch::Tensor*> others) {
  TORCH_CHECK(u.numel() > 0 && A.numel() > 0, "empty scan inputs");
  for (const torch::Tensor* x : others) {
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == u.scalar_type() &&
                x->is_contiguous(), "scan inputs must be contiguous CPU tensors of one dtype");
  }
  TORCH_CHECK(A.size(1) % W == 0, "A's channels must be padded to a multiple of ", W);
  Dims s;
  s.b = u.size(0);
  s.d = u.size(1);
  s.l = u.size(2);
  s.dp = A.size(1);
  s.n = A.size(0);
  s.K = K;
  s.nk = (s.l + K - 1) / K;
  s.blocks = s.dp / W;
  return s;
}

// Calls fn(std::integral_constant<int, N>{}, selective B, selective C): the common state sizes
// get loops of fixed trip count (unrolled, registers), any other size the generic loop (N = 0).
template <typename F>
void dispatch(int64_t n, bool sel_b, bool sel_c, F fn) {
  auto layouts = [&](auto size) {
    if (sel_b && sel_c) fn(size, std::true_type{}, std::true_type{});
    else if (sel_b) fn(size, std::true_type{}, std::false_type{});
    else if (sel_c) fn(size, std::false_type{}, std::true_type{});
    else fn(size, std::false_type{}, std::false_type{});
  };
  switch (n) {
    case 16: layouts(std::integral_constant<int, 16>{}); break;
    case 4: layouts(std::integral_constant<int, 4>{}); break;
    case 2: layouts(std::integral_constant<int, 2>{}); break;
    default: layouts(std::integral_constant<int, 0>{});
  }
}

// While alive, the calling thread flushes subnormal results and inputs to zero (MXCSR FTZ and
// DAZ; AVX-512 builds, whose vexp2 relies on it): a decay below 2^-126 becomes 0 instead of
// taking x86's slow subnormal path. The previous mode comes back even if a task throws.
class FlushSubnormals {
#if defined(__AVX512F__)
  const unsigned saved_ = _mm_getcsr();
 public:
  FlushSubnormals() { _mm_setcsr(saved_ | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }
#endif
};

// Runs fn(batch row, block) for every task across torch's threads.
template <typename F>
void for_each_block(const Dims& s, F fn) {
  at::parallel_for(0, s.b * s.blocks, 1, [&](int64_t begin, int64_t end) {
    const FlushSubnormals flush;
    for (int64_t task = begin; task < end; ++task) fn(task / s.blocks, task % s.blocks);
  });
}

// Runs fn(size, B input, C input, batch row, block) for every task, with the scalar type, the
// state size and the B/C layouts resolved at compile time.
template <typename F>
void launch(const Dims& s, const torch::Tensor& u, const torch::Tensor& B,
            const torch::Tensor& C, F fn) {
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "tsfm_selective_scan", [&] {
    dispatch(s.n, B.dim() == 3, C.dim() == 3, [&](auto size, auto sel_b, auto sel_c) {
      Input<scalar_t, decltype(sel_b)::value> in_b{B.data_ptr<scalar_t>(), s};
      Input<scalar_t, decltype(sel_c)::value> in_c{C.data_ptr<scalar_t>(), s};
      for_each_block(s, [&](int64_t bi, int64_t blk) { fn(size, in_b, in_c, bi, blk); });
    });
  });
}

// The data of a tensor, or nullptr for an empty one (an optional argument or output).
template <typename T> T* data(const torch::Tensor& x) {
  return x.numel() ? x.data_ptr<T>() : nullptr;
}

// Selective partials [blocks, b, l, n] summed over blocks in a fixed order -> [b, l, n]; a
// time-invariant partial [b, n, dp] is returned as it is (summed in Python).
torch::Tensor sum_blocks(const torch::Tensor& part) {
  if (part.dim() != 4) return part;
  auto out = torch::empty({part.size(1), part.size(2), part.size(3)}, part.options());
  const int64_t blocks = part.size(0), row = out.numel(), grain = 1 << 14;
  AT_DISPATCH_FLOATING_TYPES(part.scalar_type(), "tsfm_sum_blocks", [&] {
    const scalar_t* in = part.data_ptr<scalar_t>();
    scalar_t* sum = out.data_ptr<scalar_t>();
    at::parallel_for(0, row, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sum[i] = in[i];
      for (int64_t blk = 1; blk < blocks; ++blk)
        for (int64_t i = begin; i < end; ++i) sum[i] += in[blk * row + i];
    });
  });
  return out;
}

// D and delta_bias [dp], z [b, d, l] are optional (empty tensors):
//     dt = softplus(delta + delta_bias) (softplus when asked), out = (y + D u) * silu(z).
std::vector<torch::Tensor> forward(torch::Tensor u, torch::Tensor delta, torch::Tensor A,
                                   torch::Tensor B, torch::Tensor C, torch::Tensor D,
                                   torch::Tensor z, torch::Tensor delta_bias, bool softplus,
                                   int64_t K, bool keep) {
  const Dims s = dims_of(u, A, K, {&u, &delta, &A, &B, &C, &D, &z, &delta_bias});
  auto y = torch::empty_like(u);
  auto last = torch::empty({s.b, s.blocks, s.n, W}, u.options());
  auto ck = torch::empty({keep ? s.b : 0, s.blocks, s.nk, s.n, W}, u.options());
  launch(s, u, B, C, [&](auto size, auto in_b, auto in_c, int64_t bi, int64_t blk) {
    using T = typename decltype(in_b)::Scalar;
    forward_block<T, decltype(size)::value>(
        s, data<T>(u), data<T>(delta), data<T>(A), in_b, in_c, data<T>(D), data<T>(z),
        data<T>(delta_bias), softplus, data<T>(y), data<T>(last), data<T>(ck), bi, blk);
  });
  return {y, last, ck};
}

std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor delta, torch::Tensor A,
                                    torch::Tensor B, torch::Tensor C, torch::Tensor D,
                                    torch::Tensor z, torch::Tensor delta_bias, bool softplus,
                                    torch::Tensor ck, torch::Tensor dy, torch::Tensor dlast,
                                    int64_t K) {
  const Dims s =
      dims_of(u, A, K, {&u, &delta, &A, &B, &C, &D, &z, &delta_bias, &ck, &dy, &dlast});
  auto du = torch::empty_like(u);
  auto ddelta = torch::empty_like(u);
  auto dbias_part = torch::empty({delta_bias.numel() ? s.b : 0, s.dp}, u.options());
  auto dA_part = torch::empty({s.b, s.n, s.dp}, u.options());
  auto dz = torch::empty({z.numel() ? s.b : 0, s.d, s.l}, u.options());
  auto dD_part = torch::empty({s.b, s.dp}, u.options());
  // selective partials [blocks, b, l, n] go to memory kept between calls, up to SCRATCH_BYTES
  // (fresh memory costs a page fault per 4 KiB: a tenth of the backward), and are summed over
  // blocks below; larger ones are allocated per call
  static std::mutex scratch_mutex;
  static std::vector<unsigned char> scratch;
  std::lock_guard<std::mutex> hold(scratch_mutex);
  const int64_t part_bytes = s.blocks * s.b * s.l * s.n * u.element_size();
  const int64_t needed = (int64_t(B.dim() == 3) + int64_t(C.dim() == 3)) * part_bytes;
  const bool reuse = needed <= SCRATCH_BYTES;
  if (reuse && int64_t(scratch.size()) < needed) scratch.resize(needed);
  int64_t used = 0;
  auto partial = [&](bool selective) {
    if (!selective) return torch::empty({s.b, s.n, s.dp}, u.options());
    if (!reuse) return torch::empty({s.blocks, s.b, s.l, s.n}, u.options());
    used += part_bytes;
    return torch::from_blob(scratch.data() + used - part_bytes, {s.blocks, s.b, s.l, s.n},
                            u.options());
  };
  auto dB_part = partial(B.dim() == 3);
  auto dC_part = partial(C.dim() == 3);
  launch(s, u, B, C, [&](auto size, auto in_b, auto in_c, int64_t bi, int64_t blk) {
    using T = typename decltype(in_b)::Scalar;
    backward_block<T, decltype(size)::value>(
        s, data<T>(u), data<T>(delta), data<T>(A), in_b, in_c, data<T>(D), data<T>(z),
        data<T>(delta_bias), softplus, data<T>(ck), data<T>(dy), data<T>(dlast), data<T>(du),
        data<T>(ddelta), data<T>(dz), data<T>(dD_part), data<T>(dbias_part), data<T>(dA_part),
        data<T>(dB_part), data<T>(dC_part), bi, blk);
  });
  return {du, ddelta, dA_part, sum_blocks(dB_part), sum_blocks(dC_part), dz, dD_part, dbias_part};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused selective scan, forward: (gated output, last state, checkpoints)");
  m.def("backward", &backward, "fused selective scan, backward: (du, ddelta, dA partial, dB, dC (selective: [b, l, n]; else partials), dz, dD and ddelta_bias partials)");
}
