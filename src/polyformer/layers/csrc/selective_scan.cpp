// Mamba's CPU kernels: the selective scan (Gu & Dao 2023), fused with what surrounds it in the
// mixer, and the causal depthwise convolution with its bias and SiLU (at the end of this file).
//
//   Δ_t = softplus(δ_t W_Δᵀ + b_Δ)  (or δ_t as given),   a_t = exp(Δ_t A),
//   h_t = a_t ⊙ h_{t-1} + (Δ_t x_t) B_t,   y_t = Σ_n C_t[n] h_t[n] + D x_t,   out_t = y_t · silu(z_t)
//
// per channel d and state index n (the interface of mamba_ssm's selective_scan_fn, plus Δ's
// projection). Channels are cut into blocks of BLOCK; each thread of torch's pool takes a run of
// neighbouring blocks of one batch row and advances all of them one position at a time, with the
// states [n][BLOCK] in cache and the innermost loops over a block's channels (vectorised: the decay
// exp inlined, softplus and sigmoid from glibc's vector math library). One pass over the inputs. The
// backward recomputes the states chunk by chunk from those saved at every q_len-th position and runs
// the adjoint g_t = C_t dy_t + a_{t+1} ⊙ g_{t+1} in reverse.
// Layouts: x, z, out [b, L, d]; δ [b, L, r] (or Δ [b, L, d]); B, C [b, L, n]; At = A transposed
// [n, d]; Wt = W_Δ transposed [r, d]; states [b, d, n].
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using Opt = c10::optional<at::Tensor>;
constexpr int64_t BLOCK = 64;
constexpr int64_t BWD_RUN = 4;  // blocks advanced together in the backward (see scan_backward)

template <typename T>
struct Args {
  const T *x, *dt, *At, *B, *C, *h0, *D, *z, *bias;
  const T* Wt;  // if set, dt holds δ [b, L, r] and the raw Δ is δ Wt (Δ's projection fused in)
  bool softplus;
  int64_t nb, L, d, n, q_len, r;
  int64_t zs0, zs1;  // z's batch and position strides (its channels are contiguous)

  int64_t zrow(int64_t bi, int64_t t, int64_t d0) const { return bi * zs0 + t * zs1 + d0; }
};

// exp's argument Δ A is floored here: the decay is then ~1e-35 (float) or ~1e-304 (double) instead
// of something smaller, a difference far below rounding of the state it multiplies, and the vector
// exp stays off its slow path for results that underflow (4-5x slower when Δ A < -88 is common).
template <typename T>
inline T min_exp_arg();
template <>
inline float min_exp_arg<float>() {
  return -80.0f;
}
template <>
inline double min_exp_arg<double>() {
  return -700.0;
}

// The decay exp(Δ A) for arguments in [min_exp_arg, 0]. float: exp inlined (Cody-Waite reduction
// x = k ln2 + r, |r| <= ln2/2, then exp(r) by its Taylor polynomial to r^6, times 2^k built in the
// exponent bits): relative error below 2.5e-7 over [-80, 0] (2.31e-7 on a dense sweep, about 2
// float ulp; the library's is 1), and it vectorises without a call or special cases: the forward
// scan takes 2/3 of the time.
// double: the library exp.
template <typename T>
inline T decay_exp(T x) {
  return std::exp(x);
}
template <>
inline float decay_exp<float>(float x) {
  const float k = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(k, -0.693145751953125f, x);  // ln2 split in a part exact in float and the rest
  r = std::fma(k, -1.428606765330187045e-06f, r);
  float e = 1.0f / 720.0f;
  e = std::fma(e, r, 1.0f / 120.0f);
  e = std::fma(e, r, 1.0f / 24.0f);
  e = std::fma(e, r, 1.0f / 6.0f);
  e = std::fma(e, r, 0.5f);
  e = std::fma(e, r, 1.0f);
  e = std::fma(e, r, 1.0f);
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k, k in [-116, 0]: a normal float
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

template <typename T>
inline T softplus(T v) {
  return v > T(20) ? v : std::log1p(std::exp(v));  // torch's threshold
}

template <typename T>
inline T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// Δ for one position of one block
template <typename T>
inline void delta(const Args<T>& p, int64_t bi, int64_t t, int64_t d0, int64_t db, T* out) {
  if (p.Wt) {
    const T* dl = p.dt + (bi * p.L + t) * p.r;
    for (int64_t j = 0; j < db; ++j) out[j] = p.bias ? p.bias[d0 + j] : T(0);
    for (int64_t k = 0; k < p.r; ++k) {
      const T v = dl[k];
      const T* w = p.Wt + k * p.d + d0;
#pragma omp simd
      for (int64_t j = 0; j < db; ++j) out[j] += v * w[j];
    }
  } else {
    const T* dtt = p.dt + (bi * p.L + t) * p.d + d0;
    if (p.bias) {
#pragma omp simd
      for (int64_t j = 0; j < db; ++j) out[j] = dtt[j] + p.bias[d0 + j];
    } else {
      std::copy(dtt, dtt + db, out);
    }
  }
  if (p.softplus) {
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) out[j] = softplus(out[j]);
  }
}

