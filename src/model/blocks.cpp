#include "model/blocks.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>
#include <cblas.h>

#include "common/system.h"

namespace mtrank::model {

void truncated_normal_(torch::Tensor t, double std) {
  torch::NoGradGuard no_grad;
  const double lo = (1.0 + std::erf(-2.0 / std::sqrt(2.0))) / 2.0, hi = (1.0 + std::erf(2.0 / std::sqrt(2.0))) / 2.0;
  t.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * std::sqrt(2.0));
}

torch::Tensor linear_init(std::vector<std::int64_t> shape, std::int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty(shape).uniform_(-bound, bound);
}

GroupedMLPImpl::GroupedMLPImpl(std::int64_t groups, std::int64_t in, const std::vector<std::int64_t>& sizes,
                               bool relu_last)
    : relu_last_(relu_last), out_(in) {
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    weights_.push_back(register_parameter("w" + std::to_string(i), linear_init({groups, in, sizes[i]}, in)));
    biases_.push_back(register_parameter("b" + std::to_string(i), linear_init({groups, 1, sizes[i]}, in)));
    in = sizes[i];
  }
  out_ = in;
}

namespace {

// Small grouped MLPs (the towers) in one autograd node: per group and layer a
// BLAS call and one pass for the bias and ReLU; backward likewise. LibTorch's
// baddbmm, relu and their backward were some 25 ops for census's two towers
// of [16 -> 8 -> 1], each costing more than its arithmetic.
class SmallGroupedMlp : public torch::autograd::Function<SmallGroupedMlp> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               torch::TensorList weights, torch::TensorList biases, bool relu_last) {
    const ScopedThreadCount one_blas_thread(1);  // small products; the same bits on any thread count
    const std::int64_t G = x_in.size(0), B = x_in.size(1), L = static_cast<std::int64_t>(weights.size());
    std::vector<torch::Tensor> saved{x_in.contiguous()};
    for (std::int64_t l = 0; l < L; ++l) {
      const torch::Tensor& h = saved.back();
      const torch::Tensor w = weights[l].contiguous(), b = biases[l].contiguous();
      const std::int64_t in = w.size(1), out = w.size(2);
      torch::Tensor z = torch::empty({G, B, out});
      const bool relu = relu_last || l + 1 < L;
      for (std::int64_t g = 0; g < G; ++g) {
        float* zp = z.data_ptr<float>() + g * B * out;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(B), static_cast<int>(out),
                    static_cast<int>(in), 1.0f, h.data_ptr<float>() + g * B * in, static_cast<int>(in),
                    w.data_ptr<float>() + g * in * out, static_cast<int>(out), 0.0f, zp, static_cast<int>(out));
        const float* bp = b.data_ptr<float>() + g * out;
        for (std::int64_t i = 0; i < B; ++i) {
          float* __restrict__ row = zp + i * out;
          if (relu)
            for (std::int64_t j = 0; j < out; ++j) row[j] = std::max(row[j] + bp[j], 0.0f);
          else
            for (std::int64_t j = 0; j < out; ++j) row[j] += bp[j];
        }
      }
      saved.push_back(z);
    }
    const torch::Tensor result = saved.back();
    for (std::int64_t l = 0; l < L; ++l) saved.push_back(weights[l].contiguous());
    ctx->save_for_backward(saved);
    ctx->saved_data["relu_last"] = relu_last;
    ctx->saved_data["layers"] = L;
    return result;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const ScopedThreadCount one_blas_thread(1);  // small products; the same bits on any thread count
    const auto saved = ctx->get_saved_variables();
    const std::int64_t L = ctx->saved_data["layers"].toInt();
    const bool relu_last = ctx->saved_data["relu_last"].toBool();
    // saved: h_0 (x), h_1 .. h_L (outputs), then the L weights.
    const std::int64_t G = saved[0].size(0), B = saved[0].size(1);
    std::vector<torch::Tensor> dw(static_cast<std::size_t>(L)), db(static_cast<std::size_t>(L));
    torch::Tensor dh = grads[0].contiguous();
    torch::Tensor dx;
    for (std::int64_t l = L - 1; l >= 0; --l) {
      const torch::Tensor &h_in = saved[static_cast<std::size_t>(l)], &h_out = saved[static_cast<std::size_t>(l + 1)];
      const torch::Tensor& w = saved[static_cast<std::size_t>(L + 1 + l)];
      const std::int64_t in = w.size(1), out = w.size(2);
      const bool relu = relu_last || l + 1 < L;
      torch::Tensor dz = torch::empty({G, B, out}), dbias = torch::empty({G, 1, out}), dweight = torch::empty({G, in, out});
      for (std::int64_t g = 0; g < G; ++g) {
        const float* yp = h_out.data_ptr<float>() + g * B * out;
        const float* gp = dh.data_ptr<float>() + g * B * out;
        float* dzp = dz.data_ptr<float>() + g * B * out;
        float* dbp = dbias.data_ptr<float>() + g * out;
        for (std::int64_t j = 0; j < out; ++j) dbp[j] = 0.0f;
        for (std::int64_t i = 0; i < B; ++i) {
          const float* __restrict__ yr = yp + i * out;
          const float* __restrict__ gr = gp + i * out;
          float* __restrict__ dr = dzp + i * out;
#pragma omp simd
          for (std::int64_t j = 0; j < out; ++j) {
            const float v = gr[j];
            dr[j] = !relu || yr[j] > 0.0f ? v : 0.0f;
          }
          for (std::int64_t j = 0; j < out; ++j) dbp[j] += dr[j];
        }
        // dW[g] = h_in[g]^T dz[g]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(in), static_cast<int>(out),
                    static_cast<int>(B), 1.0f, h_in.data_ptr<float>() + g * B * in, static_cast<int>(in), dzp,
                    static_cast<int>(out), 0.0f, dweight.data_ptr<float>() + g * in * out, static_cast<int>(out));
      }
      dw[static_cast<std::size_t>(l)] = dweight;
      db[static_cast<std::size_t>(l)] = dbias;
      if (l > 0 || ctx->needs_input_grad(0)) {
        torch::Tensor dprev = torch::empty({G, B, in});
        for (std::int64_t g = 0; g < G; ++g)  // dh_in[g] = dz[g] W[g]^T
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(B), static_cast<int>(in),
                      static_cast<int>(out), 1.0f, dz.data_ptr<float>() + g * B * out, static_cast<int>(out),
                      w.data_ptr<float>() + g * in * out, static_cast<int>(out), 0.0f,
                      dprev.data_ptr<float>() + g * B * in, static_cast<int>(in));
        if (l > 0) dh = dprev;
        else dx = dprev;
      }
    }
    torch::autograd::variable_list out{dx};
    for (auto& t : dw) out.push_back(t);
    for (auto& t : db) out.push_back(t);
    out.push_back(torch::Tensor());  // relu_last
    return out;
  }
};

