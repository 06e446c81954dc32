// Fused selective scan for CPUs: forward and backward of
//     h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t,   y_t = <h_t, C_t>
// without ever writing a [b, d, l, n] tensor. A task owns one batch row and a block of W
// channels; the W channels sit in the lanes of one vector register, so every step is W-wide
// arithmetic on n independent states (no reductions in the forward, plenty of independent work
// for the CPU), and exp(dt A) is computed where it is used. The backward recomputes the states
// of one chunk of K steps at a time from checkpoints the forward keeps every K steps.
//
// Layouts (prepared by tsfm/kernels/cpu_scan.py; dp = d rounded up to a multiple of W, the
// padding has u = dt = A = 0, which keeps its state at zero):
//   u, dt, y, du, ddt    [b, l, dp]         A, dA partial  [n, dp] / [b, n, dp]
//   selective B or C     [b, l, n]          time-invariant B or C  [n, dp]
//   checkpoints          [b, blocks, nk, n, W]   last state  [b, blocks, n, W]
//   dB / dC partials     selective [blocks, b, l, n]; time-invariant [b, n, dp]
// Every partial sum over channels or batch has its own slot, reduced in Python in a fixed
// order, so results do not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t W = 16;  // channels per task = lanes of one AVX-512 float register

// exp by 2^k * p(r), |r| <= ln2 / 2, with no calls so that the loops using it vectorise.
// Relative error ~1e-8 (float), ~1e-16 (double). The input is held in [one above the log of
// the smallest normal number, log of the largest]: results stay normal (x86's subnormal
// path is 10-40x slower), and a decay below that floor is off by less than 1e-37.
template <typename T> struct Exp;

template <> struct Exp<float> {
  static inline float eval(float x) {
    x = x < -86.3f ? -86.3f : (x > 88.0f ? 88.0f : x);
    const float k = std::nearbyint(x * 1.44269504088896341f);
    const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
  }
};

template <> struct Exp<double> {
  static inline double eval(double x) {
    x = x < -707.4 ? -707.4 : (x > 709.0 ? 709.0 : x);
    const double k = std::nearbyint(x * 1.4426950408889634);
    const double r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
    double p = 1.0 / 6227020800.0;  // 1/13!, then Horner down to 1
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
  }
};

// out[j] = sum over the W lanes of tile[j] for j < n. A reduction per row costs about as much
// as the scan step it follows, so 16 float rows are summed at once with AVX-512: a
// transpose-and-add tree of 15 additions, then one permutation back into row order.
template <typename T, int N>
inline void row_sums(const T* tile, T* out, int64_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && N == 16 && W == 16) {
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

struct Dims {
  int64_t b, dp, l, n, K, nk, blocks;
};

// B_t or C_t for state j: a scalar shared by the block (selective) or one value per channel.
template <typename T, bool Selective> struct Input {
  const T* base;
  const Dims& s;
  inline const T* at(int64_t bi, int64_t t, int64_t j, int64_t d0) const {
    return Selective ? base + (bi * s.l + t) * s.n + j : base + j * s.dp + d0;
  }
  static inline T lane(const T* p, int64_t w) { return Selective ? p[0] : p[w]; }
};

template <typename T, int N, bool SelB, bool SelC>
void forward_block(const Dims& s, const T* u, const T* dt, const T* A, Input<T, SelB> B,
                   Input<T, SelC> C, T* y, T* last, T* ck, int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, d0 = blk * W;
  std::vector<T> state(n * W, T(0));
  T* h = state.data();
  T* next_checkpoint = ck == nullptr ? nullptr : ck + (bi * s.blocks + blk) * s.nk * n * W;
  for (int64_t t = 0, until_checkpoint = 0; t < s.l; ++t, --until_checkpoint) {
    if (next_checkpoint != nullptr && until_checkpoint == 0) {
      next_checkpoint = std::copy(h, h + n * W, next_checkpoint);
      until_checkpoint = s.K;
    }
    const int64_t row = (bi * s.l + t) * s.dp + d0;
    T step[W], v[W], acc[W];
    for (int64_t w = 0; w < W; ++w) {
      step[w] = dt[row + w];
      v[w] = step[w] * u[row + w];
      acc[w] = 0;
    }
#pragma GCC unroll 16
    for (int64_t j = 0; j < n; ++j) {
      const T* a = A + j * s.dp + d0;
      const T* bj = B.at(bi, t, j, d0);
      const T* cj = C.at(bi, t, j, d0);
      T* hj = h + j * W;
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) {
        hj[w] = Exp<T>::eval(step[w] * a[w]) * hj[w] + v[w] * B.lane(bj, w);
        acc[w] += hj[w] * C.lane(cj, w);
      }
    }
    std::copy(acc, acc + W, y + row);
  }
  std::copy(h, h + n * W, last + (bi * s.blocks + blk) * n * W);
}