// Copies between a block's state [n][BLOCK] and the [b, d, n] layout.
template <typename T>
void state_in(const Args<T>& p, const T* src, T* h, int64_t bi, int64_t d0, int64_t db) {
  for (int64_t j = 0; j < db; ++j)
    for (int64_t k = 0; k < p.n; ++k) h[k * BLOCK + j] = src[(bi * p.d + d0 + j) * p.n + k];
}

template <typename T>
void state_out(const Args<T>& p, const T* h, T* dst, int64_t bi, int64_t d0, int64_t db) {
  for (int64_t j = 0; j < db; ++j)
    for (int64_t k = 0; k < p.n; ++k) dst[(bi * p.d + d0 + j) * p.n + k] = h[k * BLOCK + j];
}

// One position t of one block of channels: the state h [n][BLOCK] moves from h_{t-1} to h_t and the
// output of the position is written. FULL: the block has all BLOCK channels, so every inner loop
// has a compile-time trip count (unrolled, no remainder); only a last, partial block takes the
// general path.
template <typename T, bool FULL>
inline void forward_step(const Args<T>& p, T* h, T* out, int64_t bi, int64_t t, int64_t d0) {
  const int64_t n = p.n, db = FULL ? BLOCK : std::min(BLOCK, p.d - d0);
  const T lo = min_exp_arg<T>();
  T dtv[BLOCK], u[BLOCK], acc[BLOCK];
  const int64_t row = (bi * p.L + t) * p.d + d0;
  const T* xt = p.x + row;
  const T* Bt = p.B + (bi * p.L + t) * n;
  const T* Ct = p.C + (bi * p.L + t) * n;
  delta(p, bi, t, d0, db, dtv);
  for (int64_t j = 0; j < db; ++j) {
    u[j] = dtv[j] * xt[j];
    acc[j] = T(0);
  }
  for (int64_t k = 0; k < n; ++k) {
    const T bk = Bt[k], ck = Ct[k];
    const T* Ak = p.At + k * p.d + d0;
    T* hk = h + k * BLOCK;
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) {
      const T hv = decay_exp(std::max(dtv[j] * Ak[j], lo)) * hk[j] + u[j] * bk;
      hk[j] = hv;
      acc[j] += hv * ck;
    }
  }
  T* ot = out + row;
  if (p.D) {
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) acc[j] += p.D[d0 + j] * xt[j];
  }
  if (p.z) {
    const T* zt = p.z + p.zrow(bi, t, d0);
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) ot[j] = acc[j] * zt[j] * sigmoid(zt[j]);
  } else {
    std::copy(acc, acc + db, ot);
  }
}

// Blocks blk0..blk1-1 of batch row bi, all of them advanced one position at a time: each position
// then reads one contiguous stretch of every [b, L, d] input (which the hardware prefetcher follows;
// one block at a time through the whole sequence would read 256-byte pieces 2 KB or more apart).
template <typename T>
void forward_range(const Args<T>& p, T* out, T* h_out, T* starts, int64_t bi, int64_t blk0, int64_t blk1) {
  const int64_t stride = p.n * BLOCK, nblk = blk1 - blk0;
  std::vector<T> hs(nblk * stride, T(0));
  auto width = [&](int64_t i) { return std::min(BLOCK, p.d - (blk0 + i) * BLOCK); };
  if (p.h0) {
    for (int64_t i = 0; i < nblk; ++i) state_in(p, p.h0, hs.data() + i * stride, bi, (blk0 + i) * BLOCK, width(i));
  }
  for (int64_t t = 0; t < p.L; ++t) {
    if (starts && t % p.q_len == 0) {
      T* s = starts + (t / p.q_len) * p.nb * p.d * p.n;
      for (int64_t i = 0; i < nblk; ++i) state_out(p, hs.data() + i * stride, s, bi, (blk0 + i) * BLOCK, width(i));
    }
    for (int64_t i = 0; i < nblk; ++i) {
      const int64_t d0 = (blk0 + i) * BLOCK;
      if (d0 + BLOCK <= p.d)
        forward_step<T, true>(p, hs.data() + i * stride, out, bi, t, d0);
      else
        forward_step<T, false>(p, hs.data() + i * stride, out, bi, t, d0);
    }
  }
  for (int64_t i = 0; i < nblk; ++i) state_out(p, hs.data() + i * stride, h_out, bi, (blk0 + i) * BLOCK, width(i));
}