// Multiply-adds of a grouped MLP layer up to which SmallGroupedMlp computes
// it (census's towers: 2 x 1024 x 16 x 8 = 262k); larger ones go to baddbmm.
constexpr std::int64_t kSmallGroupedWork = std::int64_t{1} << 22;

}  // namespace

torch::Tensor GroupedMLPImpl::forward(torch::Tensor x) {
  if (!ReferenceKernels::active() && !weights_.empty() && x.dim() == 3 && x.scalar_type() == torch::kFloat &&
      x.size(0) == weights_.front().size(0) && weights_.front().size(0) > 1) {
    bool small = true;
    for (const auto& w : weights_) small = small && w.size(0) * x.size(1) * w.size(1) * w.size(2) <= kSmallGroupedWork;
    if (small) return SmallGroupedMlp::apply(x, torch::TensorList(weights_), torch::TensorList(biases_), relu_last_);
  }
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    const bool relu = relu_last_ || i + 1 < weights_.size();
    if (relu && weights_[i].size(0) == 1) {  // one group: a plain linear layer
      x = linear_relu(x[0], weights_[i][0], biases_[i][0][0]).unsqueeze(0);
      continue;
    }
    x = torch::baddbmm(biases_[i], x, weights_[i]);
    if (relu) x = torch::relu(x);
  }
  return x;
}