template <typename T, int N, bool SelB, bool SelC>
void backward_block(const Dims& s, const T* u, const T* dt, const T* A, Input<T, SelB> B,
                    Input<T, SelC> C, const T* ck, const T* dy, const T* dlast, T* du, T* ddt,
                    T* dA_part, T* dB_part, T* dC_part, int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, K = s.K, d0 = blk * W, nw = n * W;
  std::vector<T> hs((K + 1) * nw), decay(K * nw), carry(nw), dA(nw, T(0)), dBw(nw, T(0)),
      dCw(nw, T(0));
  std::copy(dlast + (bi * s.blocks + blk) * nw, dlast + (bi * s.blocks + blk + 1) * nw,
            carry.begin());
  T* r = carry.data();
  for (int64_t k = s.nk - 1; k >= 0; --k) {
    const int64_t t0 = k * K, len = std::min(K, s.l - t0);
    const T* start = ck + ((bi * s.blocks + blk) * s.nk + k) * nw;
    std::copy(start, start + nw, hs.begin());
    for (int64_t i = 0; i < len; ++i) {  // the chunk's decays and states, again
      const int64_t t = t0 + i, row = (bi * s.l + t) * s.dp + d0;
#pragma GCC unroll 16
      for (int64_t j = 0; j < n; ++j) {
        const T* a = A + j * s.dp + d0;
        const T* bj = B.at(bi, t, j, d0);
        const T* hp = hs.data() + i * nw + j * W;
        T* hn = hs.data() + (i + 1) * nw + j * W;
        T* e = decay.data() + i * nw + j * W;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) {
          e[w] = Exp<T>::eval(dt[row + w] * a[w]);
          hn[w] = e[w] * hp[w] + dt[row + w] * u[row + w] * B.lane(bj, w);
        }
      }
    }
    for (int64_t i = len - 1; i >= 0; --i) {  // adjoint, newest step first
      const int64_t t = t0 + i, row = (bi * s.l + t) * s.dp + d0;
      T step[W], v[W], gy[W], sum_sa[W], sum_gb[W];
      for (int64_t w = 0; w < W; ++w) {
        step[w] = dt[row + w];
        v[w] = step[w] * u[row + w];
        gy[w] = dy[row + w];
        sum_sa[w] = 0;
        sum_gb[w] = 0;
      }
#pragma GCC unroll 16
      for (int64_t j = 0; j < n; ++j) {
        const T* a = A + j * s.dp + d0;
        const T* bj = B.at(bi, t, j, d0);
        const T* cj = C.at(bi, t, j, d0);
        const T* hp = hs.data() + i * nw + j * W;
        const T* hn = hs.data() + (i + 1) * nw + j * W;
        const T* e = decay.data() + i * nw + j * W;
        T* rj = r + j * W;
        T* dAj = dA.data() + j * W;
        T* dBj = dBw.data() + j * W;
        T* dCj = dCw.data() + j * W;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) {
          const T g = rj[w] + C.lane(cj, w) * gy[w];  // adjoint of h_t
          const T sv = g * e[w] * hp[w];              // adjoint of the log-decay dt A
          dAj[w] += sv * step[w];
          sum_sa[w] += sv * a[w];
          sum_gb[w] += g * B.lane(bj, w);
          dBj[w] = (SelB ? T(0) : dBj[w]) + g * v[w];  // per step, or summed over time
          dCj[w] = (SelC ? T(0) : dCj[w]) + hn[w] * gy[w];
          rj[w] = g * e[w];
        }
      }
      // a selective B/C gets one gradient per step, summed over the block's channels
      if (SelB) row_sums<T, N>(dBw.data(), dB_part + ((blk * s.b + bi) * s.l + t) * s.n, n);
      if (SelC) row_sums<T, N>(dCw.data(), dC_part + ((blk * s.b + bi) * s.l + t) * s.n, n);
      for (int64_t w = 0; w < W; ++w) {
        ddt[row + w] = sum_sa[w] + u[row + w] * sum_gb[w];
        du[row + w] = step[w] * sum_gb[w];
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const int64_t at = (bi * s.n + j) * s.dp + d0;
    std::copy(dA.data() + j * W, dA.data() + (j + 1) * W, dA_part + at);
    if (!SelB) std::copy(dBw.data() + j * W, dBw.data() + (j + 1) * W, dB_part + at);
    if (!SelC) std::copy(dCw.data() + j * W, dCw.data() + (j + 1) * W, dC_part + at);
  }
}