template <typename T>
struct Grads {
  const T *gout, *gh;
  T *gx, *gdt, *gAt, *gBp, *gCp, *gh0, *gD, *gz, *gbias;
};

// What the backward keeps for one block of channels while it walks one chunk of q_len positions:
// the true states H_0..H_Q [Q+1][n][BLOCK], decays a [Q][n][BLOCK], Δ [Q][BLOCK], the adjoint g
// [n][BLOCK], and the block's gradient sums over positions.
template <typename T>
struct Work {
  std::vector<T> H, a, dts, g, gA, gD, gb;
  Work(int64_t Q, int64_t n)
      : H((Q + 1) * n * BLOCK), a(Q * n * BLOCK), dts(Q * BLOCK), g(n * BLOCK, T(0)), gA(n * BLOCK, T(0)),
        gD(BLOCK, T(0)), gb(BLOCK, T(0)) {}
};

// Position t (= chunk start + i): H_{i+1} from H_i, keeping Δ_t and a_t.
template <typename T, bool FULL>
inline void recompute_step(const Args<T>& p, Work<T>& w, int64_t bi, int64_t t, int64_t i, int64_t d0) {
  const int64_t n = p.n, stride = n * BLOCK, db = FULL ? BLOCK : std::min(BLOCK, p.d - d0);
  const T lo = min_exp_arg<T>();
  const T* xt = p.x + (bi * p.L + t) * p.d + d0;
  const T* Bt = p.B + (bi * p.L + t) * n;
  T* dtv = w.dts.data() + i * BLOCK;
  T u[BLOCK];
  delta(p, bi, t, d0, db, dtv);
  for (int64_t j = 0; j < db; ++j) u[j] = dtv[j] * xt[j];
  for (int64_t k = 0; k < n; ++k) {
    const T bk = Bt[k];
    const T* Ak = p.At + k * p.d + d0;
    const T* hp = w.H.data() + i * stride + k * BLOCK;
    T* hn = w.H.data() + (i + 1) * stride + k * BLOCK;
    T* ak = w.a.data() + i * stride + k * BLOCK;
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) {
      const T av = decay_exp(std::max(dtv[j] * Ak[j], lo));
      ak[j] = av;
      hn[j] = av * hp[j] + u[j] * bk;
    }
  }
}

