#include "model/lru.h"

#include <cmath>
#include <complex>
#include <stdexcept>
#include <string>

#include "model/blocks.h"

#include <ATen/Parallel.h>

namespace mtrank::model {

LruLayerImpl::LruLayerImpl(std::int64_t d, std::int64_t state, double r_min, double r_max,
                           const std::vector<std::int64_t>& widths)
    : d_(d), state_(state) {
  const auto truncated = [](std::vector<std::int64_t> shape) {
    torch::Tensor t = torch::empty(shape);
    truncated_normal_(t);
    return t;
  };
  if (d < 1 || state < 1) throw std::invalid_argument("LruLayer: d and state must be >= 1");
  if (!(r_min >= 0 && r_min <= r_max && r_max < 1))
    throw std::invalid_argument("LruLayer: the ring needs 0 <= r_min <= r_max < 1");
  // Ring initialization: |lambda|^2 uniform in [r_min^2, r_max^2], phase uniform in [0, 2 pi).
  // u1 = 0 with r_min = 0 (fMRLRec's ring) would give |lambda| = 0 exactly and NaN gradients.
  const torch::Tensor u1 = torch::rand({state}).clamp_min(1e-6), u2 = torch::rand({state});
  const torch::Tensor nu_log = torch::log(-0.5 * torch::log(u1 * (r_max * r_max - r_min * r_min) + r_min * r_min));
  const torch::Tensor theta_log = torch::log(u2 * (2 * M_PI));
  const torch::Tensor modulus = torch::exp(-torch::exp(nu_log));
  nu_log_ = register_parameter("lambda_nu_log", nu_log);
  theta_log_ = register_parameter("lambda_theta_log", theta_log);
  gamma_log_ = register_parameter("lambda_gamma_log", torch::log(torch::sqrt(1 - modulus * modulus)));
  b_re_ = register_parameter("in_re", truncated({state, d}));
  b_im_ = register_parameter("in_im", truncated({state, d}));
  b_bias_re_ = register_parameter("in_bias_re", truncated({state}));
  b_bias_im_ = register_parameter("in_bias_im", truncated({state}));
  c_re_ = register_parameter("out_re", truncated({d, state}));
  c_im_ = register_parameter("out_im", truncated({d, state}));
  c_bias_ = register_parameter("out_bias", truncated({d}));
  if (!widths.empty()) {
    if (widths.back() != d || state % d != 0)
      throw std::invalid_argument("LruLayer: Matryoshka widths need the last width = d and state a multiple of d");
    // State chunk i (of width ratio * s_i) reads the input prefix [0, s_i),
    // and output chunk i reads the state prefix [0, ratio * s_i).
    const std::int64_t ratio = state / d;
    torch::Tensor in_mask = torch::zeros({state, d}), out_mask = torch::zeros({d, state});
    std::int64_t previous = 0;
    for (std::int64_t w : widths) {
      in_mask.slice(0, ratio * previous, ratio * w).slice(1, 0, w).fill_(1.0);
      out_mask.slice(0, previous, w).slice(1, 0, ratio * w).fill_(1.0);
      previous = w;
    }
    in_mask_ = register_buffer("in_mask", in_mask);
    out_mask_ = register_buffer("out_mask", out_mask);
    torch::NoGradGuard no_grad;
    for (torch::Tensor* p : {&b_re_, &b_im_}) p->mul_(in_mask);
    for (torch::Tensor* p : {&c_re_, &c_im_}) p->mul_(out_mask);
  }
}

torch::Tensor LruLayerImpl::lambda() const {
  const torch::Tensor r = torch::exp(-torch::exp(nu_log_)), phase = torch::exp(theta_log_);
  return torch::complex(r * torch::cos(phase), r * torch::sin(phase));
}

torch::Tensor LruLayerImpl::input(const torch::Tensor& x) {
  const torch::Tensor gamma = torch::exp(gamma_log_);
  const bool masked = in_mask_.defined();
  return torch::complex(
      torch::nn::functional::linear(x, masked ? b_re_ * in_mask_ : b_re_, b_bias_re_) * gamma,
      torch::nn::functional::linear(x, masked ? b_im_ * in_mask_ : b_im_, b_bias_im_) * gamma);
}

torch::Tensor LruLayerImpl::output(const torch::Tensor& h) {
  // Re((C_re + i C_im)(h_re + i h_im)) = C_re h_re - C_im h_im.
  const bool masked = out_mask_.defined();
  return torch::nn::functional::linear(torch::real(h), masked ? c_re_ * out_mask_ : c_re_, c_bias_) -
         torch::nn::functional::linear(torch::imag(h), masked ? c_im_ * out_mask_ : c_im_);
}

torch::Tensor LruLayerImpl::states(const torch::Tensor& x, const torch::Tensor& mask) {
  return lru_recurrence(input(x), lambda(), mask);
}

torch::Tensor LruLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  return output(states(x, mask));
}

torch::Tensor LruLayerImpl::step(const torch::Tensor& previous, const torch::Tensor& x) {
  return lambda() * previous + input(x);
}

