// Fused selective scan for CPUs: forward and backward of
//     h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t,   y_t = <h_t, C_t>,
//     out_t = (y_t + D u_t) * silu(z_t)   (D and z optional; the gate as mamba_ssm fuses it)
// without ever writing a [b, d, l, n] tensor. A task owns one batch row and a block of W
// channels; the W channels sit in the lanes of one vector register, so every step is W-wide
// arithmetic on n independent states (no reductions in the forward, plenty of independent work
// for the CPU), and exp(dt A) is computed where it is used. The backward recomputes the states
// of one chunk of K steps at a time from checkpoints the forward keeps every K steps.
//
// Layouts (prepared by tsfm/kernels/cpu_scan.py; dp = d rounded up to a multiple of W):
//   u, dt, z, out, du, ddt, dz  [b, d, l] (a task copies its block to [l, W] and back; the
//                        lanes past d are zero, which keeps their state at zero)
//   D, dD partial        [dp] (zero-padded), [b, dp]
//   A, dA partial        [n, dp] (zero-padded), [b, n, dp]
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

// exp by 2^k * p(r), |r| <= ln2 / 2: relative error ~1e-8 (float), ~1e-16 (double). The input
// is held in [one above the log of the smallest normal number, log of the largest]: results
// stay normal (x86's subnormal path is 10-40x slower), and a decay below that floor is off by
// less than 1e-37. k is rounded with the 1.5 * 2^mantissa trick.
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
  return p * reinterpret_cast<const V<T>&>(scale);
}

template <typename T> inline V<T> sigmoid(const V<T>& x) { return T(1) / (T(1) + vexp<T>(-x)); }
template <typename T> inline V<T> silu(const V<T>& x) { return x * sigmoid<T>(x); }

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
  int64_t b, d, dp, l, n, K, nk, blocks;
};

// A block's W channels of a [b, d, l] tensor as [l, W] (time-major, lanes contiguous) and
// back; channels past d read as zero.
template <typename T>
void gather_block(const Dims& s, const T* x, T* out, int64_t bi, int64_t d0) {
  for (int64_t w = 0; w < W; ++w) {
    const T* src = x + (bi * s.d + d0 + w) * s.l;
    const bool real = d0 + w < s.d;
    for (int64_t t = 0; t < s.l; ++t) out[t * W + w] = real ? src[t] : T(0);
  }
}