ExpertBankImpl::ExpertBankImpl(std::int64_t experts, std::int64_t in, const std::vector<std::int64_t>& hidden)
    : experts_(experts), hidden0_(hidden.front()) {
  w0_ = register_parameter("w0", linear_init({in, experts_ * hidden0_}, in));
  b0_ = register_parameter("b0", linear_init({experts_ * hidden0_}, in));
  rest_ = register_module("rest", GroupedMLP(experts_, hidden0_, std::vector<std::int64_t>(hidden.begin() + 1, hidden.end()), true));
}

torch::Tensor ExpertBankImpl::forward(const torch::Tensor& x) {
  const std::int64_t B = x.size(0);
  torch::Tensor h = linear_relu(x, w0_, b0_);                       // [B, E*h0]
  h = h.view({B, experts_, hidden0_}).transpose(0, 1);              // [E, B, h0]
  return rest_->forward(h);                                         // [E, B, h]
}

std::pair<torch::Tensor, torch::Tensor> ExpertBankImpl::forward_with_gates(const torch::Tensor& x,
                                                                           const torch::Tensor& gate_w,
                                                                           const torch::Tensor& gate_b) {
  const std::int64_t B = x.size(0);
  auto [h, gate_logits] = linear_relu_and_linear(x, w0_, b0_, gate_w, gate_b);  // [B, E*h0], [B, gates]
  return {rest_->forward(h.view({B, experts_, hidden0_}).transpose(0, 1)), gate_logits};
}

TowersImpl::TowersImpl(std::int64_t tasks, std::int64_t in, const std::vector<std::int64_t>& hidden) {
  std::vector<std::int64_t> sizes = hidden;
  sizes.push_back(1);
  mlp_ = register_module("mlp", GroupedMLP(tasks, in, sizes, /*relu_last=*/false));
}

void TowersImpl::set_output_bias(const std::vector<double>& logits) {
  torch::NoGradGuard no_grad;
  torch::Tensor& b = mlp_->last_bias();  // [T, 1, 1]
  if (static_cast<std::int64_t>(logits.size()) != b.size(0))
    throw std::logic_error("Towers::set_output_bias: " + std::to_string(logits.size()) + " values for " +
                           std::to_string(b.size(0)) + " towers");
  for (std::size_t t = 0; t < logits.size(); ++t) b[static_cast<std::int64_t>(t)].fill_(logits[t]);
}

torch::Tensor TowersImpl::forward(const torch::Tensor& x) { return mlp_->forward(x).squeeze(-1).transpose(0, 1); }

namespace {
thread_local bool reference_kernels = false;
}  // namespace

ReferenceKernels::ReferenceKernels() : previous_(reference_kernels) { reference_kernels = true; }
ReferenceKernels::~ReferenceKernels() { reference_kernels = previous_; }
bool ReferenceKernels::active() { return reference_kernels; }

namespace {

// What mix_experts' kernels read: raw pointers and the experts' strides.
struct MixShape {
  std::int64_t B, G, K, H, expert_stride, row_stride;
  const std::int64_t* selection;  // [G, K]
};

// Rows per thread of the hand-written kernels: about 2^20 elements. Smaller
// kernels run on one thread. Measured on the census MMoE's experts (1024 rows
// of 144), bench_micro BM_CensusExpertsTrainingStep: on 2 threads, parallel
// kernels of this size took a step from 720 to 1,280 us (the rows move
// between the cores' caches each time BLAS and a kernel split them apart).
std::int64_t rows_per_thread(std::int64_t elements_per_row) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 20) / std::max<std::int64_t>(1, elements_per_row));
}

std::int64_t mix_grain(const MixShape& m) { return rows_per_thread(m.G * m.K * m.H); }