// Position t, backwards: the adjoint g from g_{t+1}-carried to g_t and on into t-1, and every
// gradient of the position. gB, gC get this block's share of their sums over channels.
template <typename T, bool FULL>
inline void adjoint_step(const Args<T>& p, const Grads<T>& q, Work<T>& w, int64_t bi, int64_t t, int64_t i,
                         int64_t blk) {
  const int64_t n = p.n, d = p.d, L = p.L, stride = n * BLOCK, d0 = blk * BLOCK;
  const int64_t db = FULL ? BLOCK : std::min(BLOCK, d - d0), row = (bi * L + t) * d + d0;
  const T* dtv = w.dts.data() + i * BLOCK;
  const T* xt = p.x + row;
  const T* got = q.gout + row;
  const T* Bt = p.B + (bi * L + t) * n;
  const T* Ct = p.C + (bi * L + t) * n;
  const T* zt = p.z ? p.z + p.zrow(bi, t, d0) : nullptr;
  T* gBt = q.gBp + ((blk * p.nb + bi) * L + t) * n;
  T* gCt = q.gCp + ((blk * p.nb + bi) * L + t) * n;
  T u[BLOCK], gu[BLOCK], gda[BLOCK], gd[BLOCK], gy[BLOCK], y[BLOCK];
  for (int64_t j = 0; j < db; ++j) {
    u[j] = dtv[j] * xt[j];
    gy[j] = zt ? got[j] * zt[j] * sigmoid(zt[j]) : got[j];  // dL/dy_t
    gu[j] = gda[j] = y[j] = T(0);
  }
  for (int64_t k = 0; k < n; ++k) {
    const T bk = Bt[k], ck = Ct[k];
    const T* Ak = p.At + k * d + d0;
    const T* hp = w.H.data() + i * stride + k * BLOCK;
    const T* hn = w.H.data() + (i + 1) * stride + k * BLOCK;
    const T* ak = w.a.data() + i * stride + k * BLOCK;
    T* gk = w.g.data() + k * BLOCK;
    T* gAk = w.gA.data() + k * BLOCK;
    T sC = T(0), sB = T(0);
#pragma omp simd reduction(+ : sC, sB)
    for (int64_t j = 0; j < db; ++j) {
      const T gv = gk[j] + ck * gy[j];  // g_t
      y[j] += ck * hn[j];
      sC += gy[j] * hn[j];
      sB += u[j] * gv;
      gu[j] += gv * bk;
      const T dla = gv * hp[j] * ak[j];  // d(log a_t)
      gAk[j] += dla * dtv[j];
      gda[j] += dla * Ak[j];
      gk[j] = gv * ak[j];  // into position t-1
    }
    gCt[k] = sC;
    gBt[k] = sB;
  }
  for (int64_t j = 0; j < db; ++j) {
    const T Dj = p.D ? p.D[d0 + j] : T(0);
    if (zt) {
      const T zv = zt[j], sg = sigmoid(zv);
      q.gz[row + j] = got[j] * (y[j] + Dj * xt[j]) * sg * (T(1) + zv * (T(1) - sg));
    }
    w.gD[j] += gy[j] * xt[j];
    q.gx[row + j] = gu[j] * dtv[j] + gy[j] * Dj;
    gd[j] = gu[j] * xt[j] + gda[j];  // dL/dΔ_t
  }
  if (p.softplus) {  // softplus'(v) = sigmoid(v) = 1 - exp(-softplus(v))
#pragma omp simd
    for (int64_t j = 0; j < db; ++j) gd[j] *= -std::expm1(-dtv[j]);
  }
  for (int64_t j = 0; j < db; ++j) {  // now dL/d(raw Δ), raw Δ = dt + bias or δ Wt + bias
    w.gb[j] += gd[j];
    q.gdt[row + j] = gd[j];
  }
}

// Blocks blk0..blk1-1 of batch row bi, chunk by chunk from the end: recompute the chunk's states
// from its saved start, then run the adjoint back through it; every position handles all blocks
// (contiguous reads, as in forward_range).
template <typename T>
void backward_range(const Args<T>& p, const T* starts, const Grads<T>& q, int64_t bi, int64_t blk0, int64_t blk1) {
  const int64_t n = p.n, d = p.d, Q = p.q_len, nblk = blk1 - blk0;
  std::vector<Work<T>> ws;
  ws.reserve(nblk);
  for (int64_t i = 0; i < nblk; ++i) ws.emplace_back(Q, n);
  auto width = [&](int64_t i) { return std::min(BLOCK, d - (blk0 + i) * BLOCK); };
  auto full = [&](int64_t i) { return (blk0 + i + 1) * BLOCK <= d; };
  if (q.gh) {
    for (int64_t i = 0; i < nblk; ++i) state_in(p, q.gh, ws[i].g.data(), bi, (blk0 + i) * BLOCK, width(i));
  }
  const int64_t nc = (p.L + Q - 1) / Q;
  for (int64_t c = nc - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, len = std::min(Q, p.L - t0);
    for (int64_t i = 0; i < nblk; ++i)
      state_in(p, starts + c * p.nb * d * n, ws[i].H.data(), bi, (blk0 + i) * BLOCK, width(i));
    for (int64_t s = 0; s < len; ++s) {
      for (int64_t i = 0; i < nblk; ++i) {
        if (full(i))
          recompute_step<T, true>(p, ws[i], bi, t0 + s, s, (blk0 + i) * BLOCK);
        else
          recompute_step<T, false>(p, ws[i], bi, t0 + s, s, (blk0 + i) * BLOCK);
      }
    }
    for (int64_t s = len - 1; s >= 0; --s) {
      for (int64_t i = 0; i < nblk; ++i) {
        if (full(i))
          adjoint_step<T, true>(p, q, ws[i], bi, t0 + s, s, blk0 + i);
        else
          adjoint_step<T, false>(p, q, ws[i], bi, t0 + s, s, blk0 + i);
      }
    }
  }
  for (int64_t i = 0; i < nblk; ++i) {
    const int64_t d0 = (blk0 + i) * BLOCK, db = width(i);
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < db; ++j) q.gAt[(bi * n + k) * d + d0 + j] = ws[i].gA[k * BLOCK + j];
    for (int64_t j = 0; j < db; ++j) {
      q.gD[bi * d + d0 + j] = ws[i].gD[j];
      q.gbias[bi * d + d0 + j] = ws[i].gb[j];
    }
    state_out(p, ws[i].g.data(), q.gh0, bi, d0, db);
  }
}