namespace {

// h_t = u_t + m_{t-1} lambda h_{t-1} (h_{-1} = 0), one pass left to right per
// sequence; the backward pass runs right to left: with G_t the gradient of
// h_t (PyTorch's convention for complex tensors: dL/dRe + i dL/dIm),
// G_{t-1} += m_{t-1} conj(lambda) G_t, dL/du_t = G_t and
// dL/dlambda = sum_t m_{t-1} G_t conj(h_{t-1}).
class LruRecurrence : public torch::autograd::Function<LruRecurrence> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u, const torch::Tensor& lambda,
                               const torch::Tensor& mask) {
    const std::int64_t B = u.size(0), L = u.size(1), N = u.size(2);
    const torch::Tensor uc = u.contiguous(), lc = lambda.contiguous(), m = mask.to(torch::kFloat32).contiguous();
    torch::Tensor h = torch::empty_like(uc);
    const auto* up = reinterpret_cast<const std::complex<float>*>(uc.data_ptr<c10::complex<float>>());
    const auto* lp = reinterpret_cast<const std::complex<float>*>(lc.data_ptr<c10::complex<float>>());
    auto* hp = reinterpret_cast<std::complex<float>*>(h.data_ptr<c10::complex<float>>());
    const float* mp = m.data_ptr<float>();
    at::parallel_for(0, B, 1, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const std::complex<float>* ub = up + b * L * N;
        std::complex<float>* hb = hp + b * L * N;
        for (std::int64_t n = 0; n < N; ++n) hb[n] = ub[n];
        for (std::int64_t t = 1; t < L; ++t) {
          const float carry = mp[b * L + t - 1];
          const std::complex<float>* prev = hb + (t - 1) * N;
          std::complex<float>* cur = hb + t * N;
          const std::complex<float>* in = ub + t * N;
          for (std::int64_t n = 0; n < N; ++n) cur[n] = in[n] + carry * (lp[n] * prev[n]);
        }
      }
    });
    ctx->save_for_backward({h, lc, m});
    return h;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_output) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& h = saved[0];
    const torch::Tensor& lambda = saved[1];
    const torch::Tensor& m = saved[2];
    const std::int64_t B = h.size(0), L = h.size(1), N = h.size(2);
    torch::Tensor g = grad_output[0].contiguous().clone();  // becomes dL/du in place
    const int threads = at::get_num_threads();
    torch::Tensor grad_lambda_parts = torch::zeros({threads, N}, lambda.options());
    const auto* hp = reinterpret_cast<const std::complex<float>*>(h.data_ptr<c10::complex<float>>());
    const auto* lp = reinterpret_cast<const std::complex<float>*>(lambda.data_ptr<c10::complex<float>>());
    auto* gp = reinterpret_cast<std::complex<float>*>(g.data_ptr<c10::complex<float>>());
    auto* glp = reinterpret_cast<std::complex<float>*>(grad_lambda_parts.data_ptr<c10::complex<float>>());
    const float* mp = m.data_ptr<float>();
    at::parallel_for(0, B, 1, [&](std::int64_t b0, std::int64_t b1) {
      std::complex<float>* acc = glp + at::get_thread_num() * N;
      for (std::int64_t b = b0; b < b1; ++b) {
        std::complex<float>* gb = gp + b * L * N;
        const std::complex<float>* hb = hp + b * L * N;
        for (std::int64_t t = L - 1; t >= 1; --t) {
          const float carry = mp[b * L + t - 1];
          if (carry == 0.0f) continue;
          const std::complex<float>* gt = gb + t * N;
          std::complex<float>* gprev = gb + (t - 1) * N;
          const std::complex<float>* hprev = hb + (t - 1) * N;
          for (std::int64_t n = 0; n < N; ++n) {
            gprev[n] += carry * (std::conj(lp[n]) * gt[n]);
            acc[n] += carry * (gt[n] * std::conj(hprev[n]));
          }
        }
      }
    });
    return {g, grad_lambda_parts.sum(0), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor lru_recurrence(const torch::Tensor& u, const torch::Tensor& lambda, const torch::Tensor& mask) {
  if (u.dim() != 3 || !u.is_complex() || u.scalar_type() != torch::kComplexFloat)
    throw std::invalid_argument("lru_recurrence: u must be complex64 [B, L, N]");
  return LruRecurrence::apply(u, lambda.to(torch::kComplexFloat), mask);
}

torch::Tensor lru_scan(const torch::Tensor& u, const torch::Tensor& lambda, const torch::Tensor& mask) {
  const std::int64_t B = u.size(0), L = u.size(1), N = u.size(2);
  if (L & (L - 1)) throw std::invalid_argument("lru_scan: length " + std::to_string(L) + " is not a power of two");
  torch::Tensor h = u, powers = lambda.unsqueeze(0);  // [l/2, N]: lambda^1 .. lambda^(l/2)
  const torch::Tensor m = mask.to(torch::kFloat32);
  for (std::int64_t l = 2; l <= L; l *= 2) {
    if (l > 2) powers = torch::cat({powers, powers * powers[-1]}, 0);
    const torch::Tensor blocks = h.reshape({B * L / l, l, N});
    const torch::Tensor first = blocks.slice(1, 0, l / 2), second = blocks.slice(1, l / 2);
    // The first half's last state carries over only from a real position.
    const torch::Tensor carry_mask = m.reshape({B * L / l, l}).slice(1, l / 2 - 1, l / 2).unsqueeze(-1);
    const torch::Tensor carried = second + powers * first.slice(1, l / 2 - 1, l / 2) * carry_mask;
    h = torch::cat({first, carried}, 1).reshape({B, L, N});
  }
  return h;
}

}  // namespace mtrank::model