class MixExperts : public torch::autograd::Function<MixExperts> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gates,
                               const torch::Tensor& experts, const torch::Tensor& selection) {
    ctx->save_for_backward({gates, experts, selection});
    const MixShape m = shape_of(gates, experts, selection);
    torch::Tensor out = torch::empty({m.G, m.B, m.H}, experts.options());
    const float* gp = gates.data_ptr<float>();
    const float* hp = experts.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, m.B, mix_grain(m), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t b = begin; b < end; ++b)
        for (std::int64_t g = 0; g < m.G; ++g) {
          float* o = op + (g * m.B + b) * m.H;
          std::fill(o, o + m.H, 0.0f);
          for (std::int64_t k = 0; k < m.K; ++k) {
            const float w = gp[(b * m.G + g) * m.K + k];
            const float* h = hp + m.selection[g * m.K + k] * m.expert_stride + b * m.row_stride;
#pragma omp simd
            for (std::int64_t j = 0; j < m.H; ++j) o[j] += w * h[j];
          }
        }
    });
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &gates = saved[0], &experts = saved[1], &selection = saved[2];
    const MixShape m = shape_of(gates, experts, selection);
    const torch::Tensor grad = grads[0].contiguous();  // [G, B, H]
    torch::Tensor grad_gates = torch::empty_like(gates);
    // The experts' gradient in the experts' own layout, so the views that made them pass it on free.
    torch::Tensor grad_experts = torch::empty_strided(experts.sizes(), experts.strides(), experts.options());
    const float* gp = gates.data_ptr<float>();
    const float* hp = experts.data_ptr<float>();
    const float* dp = grad.data_ptr<float>();
    float* dgp = grad_gates.data_ptr<float>();
    float* dhp = grad_experts.data_ptr<float>();
    const std::int64_t E = experts.size(0);
    at::parallel_for(0, m.B, mix_grain(m), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t b = begin; b < end; ++b) {
        for (std::int64_t e = 0; e < E; ++e) {
          float* dh = dhp + e * m.expert_stride + b * m.row_stride;
          std::fill(dh, dh + m.H, 0.0f);
        }
        for (std::int64_t g = 0; g < m.G; ++g) {
          const float* d = dp + (g * m.B + b) * m.H;
          for (std::int64_t k = 0; k < m.K; ++k) {
            const std::int64_t e = m.selection[g * m.K + k];
            const float* h = hp + e * m.expert_stride + b * m.row_stride;
            float* dh = dhp + e * m.expert_stride + b * m.row_stride;
            const float w = gp[(b * m.G + g) * m.K + k];
            float dot = 0.0f;
            // Lanes of partial sums (a fixed order for a given build, whatever the thread count).
#pragma omp simd reduction(+ : dot)
            for (std::int64_t j = 0; j < m.H; ++j) {
              dot += d[j] * h[j];
              dh[j] += w * d[j];
            }
            dgp[(b * m.G + g) * m.K + k] = dot;
          }
        }
      }
    });
    return {grad_gates, grad_experts, torch::Tensor()};
  }

 private:
  static MixShape shape_of(const torch::Tensor& gates, const torch::Tensor& experts, const torch::Tensor& selection) {
    return {gates.size(0), gates.size(1), gates.size(2), experts.size(2), experts.stride(0), experts.stride(1),
            selection.data_ptr<std::int64_t>()};
  }
};

// a [M, K] (any strides) x b [K, N] -> [M, N] in about 4 chunks of rows
// (a multiple of 8 rows, set by M alone; 8 chunks cost a 1-thread census
// step 5%), each a single-threaded BLAS call;
// threads take the next chunk as they come free. Why not BLAS's own threads:
// (1) its results depend on how it splits the work, so on the thread count
// (a product split by rows differs in the last bits); chunks set by the shape
// give the same bits at any thread count; (2) a thread that another process
// slows down takes fewer chunks instead of holding up a static half.
std::int64_t chunk_rows(std::int64_t M) { return std::max<std::int64_t>(16, ((M + 3) / 4 + 7) / 8 * 8); }