void check(const Opt& t, const char* name, const at::Tensor& x, int64_t numel) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t->is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t->scalar_type() == x.scalar_type(), name, " must have the dtype of x");
  TORCH_CHECK(t->numel() == numel, name, " has ", t->numel(), " elements, expected ", numel);
}

template <typename T>
const T* ptr(const Opt& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

template <typename T>
Args<T> make_args(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& At, const at::Tensor& B,
                  const at::Tensor& C, const Opt& h0, const Opt& D, const Opt& z, const Opt& bias, const Opt& Wt,
                  bool softplus, int64_t q_len) {
  const int64_t zs0 = z.has_value() ? z->stride(0) : 0, zs1 = z.has_value() ? z->stride(1) : 0;
  return {x.data_ptr<T>(), dt.data_ptr<T>(), At.data_ptr<T>(), B.data_ptr<T>(), C.data_ptr<T>(),
          ptr<T>(h0),      ptr<T>(D),        ptr<T>(z),        ptr<T>(bias),    ptr<T>(Wt),
          softplus,        x.size(0),        x.size(1),        x.size(2),       At.size(0),
          q_len,           Wt.has_value() ? Wt->size(0) : 0,   zs0,             zs1};
}

void check_all(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& At, const at::Tensor& B,
               const at::Tensor& C, const Opt& h0, const Opt& D, const Opt& z, const Opt& bias, const Opt& Wt,
               int64_t q_len) {
  TORCH_CHECK(x.dim() == 3 && At.dim() == 2, "x must be [b, L, d] and At [n, d]");
  TORCH_CHECK(q_len > 0, "q_len must be positive");
  const int64_t b = x.size(0), L = x.size(1), d = x.size(2), n = At.size(0);
  check(x, "x", x, b * L * d);
  if (Wt.has_value()) {
    TORCH_CHECK(Wt->dim() == 2 && Wt->size(1) == d, "dt_proj_t must be [r, d]");
    check(Wt, "dt_proj_t", x, Wt->numel());
    check(dt, "dt (δ, with dt_proj_t)", x, b * L * Wt->size(0));
  } else {
    check(dt, "dt", x, b * L * d);
  }
  check(At, "At", x, n * d);
  check(B, "B", x, b * L * n);
  check(C, "C", x, b * L * n);
  check(h0, "h0", x, b * d * n);
  check(D, "D", x, d);
  if (z.has_value()) {  // z may be a view with rows apart (a chunk of the input projection)
    TORCH_CHECK(z->device().is_cpu() && z->scalar_type() == x.scalar_type(), "z must be a CPU tensor of x's dtype");
    TORCH_CHECK(z->dim() == 3 && z->size(0) == b && z->size(1) == L && z->size(2) == d && z->stride(2) == 1,
                "z must be [b, L, d] with contiguous channels");
  }
  check(bias, "dt_bias", x, d);
}

// ---------------------------------------------------------------------------------------------
// Causal depthwise convolution (Mamba's conv1d, one filter per channel) fused with its bias and SiLU:
//   pre_t = bias + Σ_{k<K} w_k · xp_{t+k},   y_t = silu(pre_t),   xp = [prev (K-1 positions); x]
// x [b, L, d] with contiguous channels (a view of the input projection is fine); prev [b, d, K-1]
// (Mamba's conv state; zeros if absent); wt = weights transposed [K, d]. Backward, with
// g_t = dL/dpre_t: dx_s = Σ_k w_k g_{s+K-1-k}, dw_k = Σ_t g_t xp_{t+k}, dbias = Σ_t g_t.

template <typename T>
struct ConvArgs {
  const T *x, *prev, *wt, *bias;
  bool silu;
  int64_t L, d, K, xs0, xs1;

  // xp_i for channels c0.. of batch row bi, into buf (i < K-1 reads prev)
  const T* row(int64_t bi, int64_t i, int64_t c0, int64_t cw, T* buf) const {
    if (i >= K - 1) return x + bi * xs0 + (i - (K - 1)) * xs1 + c0;
    for (int64_t j = 0; j < cw; ++j) buf[j] = prev ? prev[(bi * d + c0 + j) * (K - 1) + i] : T(0);
    return buf;
  }
};

template <typename T>
void conv_forward_range(const ConvArgs<T>& p, T* y, int64_t bi, int64_t c0, int64_t c1) {
  const int64_t cw = c1 - c0;
  std::vector<T> acc(cw), buf(cw);
  for (int64_t t = 0; t < p.L; ++t) {
    for (int64_t j = 0; j < cw; ++j) acc[j] = p.bias ? p.bias[c0 + j] : T(0);
    for (int64_t k = 0; k < p.K; ++k) {
      const T* xr = p.row(bi, t + k, c0, cw, buf.data());
      const T* w = p.wt + k * p.d + c0;
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) acc[j] += w[j] * xr[j];
    }
    T* yt = y + (bi * p.L + t) * p.d + c0;
    if (p.silu) {
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) yt[j] = acc[j] * sigmoid(acc[j]);
    } else {
      std::copy(acc.begin(), acc.end(), yt);
    }
  }
}