template <typename T>
void scatter_block(const Dims& s, const T* in, T* x, int64_t bi, int64_t d0) {
  for (int64_t w = 0; w < W && d0 + w < s.d; ++w) {
    T* dst = x + (bi * s.d + d0 + w) * s.l;
    for (int64_t t = 0; t < s.l; ++t) dst[t] = in[t * W + w];
  }
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

// Fixed-size storage for the common state sizes (N > 0), heap storage otherwise.
template <typename T, int N> struct States {
  std::vector<V<T>> heap;
  alignas(64) V<T> fixed[N > 0 ? N : 1];
  V<T>* data;
  explicit States(int64_t n) : heap(N > 0 ? 0 : n), data(N > 0 ? fixed : heap.data()) {
    for (int64_t j = 0; j < n; ++j) data[j] = V<T>{};
  }
};

template <typename T, int N, bool SelB, bool SelC>
void forward_block(const Dims& s, const T* u_in, const T* dt_in, const T* A, Input<T, SelB> B,
                   Input<T, SelC> C, const T* D, const T* z_in, T* y_out, T* last, T* ck,
                   int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, d0 = blk * W;
  States<T, N> state(n);
  V<T>* h = state.data;
  std::vector<T> u_block(s.l * W), dt_block(s.l * W), y_block(s.l * W);
  gather_block(s, u_in, u_block.data(), bi, d0);
  gather_block(s, dt_in, dt_block.data(), bi, d0);
  std::vector<T> z_block(z_in == nullptr ? 0 : s.l * W);
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
      h[j] = vexp<T>(step * load(A + j * s.dp + d0)) * h[j] + v * B.at(bi, t, j, d0);
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
void backward_block(const Dims& s, const T* u_in, const T* dt_in, const T* A, Input<T, SelB> B,
                    Input<T, SelC> C, const T* D, const T* z_in, const T* ck,
                    const T* dy_in, const T* dlast, T* du_out, T* ddt_out, T* dz_out,
                    T* dD_part, T* dA_part, T* dB_part, T* dC_part, int64_t bi, int64_t blk) {
  const int64_t n = N > 0 ? N : s.n, K = s.K, d0 = blk * W, nw = n * W;
  // states and decays of one chunk; the adjoint carry r = exp(dt_{t+1} A) g_{t+1}; sums
  std::vector<V<T>> hs((K + 1) * n), decay(K * n), r(n), dA(n, V<T>{}), dBw(n, V<T>{}),
      dCw(n, V<T>{});
  std::vector<T> u_block(s.l * W), dt_block(s.l * W), dy_block(s.l * W), du_block(s.l * W),
      ddt_block(s.l * W);
  gather_block(s, u_in, u_block.data(), bi, d0);
  gather_block(s, dt_in, dt_block.data(), bi, d0);
  gather_block(s, dy_in, dy_block.data(), bi, d0);
  std::vector<T> z_block(z_in == nullptr ? 0 : s.l * W), dz_block(z_block.size());
  if (z_in != nullptr) gather_block(s, z_in, z_block.data(), bi, d0);
  const T *u = u_block.data(), *dt = dt_block.data(), *dy = dy_block.data();
  T *du = du_block.data(), *ddt = ddt_block.data();
  const V<T> skip = D == nullptr ? V<T>{} : load(D + d0);
  V<T> dD{};
  for (int64_t j = 0; j < n; ++j) r[j] = load(dlast + (bi * s.blocks + blk) * nw + j * W);
  for (int64_t k = s.nk - 1; k >= 0; --k) {
    const int64_t t0 = k * K, len = std::min(K, s.l - t0);
    const T* start = ck + ((bi * s.blocks + blk) * s.nk + k) * nw;
    for (int64_t j = 0; j < n; ++j) hs[j] = load(start + j * W);
    for (int64_t i = 0; i < len; ++i) {  // the chunk's decays and states, again
      const int64_t t = t0 + i, row = t * W;
      const V<T> step = load(dt + row), v = step * load(u + row);
      const V<T>* hp = hs.data() + i * n;
      V<T>* hn = hs.data() + (i + 1) * n;
      V<T>* e = decay.data() + i * n;
#pragma GCC unroll 16
      for (int64_t j = 0; j < n; ++j) {
        e[j] = vexp<T>(step * load(A + j * s.dp + d0));
        hn[j] = e[j] * hp[j] + v * B.at(bi, t, j, d0);
      }
    }
    for (int64_t i = len - 1; i >= 0; --i) {  // adjoint, newest step first
      const int64_t t = t0 + i, row = t * W;
      const V<T> step = load(dt + row), ut = load(u + row), v = step * ut, dout = load(dy + row);
      // through the gate (y + D u) * silu(z): gy is the gradient of the scan's y
      const V<T> zt = z_in == nullptr ? V<T>{} : load(z_block.data() + row);
      const V<T> gate_sig = z_in == nullptr ? V<T>{} : sigmoid<T>(zt);
      const V<T> gy = z_in == nullptr ? dout : dout * zt * gate_sig;
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
        dBw[j] = (SelB ? V<T>{} : dBw[j]) + g * v;  // per step, or summed over time
        dCw[j] = (SelC ? V<T>{} : dCw[j]) + hn[j] * gy;
        r[j] = g * e[j];
        if (z_in != nullptr) y += hn[j] * C.at(bi, t, j, d0);  // y_t again, for dz
      }
      if (z_in != nullptr)  // d silu(z) / dz = sigmoid(z) (1 + z (1 - sigmoid(z)))
        store(dz_block.data() + row,
              dout * (y + skip * ut) * gate_sig * (T(1) + zt * (T(1) - gate_sig)));
      dD += gy * ut;
      // a selective B/C gets one gradient per step, summed over the block's channels
      if (SelB) row_sums<T, N>(reinterpret_cast<const T*>(dBw.data()),
                               dB_part + ((blk * s.b + bi) * s.l + t) * s.n, n);
      if (SelC) row_sums<T, N>(reinterpret_cast<const T*>(dCw.data()),
                               dC_part + ((blk * s.b + bi) * s.l + t) * s.n, n);
      store(ddt + row, sum_sa + load(u + row) * sum_gb);
      store(du + row, step * sum_gb + gy * skip);
    }
  }
  scatter_block(s, du, du_out, bi, d0);
  scatter_block(s, ddt, ddt_out, bi, d0);
  if (z_in != nullptr) scatter_block(s, dz_block.data(), dz_out, bi, d0);
  store(dD_part + bi * s.dp + d0, dD);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t at = (bi * s.n + j) * s.dp + d0;
    store(dA_part + at, dA[j]);
    if (!SelB) store(dB_part + at, dBw[j]);
    if (!SelC) store(dC_part + at, dCw[j]);
  }
}