// Products above this many multiply-adds go to BLAS whole, on its own
// threads: the large MMoE's first layer (1024 x 429 x 2064, 0.9G) keeps every
// core of a large machine, which 4 chunks would not; such a model's step is
// not the same bits on any thread count anyway (adapt_threads then stays off).
constexpr std::int64_t kChunkedWorkLimit = std::int64_t{1} << 26;

// A matrix as BLAS reads it: row-major with a leading dimension (NoTrans), or
// its transpose stored row-major (Trans). Decided once from the strides, so a
// [1, K] or [M, 1] matrix, which passes both tests, gets a legal lead.
struct BlasOperand {
  const float* data;
  CBLAS_TRANSPOSE trans;
  std::int64_t ld, row_stride;  // row_stride: from one row of the logical matrix to the next
};

// t as BLAS can read it, or nullopt when neither stride is 1 with a lead that covers a row.
std::optional<BlasOperand> blas_operand(const torch::Tensor& t) {
  const std::int64_t rows = t.size(0), cols = t.size(1);
  if (t.stride(1) == 1 && t.stride(0) >= std::max<std::int64_t>(1, cols))
    return BlasOperand{t.data_ptr<float>(), CblasNoTrans, t.stride(0), t.stride(0)};
  if (t.stride(0) == 1 && t.stride(1) >= std::max<std::int64_t>(1, rows))
    return BlasOperand{t.data_ptr<float>(), CblasTrans, t.stride(1), 1};
  return std::nullopt;
}

torch::Tensor chunked_mm(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  const std::int64_t M = a_in.size(0), K = a_in.size(1), N = b_in.size(1);
  if (M * N * K > kChunkedWorkLimit) return torch::mm(a_in, b_in);
  // BLAS reads a matrix with one unit stride; anything else is copied first.
  const torch::Tensor a = blas_operand(a_in) ? a_in : a_in.contiguous();
  const torch::Tensor b = blas_operand(b_in) ? b_in : b_in.contiguous();
  const std::int64_t rows_per_chunk = chunk_rows(M), chunks = (M + rows_per_chunk - 1) / rows_per_chunk;
  torch::Tensor out = torch::empty({M, N}, b.options());
  if (M == 0 || N == 0) return out;
  if (K == 0) return out.zero_();
  const BlasOperand A = *blas_operand(a), Bm = *blas_operand(b);
  float* C = out.data_ptr<float>();
  auto run = [&](std::int64_t c) {
    const std::int64_t lo = c * rows_per_chunk, rows = std::min(rows_per_chunk, M - lo);
    cblas_sgemm(CblasRowMajor, A.trans, Bm.trans, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.0f,
                A.data + lo * A.row_stride, static_cast<int>(A.ld), Bm.data, static_cast<int>(Bm.ld), 0.0f, C + lo * N,
                static_cast<int>(N));
  };
  const int threads = static_cast<int>(std::min<std::int64_t>(at::get_num_threads(), chunks));
  if (threads <= 1 || at::in_parallel_region()) {
    const ScopedThreadCount one_blas_thread(1);  // one chunk at a time, BLAS on one thread as in the parallel case
    for (std::int64_t c = 0; c < chunks; ++c) run(c);
    return out;
  }
  std::atomic<std::int64_t> next{0};
  // Inside the region OpenBLAS runs single-threaded.
  at::parallel_for(0, threads, 1, [&](std::int64_t, std::int64_t) {
    for (std::int64_t c = next++; c < chunks; c = next++) run(c);
  });
  return out;
}

// The loops of LinearReluSplit, on pointers that do not alias, so they vectorize.
// y [rows, n]: relu_out[i] = max(y[i, :a] + b[:a], 0), plain_out[i] = y[i, a:] + b[a:].
void add_bias_split(const float* __restrict__ y, const float* __restrict__ b, float* __restrict__ relu_out,
                    float* __restrict__ plain_out, std::int64_t begin, std::int64_t end, std::int64_t n, std::int64_t a) {
  for (std::int64_t i = begin; i < end; ++i) {
    const float* __restrict__ row = y + i * n;
    float* __restrict__ r = relu_out + i * a;
    float* __restrict__ p = plain_out + i * (n - a);
    for (std::int64_t j = 0; j < a; ++j) r[j] = std::max(row[j] + b[j], 0.0f);
    for (std::int64_t j = a; j < n; ++j) p[j - a] = row[j] + b[j];
  }
}