// gpre: scratch [b, L, d] for dL/dpre. gw, gbias: this batch row's sums [K, d] and [d].
template <typename T>
void conv_backward_range(const ConvArgs<T>& p, const T* gy, T* gpre, T* gx, T* gprev, T* gw, T* gbias, int64_t bi,
                         int64_t c0, int64_t c1) {
  const int64_t cw = c1 - c0, L = p.L, d = p.d, K = p.K;
  std::vector<T> pre(cw), buf(cw);
  for (int64_t t = 0; t < L; ++t) {  // g_t, and dbias, dw from it
    for (int64_t j = 0; j < cw; ++j) pre[j] = p.bias ? p.bias[c0 + j] : T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T* xr = p.row(bi, t + k, c0, cw, buf.data());
      const T* w = p.wt + k * d + c0;
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) pre[j] += w[j] * xr[j];
    }
    const T* gyt = gy + (bi * L + t) * d + c0;
    T* gt = gpre + (bi * L + t) * d + c0;
    if (p.silu) {
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) {
        const T sg = sigmoid(pre[j]);
        gt[j] = gyt[j] * sg * (T(1) + pre[j] * (T(1) - sg));
      }
    } else {
      std::copy(gyt, gyt + cw, gt);
    }
    for (int64_t j = 0; j < cw; ++j) gbias[c0 + j] += gt[j];
    for (int64_t k = 0; k < K; ++k) {
      const T* xr = p.row(bi, t + k, c0, cw, buf.data());
      T* gwk = gw + k * d + c0;
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) gwk[j] += gt[j] * xr[j];
    }
  }
  for (int64_t i = 0; i < L + K - 1; ++i) {  // dxp_i = Σ_k w_k g_{i-k}
    for (int64_t j = 0; j < cw; ++j) buf[j] = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = i - k;
      if (t < 0 || t >= L) continue;
      const T* gt = gpre + (bi * L + t) * d + c0;
      const T* w = p.wt + k * d + c0;
#pragma omp simd
      for (int64_t j = 0; j < cw; ++j) buf[j] += w[j] * gt[j];
    }
    if (i >= K - 1) {
      std::copy(buf.begin(), buf.end(), gx + (bi * L + i - (K - 1)) * d + c0);
    } else if (gprev) {
      for (int64_t j = 0; j < cw; ++j) gprev[(bi * d + c0 + j) * (K - 1) + i] = buf[j];
    }
  }
}