Dims dims_of(const torch::Tensor& u, const torch::Tensor& A, int64_t K) {
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

template <typename F>
void for_each_block(const Dims& s, F fn) {
  at::parallel_for(0, s.b * s.blocks, 1, [&](int64_t begin, int64_t end) {
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

// D [dp] and z [b, d, l] are optional (empty tensors): out = (y + D u) * silu(z).
std::vector<torch::Tensor> forward(torch::Tensor u, torch::Tensor dt, torch::Tensor A,
                                   torch::Tensor B, torch::Tensor C, torch::Tensor D,
                                   torch::Tensor z, int64_t K, bool keep) {
  const Dims s = dims_of(u, A, K);
  auto y = torch::empty_like(u);
  auto last = torch::empty({s.b, s.blocks, s.n, W}, u.options());
  auto ck = torch::empty({keep ? s.b : 0, s.blocks, s.nk, s.n, W}, u.options());
  launch(s, u, B, C, [&](auto size, auto in_b, auto in_c, int64_t bi, int64_t blk) {
    using T = typename decltype(in_b)::Scalar;
    forward_block<T, decltype(size)::value>(
        s, data<T>(u), data<T>(dt), data<T>(A), in_b, in_c, data<T>(D), data<T>(z), data<T>(y),
        data<T>(last), data<T>(ck), bi, blk);
  });
  return {y, last, ck};
}

std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor dt, torch::Tensor A,
                                    torch::Tensor B, torch::Tensor C, torch::Tensor D,
                                    torch::Tensor z, torch::Tensor ck, torch::Tensor dy,
                                    torch::Tensor dlast, int64_t K) {
  const Dims s = dims_of(u, A, K);
  auto du = torch::empty_like(u);
  auto ddt = torch::empty_like(u);
  auto dA_part = torch::empty({s.b, s.n, s.dp}, u.options());
  auto dz = torch::empty({z.numel() ? s.b : 0, s.d, s.l}, u.options());
  auto dD_part = torch::empty({s.b, s.dp}, u.options());
  auto partial = [&](bool selective) {
    return selective ? torch::empty({s.blocks, s.b, s.l, s.n}, u.options())
                     : torch::empty({s.b, s.n, s.dp}, u.options());
  };
  auto dB_part = partial(B.dim() == 3);
  auto dC_part = partial(C.dim() == 3);
  launch(s, u, B, C, [&](auto size, auto in_b, auto in_c, int64_t bi, int64_t blk) {
    using T = typename decltype(in_b)::Scalar;
    backward_block<T, decltype(size)::value>(
        s, data<T>(u), data<T>(dt), data<T>(A), in_b, in_c, data<T>(D), data<T>(z), data<T>(ck),
        data<T>(dy), data<T>(dlast), data<T>(du), data<T>(ddt), data<T>(dz), data<T>(dD_part),
        data<T>(dA_part), data<T>(dB_part), data<T>(dC_part), bi, blk);
  });
  return {du, ddt, dA_part, dB_part, dC_part, dz, dD_part};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused selective scan, forward: (gated output, last state, checkpoints)");
  m.def("backward", &backward, "fused selective scan, backward: (du, ddt, dA, dB, dC, dz, dD partials)");
}