// Columns [j0, j1) of dz [rows, n] = [grad_relu where relu_out > 0 | grad_plain]
// and db[j] = the sum of dz[:, j] over rows in row order.
void mask_and_sum_columns(const float* __restrict__ relu_out, const float* __restrict__ grad_relu,
                          const float* __restrict__ grad_plain, float* __restrict__ dz, float* __restrict__ db,
                          std::int64_t rows, std::int64_t n, std::int64_t a, std::int64_t j0, std::int64_t j1) {
  for (std::int64_t j = j0; j < j1; ++j) db[j] = 0.0f;
  const std::int64_t masked_end = std::min(j1, a), plain_begin = std::max(j0, a);
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* __restrict__ yr = relu_out + i * a;
    const float* __restrict__ gr = grad_relu + i * a;
    const float* __restrict__ gp = grad_plain + i * (n - a);
    float* __restrict__ dr = dz + i * n;
    // A select, not a branch (the signs are random: a branch mispredicts every other element).
#pragma omp simd
    for (std::int64_t j = j0; j < masked_end; ++j) {
      const float g = gr[j];
      const float d = yr[j] > 0.0f ? g : 0.0f;
      dr[j] = d;
      db[j] += d;
    }
    for (std::int64_t j = plain_begin; j < j1; ++j) {
      dr[j] = gp[j - a];
      db[j] += dr[j];
    }
  }
}