template <typename T>
ConvArgs<T> make_conv_args(const at::Tensor& x, const Opt& prev, const at::Tensor& wt, const Opt& bias, bool silu) {
  return {x.data_ptr<T>(), ptr<T>(prev), wt.data_ptr<T>(), ptr<T>(bias), silu,
          x.size(1),       x.size(2),    wt.size(0),       x.stride(0),  x.stride(1)};
}

void check_conv(const at::Tensor& x, const Opt& prev, const at::Tensor& wt, const Opt& bias) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.stride(2) == 1, "x must be a CPU [b, L, d] tensor with contiguous channels");
  const int64_t b = x.size(0), d = x.size(2), K = wt.size(0);
  TORCH_CHECK(wt.dim() == 2 && wt.size(1) == d && K >= 1, "wt must be [K, d]");
  check(wt, "wt", x, K * d);
  check(prev, "prev", x, b * d * (K - 1));
  check(bias, "bias", x, d);
}

// units of work: (batch row, run of channels), at least 64 channels each
template <typename F>
void for_channel_runs(int64_t b, int64_t d, F f) {
  const int64_t nblk = (d + BLOCK - 1) / BLOCK;
  at::parallel_for(0, b * nblk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end;) {
      const int64_t bi = w / nblk, stop = std::min(end, (bi + 1) * nblk);
      f(bi, (w % nblk) * BLOCK, std::min(d, (w % nblk + stop - w) * BLOCK));
      w = stop;
    }
  });
}

}  // namespace

at::Tensor conv_forward(const at::Tensor& x, const Opt& prev, const at::Tensor& wt, const Opt& bias, bool silu) {
  check_conv(x, prev, wt, bias);
  auto y = at::empty({x.size(0), x.size(1), x.size(2)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_forward", [&] {
    const auto p = make_conv_args<scalar_t>(x, prev, wt, bias, silu);
    for_channel_runs(x.size(0), x.size(2), [&](int64_t bi, int64_t c0, int64_t c1) {
      conv_forward_range<scalar_t>(p, y.data_ptr<scalar_t>(), bi, c0, c1);
    });
  });
  return y;
}

// Returns dx [b, L, d], dprev [b, d, K-1] (empty without prev), dwt [K, d], dbias [d].
std::vector<at::Tensor> conv_backward(const at::Tensor& x, const Opt& prev, const at::Tensor& wt, const Opt& bias,
                                      bool silu, const at::Tensor& gy) {
  check_conv(x, prev, wt, bias);
  const int64_t b = x.size(0), L = x.size(1), d = x.size(2), K = wt.size(0);
  check(gy, "gy", x, b * L * d);
  auto gx = at::empty({b, L, d}, x.options()), gpre = at::empty({b, L, d}, x.options());
  auto gprev = prev.has_value() ? at::empty({b, d, K - 1}, x.options()) : at::Tensor();
  auto gw = at::zeros({b, K, d}, x.options()), gbias = at::zeros({b, d}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_backward", [&] {
    const auto p = make_conv_args<scalar_t>(x, prev, wt, bias, silu);
    for_channel_runs(b, d, [&](int64_t bi, int64_t c0, int64_t c1) {
      conv_backward_range<scalar_t>(p, gy.data_ptr<scalar_t>(), gpre.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
                                    prev.has_value() ? gprev.data_ptr<scalar_t>() : nullptr,
                                    gw.data_ptr<scalar_t>() + bi * K * d, gbias.data_ptr<scalar_t>() + bi * d, bi, c0,
                                    c1);
    });
  });
  return {gx, gprev, gw.sum(0), gbias.sum(0)};
}

// Returns out [b, L, d], the final state [b, d, n] and, if save_starts, the states entering each
// chunk of q_len positions [ceil(L / q_len), b, d, n] (what the backward needs).
std::vector<at::Tensor> scan_forward(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& At,
                                     const at::Tensor& B, const at::Tensor& C, const Opt& h0,
                                     const Opt& D, const Opt& z,
                                     const Opt& dt_bias, const Opt& dt_proj_t, bool dt_softplus,
                                     int64_t q_len, bool save_starts) {
  check_all(x, dt, At, B, C, h0, D, z, dt_bias, dt_proj_t, q_len);
  const int64_t b = x.size(0), L = x.size(1), d = x.size(2), n = At.size(0);
  auto out = at::empty({b, L, d}, x.options());
  auto h = at::empty({b, d, n}, x.options());
  auto starts = save_starts ? at::empty({(L + q_len - 1) / q_len, b, d, n}, x.options()) : at::Tensor();
  const int64_t nblk = (d + BLOCK - 1) / BLOCK;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scan_forward", [&] {
    const auto p = make_args<scalar_t>(x, dt, At, B, C, h0, D, z, dt_bias, dt_proj_t, dt_softplus, q_len);
    scalar_t* sp = save_starts ? starts.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, b * nblk, 1, [&](int64_t begin, int64_t end) {
      // this thread's units, a contiguous range: per batch row, a run of neighbouring blocks
      for (int64_t w = begin; w < end;) {
        const int64_t bi = w / nblk, stop = std::min(end, (bi + 1) * nblk);
        forward_range<scalar_t>(p, out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), sp, bi, w % nblk,
                                w % nblk + (stop - w));
        w = stop;
      }
    });
  });
  return {out, h, starts};
}