Dims dims_of(const torch::Tensor& u, const torch::Tensor& A, int64_t K) {
  TORCH_CHECK(u.size(2) % W == 0, "channels must be padded to a multiple of ", W);
  Dims s;
  s.b = u.size(0);
  s.l = u.size(1);
  s.dp = u.size(2);
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

template <typename F>
void for_each_block(const Dims& s, F fn) {
  at::parallel_for(0, s.b * s.blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) fn(task / s.blocks, task % s.blocks);
  });
}

std::vector<torch::Tensor> forward(torch::Tensor u, torch::Tensor dt, torch::Tensor A,
                                   torch::Tensor B, torch::Tensor C, int64_t K, bool keep) {
  const Dims s = dims_of(u, A, K);
  auto y = torch::empty_like(u);
  auto last = torch::empty({s.b, s.blocks, s.n, W}, u.options());
  auto ck = torch::empty({keep ? s.b : 0, s.blocks, s.nk, s.n, W}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "tsfm_selective_scan_fwd", [&] {
    using T = scalar_t;
    dispatch(s.n, B.dim() == 3, C.dim() == 3, [&](auto size, auto sel_b, auto sel_c) {
      constexpr bool SB = decltype(sel_b)::value, SC = decltype(sel_c)::value;
      Input<T, SB> in_b{B.data_ptr<T>(), s};
      Input<T, SC> in_c{C.data_ptr<T>(), s};
      for_each_block(s, [&](int64_t bi, int64_t blk) {
        forward_block<T, decltype(size)::value, SB, SC>(
            s, u.data_ptr<T>(), dt.data_ptr<T>(), A.data_ptr<T>(), in_b, in_c, y.data_ptr<T>(),
            last.data_ptr<T>(), keep ? ck.data_ptr<T>() : nullptr, bi, blk);
      });
    });
  });
  return {y, last, ck};
}

std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor dt, torch::Tensor A,
                                    torch::Tensor B, torch::Tensor C, torch::Tensor ck,
                                    torch::Tensor dy, torch::Tensor dlast, int64_t K) {
  const Dims s = dims_of(u, A, K);
  const bool sel_b = B.dim() == 3, sel_c = C.dim() == 3;
  auto du = torch::empty_like(u);
  auto ddt = torch::empty_like(u);
  auto dA_part = torch::empty({s.b, s.n, s.dp}, u.options());
  auto partial = [&](bool selective) {
    return selective ? torch::empty({s.blocks, s.b, s.l, s.n}, u.options())
                     : torch::empty({s.b, s.n, s.dp}, u.options());
  };
  auto dB_part = partial(sel_b);
  auto dC_part = partial(sel_c);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "tsfm_selective_scan_bwd", [&] {
    using T = scalar_t;
    dispatch(s.n, sel_b, sel_c, [&](auto size, auto sb, auto sc) {
      constexpr bool SB = decltype(sb)::value, SC = decltype(sc)::value;
      Input<T, SB> in_b{B.data_ptr<T>(), s};
      Input<T, SC> in_c{C.data_ptr<T>(), s};
      for_each_block(s, [&](int64_t bi, int64_t blk) {
        backward_block<T, decltype(size)::value, SB, SC>(
            s, u.data_ptr<T>(), dt.data_ptr<T>(), A.data_ptr<T>(), in_b, in_c, ck.data_ptr<T>(),
            dy.data_ptr<T>(), dlast.data_ptr<T>(), du.data_ptr<T>(), ddt.data_ptr<T>(),
            dA_part.data_ptr<T>(), dB_part.data_ptr<T>(), dC_part.data_ptr<T>(), bi, blk);
      });
    });
  });
  return {du, ddt, dA_part, dB_part, dC_part};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused selective scan, forward: (y, last state, checkpoints)");
  m.def("backward", &backward, "fused selective scan, backward: (du, ddt, dA, dB, dC partials)");
}