// (relu(x w_r + b_r), x w_p + b_p) from one GEMM of x with [w_r | w_p].
class LinearReluSplit : public torch::autograd::Function<LinearReluSplit> {
 public:
  // Inference: no weights concatenated (the large MMoE's are 3.5 MB, copied
  // per request) and no chunks: a BLAS call per part, then the bias pass.
  static std::array<torch::Tensor, 2> infer(const torch::Tensor& x, const torch::Tensor& w_relu,
                                            const torch::Tensor& b_relu, const torch::Tensor& w_plain,
                                            const torch::Tensor& b_plain) {
    torch::Tensor relu_out = torch::mm(x, w_relu).contiguous();
    const std::int64_t B = x.size(0), a = relu_out.size(1);
    float* rp = relu_out.data_ptr<float>();
    const torch::Tensor br = b_relu.contiguous();
    const float* bp = br.data_ptr<float>();
    at::parallel_for(0, B, rows_per_thread(a), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        float* __restrict__ row = rp + i * a;
        for (std::int64_t j = 0; j < a; ++j) row[j] = std::max(row[j] + bp[j], 0.0f);
      }
    });
    torch::Tensor plain_out = w_plain.size(1) > 0 ? torch::addmm(b_plain, x, w_plain) : torch::empty({B, 0});
    return {relu_out, plain_out};
  }

  // relu_out, plain_out and the concatenated weight; the product in chunks
  // set by the shape (the same bits on any thread count).
  static std::array<torch::Tensor, 3> compute(const torch::Tensor& x, const torch::Tensor& w_relu,
                                              const torch::Tensor& b_relu, const torch::Tensor& w_plain,
                                              const torch::Tensor& b_plain) {
    const std::int64_t a = w_relu.size(1), n = a + w_plain.size(1), B = x.size(0);
    const torch::Tensor w = w_plain.size(1) > 0 ? torch::cat({w_relu, w_plain}, 1) : w_relu;
    const torch::Tensor b = w_plain.size(1) > 0 ? torch::cat({b_relu, b_plain}) : b_relu.contiguous();
    const torch::Tensor y = chunked_mm(x, w);  // [B, n]
    torch::Tensor relu_out = torch::empty({B, a}, y.options()), plain_out = torch::empty({B, n - a}, y.options());
    const float* yp = y.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* rp = relu_out.data_ptr<float>();
    float* pp = plain_out.data_ptr<float>();
    at::parallel_for(0, B, rows_per_thread(n),
                     [&](std::int64_t begin, std::int64_t end) { add_bias_split(yp, bp, rp, pp, begin, end, n, a); });
    return {relu_out, plain_out, w};
  }

  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                                const torch::Tensor& w_relu, const torch::Tensor& b_relu,
                                                const torch::Tensor& w_plain, const torch::Tensor& b_plain) {
    auto [relu_out, plain_out, w] = compute(x, w_relu, b_relu, w_plain, b_plain);
    ctx->save_for_backward({x, w, relu_out});
    return {relu_out, plain_out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &relu_out = saved[2];
    const std::int64_t B = relu_out.size(0), a = relu_out.size(1), n = w.size(1);
    // An output that did not reach the loss has no gradient: zeros.
    const torch::Tensor grad_relu = grads[0].defined() ? grads[0].contiguous() : torch::zeros({B, a});
    const torch::Tensor grad_plain = grads[1].defined() ? grads[1].contiguous() : torch::zeros({B, n - a});
    torch::Tensor dz = torch::empty({B, n}), db = torch::empty({n});
    const float* yp = relu_out.data_ptr<float>();
    const float* grp = grad_relu.data_ptr<float>();
    const float* gpp = grad_plain.data_ptr<float>();
    float* dzp = dz.data_ptr<float>();
    float* dbp = db.data_ptr<float>();
    // Threads take blocks of columns, each summing its columns over the rows
    // in row order: the bias gradient does not depend on the thread count.
    constexpr std::int64_t kColumns = 64;
    at::parallel_for(0, (n + kColumns - 1) / kColumns, rows_per_thread(B * kColumns),
                     [&](std::int64_t begin, std::int64_t end) {
                       mask_and_sum_columns(yp, grp, gpp, dzp, dbp, B, n, a, begin * kColumns, std::min(n, end * kColumns));
                     });
    const torch::Tensor dx = ctx->needs_input_grad(0) ? chunked_mm(dz, w.t()) : torch::Tensor();
    const torch::Tensor dw = chunked_mm(x.t(), dz);  // [in, n]
    return {dx, dw.slice(1, 0, a), db.slice(0, 0, a), dw.slice(1, a, n), db.slice(0, a, n)};
  }
};

// Whether autograd will want gradients of an op on these inputs.
bool needs_gradient(std::initializer_list<torch::Tensor> inputs) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

void check_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, const char* who) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && b.dim() == 1 && x.size(1) == w.size(0) && b.size(0) == w.size(1) &&
                  x.scalar_type() == torch::kFloat && w.scalar_type() == torch::kFloat && b.scalar_type() == torch::kFloat,
              who, ": float x [B, in], w [in, out], b [out]");
}

}  // namespace

torch::Tensor linear_relu(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  check_linear(x, w, b, "linear_relu");
  if (ReferenceKernels::active()) return torch::relu(torch::addmm(b, x, w));
  const torch::Tensor none_w = torch::empty({w.size(0), 0}), none_b = torch::empty({0});
  if (!needs_gradient({x, w, b})) return LinearReluSplit::infer(x, w, b, none_w, none_b)[0];
  return LinearReluSplit::apply(x, w, b, none_w, none_b)[0];
}

std::pair<torch::Tensor, torch::Tensor> linear_relu_and_linear(const torch::Tensor& x, const torch::Tensor& w_relu,
                                                               const torch::Tensor& b_relu, const torch::Tensor& w_plain,
                                                               const torch::Tensor& b_plain) {
  check_linear(x, w_relu, b_relu, "linear_relu_and_linear");
  check_linear(x, w_plain, b_plain, "linear_relu_and_linear");
  if (ReferenceKernels::active()) return {torch::relu(torch::addmm(b_relu, x, w_relu)), torch::addmm(b_plain, x, w_plain)};
  if (!needs_gradient({x, w_relu, b_relu, w_plain, b_plain})) {
    auto out = LinearReluSplit::infer(x, w_relu, b_relu, w_plain, b_plain);
    return {out[0], out[1]};
  }
  auto out = LinearReluSplit::apply(x, w_relu, b_relu, w_plain, b_plain);
  return {out[0], out[1]};
}