// Gradients of scan_forward's (out, final state), given the starts it saved: x, raw Δ (before bias
// and softplus; with dt_proj_t the caller takes it on to δ and the projection), At, B, C, h0, D, z
// (empty when z is absent) and dt_bias.
std::vector<at::Tensor> scan_backward(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& At,
                                      const at::Tensor& B, const at::Tensor& C, const Opt& D,
                                      const Opt& z, const Opt& dt_bias, const Opt& dt_proj_t,
                                      bool dt_softplus, const at::Tensor& starts, const at::Tensor& gout,
                                      const Opt& gh, int64_t q_len) {
  check_all(x, dt, At, B, C, c10::nullopt, D, z, dt_bias, dt_proj_t, q_len);
  const int64_t b = x.size(0), L = x.size(1), d = x.size(2), n = At.size(0);
  const int64_t nblk = (d + BLOCK - 1) / BLOCK;
  check(starts, "starts", x, ((L + q_len - 1) / q_len) * b * d * n);
  check(gout, "gout", x, b * L * d);
  check(gh, "gh", x, b * d * n);
  auto gx = at::empty_like(x), gdt = at::empty_like(x);
  auto gz = z.has_value() ? at::empty_like(x) : at::Tensor();
  auto gAt = at::empty({b, n, d}, x.options());
  auto gBp = at::empty({nblk, b, L, n}, x.options()), gCp = at::empty({nblk, b, L, n}, x.options());
  auto gh0 = at::empty({b, d, n}, x.options());
  auto gD = at::empty({b, d}, x.options()), gbias = at::empty({b, d}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scan_backward", [&] {
    const auto p = make_args<scalar_t>(x, dt, At, B, C, c10::nullopt, D, z, dt_bias, dt_proj_t, dt_softplus, q_len);
    const Grads<scalar_t> q{gout.data_ptr<scalar_t>(), ptr<scalar_t>(gh),       gx.data_ptr<scalar_t>(),
                            gdt.data_ptr<scalar_t>(),  gAt.data_ptr<scalar_t>(), gBp.data_ptr<scalar_t>(),
                            gCp.data_ptr<scalar_t>(),  gh0.data_ptr<scalar_t>(), gD.data_ptr<scalar_t>(),
                            z.has_value() ? gz.data_ptr<scalar_t>() : nullptr, gbias.data_ptr<scalar_t>()};
    const scalar_t* sp = starts.data_ptr<scalar_t>();
    at::parallel_for(0, b * nblk, 1, [&](int64_t begin, int64_t end) {
      // at most BWD_RUN blocks at a time: each holds (2 q_len + 1) states in the backward, and
      // wide models would otherwise keep tens of MB live per thread
      for (int64_t w = begin; w < end;) {
        const int64_t bi = w / nblk, stop = std::min({end, (bi + 1) * nblk, w + BWD_RUN});
        backward_range<scalar_t>(p, sp, q, bi, w % nblk, w % nblk + (stop - w));
        w = stop;
      }
    });
  });
  return {gx, gdt, gAt.sum(0), gBp.sum(0), gCp.sum(0), gh0, gD.sum(0), gz, gbias.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scan_forward", &scan_forward, "selective scan (fused Δ bias/softplus, D skip, silu(z) gate), forward");
  m.def("scan_backward", &scan_backward, "selective scan, backward");
  m.def("conv_forward", &conv_forward, "causal depthwise conv1d + bias + silu, forward");
  m.def("conv_backward", &conv_backward, "causal depthwise conv1d + bias + silu, backward");
}