torch::Tensor mix_experts(const torch::Tensor& gates, const torch::Tensor& experts, const torch::Tensor& selection) {
  TORCH_CHECK(gates.dim() == 3 && experts.dim() == 3 && gates.scalar_type() == torch::kFloat &&
                  experts.scalar_type() == torch::kFloat && gates.size(0) == experts.size(1),
              "mix_experts: float gates [B, G, K] and experts [E, B, H]");
  const std::int64_t G = gates.size(1), K = gates.size(2), E = experts.size(0);
  TORCH_CHECK(selection.defined() || K == E, "mix_experts: without a selection, K must equal the number of experts");
  torch::Tensor sel = selection.defined() ? selection.to(torch::kLong).contiguous() : torch::empty({G, K}, torch::kLong);
  TORCH_CHECK(sel.dim() == 2 && sel.size(0) == G && sel.size(1) == K, "mix_experts: selection must be [G, K]");
  std::int64_t* s = sel.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < G * K; ++i) {
    if (!selection.defined()) s[i] = i % K;
    TORCH_CHECK(s[i] >= 0 && s[i] < E, "mix_experts: selection names expert ", s[i], " of ", E);
  }
  if (ReferenceKernels::active()) {  // [B, G, K] x [G, K, B, H] -> [G, B, H] as G*B products in one bmm
    const std::int64_t B = gates.size(0), H = experts.size(2);
    const torch::Tensor seen = experts.index_select(0, sel.reshape({-1})).view({G, K, B, H}).permute({0, 2, 1, 3});
    return torch::bmm(gates.transpose(0, 1).reshape({G * B, 1, K}), seen.reshape({G * B, K, H})).view({G, B, H});
  }
  torch::Tensor h = experts;
  // H contiguous and rows that do not overlap: the kernels index by strides and write the gradient in place.
  if (h.stride(2) != 1 || !h.is_non_overlapping_and_dense()) h = h.contiguous();
  return MixExperts::apply(gates.contiguous(), h, sel);
}

torch::Tensor gate_dropout(const torch::Tensor& gates, double p, bool training) {
  if (!training || p <= 0) return gates;
  torch::Tensor keep = torch::bernoulli(torch::full_like(gates, 1.0 - p));
  torch::Tensor kept = gates * keep;
  // If every expert of a gate was dropped, keep that gate as it was.
  torch::Tensor total = kept.sum(-1, /*keepdim=*/true);
  return torch::where(total > 0, kept / total.clamp_min(1e-12), gates);
}

torch::Tensor hashed_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  if (p >= 1) return x * 0;
  const std::uint64_t seed = static_cast<std::uint64_t>(
      torch::randint(std::numeric_limits<std::int64_t>::max(), {1}, torch::kInt64).item<std::int64_t>());
  const std::uint32_t threshold = static_cast<std::uint32_t>(std::llround(p * 65536.0));
  const float keep = static_cast<float>(1.0 / (1.0 - threshold / 65536.0));
  torch::Tensor mask = torch::empty(x.sizes(), x.options().dtype(torch::kFloat32).requires_grad(false));
  float* m = mask.data_ptr<float>();
  const std::int64_t n = mask.numel(), words = (n + 3) / 4;
  at::parallel_for(0, words, 4096, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t w = begin; w < end; ++w) {
      std::uint64_t z = seed + static_cast<std::uint64_t>(w) * 0x9e3779b97f4a7c15ULL;  // splitmix64
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      z ^= z >> 31;
      for (std::int64_t j = 0; j < 4 && 4 * w + j < n; ++j)
        m[4 * w + j] = static_cast<std::uint32_t>((z >> (16 * j)) & 0xffff) >= threshold ? keep : 0.0f;
    }
  });
  return x * mask;
}

}  // namespace mtrank::model
