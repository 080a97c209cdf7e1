// bench_serve_vs_eager: mtrank's scoring of a trained MMoE against the same
// model written the way PyTorch reference code usually is (one nn::Embedding
// per field, one module per expert, a loop over experts and tasks), with the
// same weights, on the same featurized candidates, in the same run.
//   build/bench/bench_serve_vs_eager MODEL_DIR DATA_FILE [threads=1] [EXPORT_FILE]
// With EXPORT_FILE, also writes the per-module weights, 5,000 featurized
// candidates and mtrank's logits for them (torch.load-able) for the PyTorch
// side of bench/serve_vs_pytorch.sh.
// MODEL_DIR must hold an MMoE with one expert layer and one tower layer
// (examples/census/mmoe.toml) and no multi-hot features.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/system.h"
#include "data/dataset.h"
#include "model/batch.h"
#include "model/model.h"
#include "model/model_dir.h"

namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct EagerMMoE : torch::nn::Module {
  std::vector<torch::nn::Embedding> embeddings;
  std::vector<std::int64_t> offsets;
  std::vector<torch::nn::Sequential> experts;
  std::vector<torch::nn::Linear> gates;
  std::vector<torch::nn::Sequential> towers;

  torch::Tensor forward(const mtrank::model::Batch& b) {
    std::vector<torch::Tensor> parts;
    for (std::size_t f = 0; f < embeddings.size(); ++f)
      parts.push_back(embeddings[f]->forward(b.categorical.select(1, static_cast<std::int64_t>(f)) - offsets[f]));
    parts.push_back(b.dense);
    torch::Tensor x = torch::cat(parts, 1);
    std::vector<torch::Tensor> outs;
    for (auto& e : experts) outs.push_back(e->forward(x));
    std::vector<torch::Tensor> logits;
    for (std::size_t t = 0; t < gates.size(); ++t) {
      torch::Tensor g = torch::softmax(gates[t]->forward(x), -1);
      torch::Tensor mixed = torch::zeros_like(outs[0]);
      for (std::size_t e = 0; e < outs.size(); ++e) mixed = mixed + g.slice(1, e, e + 1) * outs[e];
      logits.push_back(towers[t]->forward(mixed));
    }
    return torch::cat(logits, 1);
  }
};
}  // namespace

int main(int argc, char** argv) {
  // As mtrank itself does (cli/main.cpp): a misdetected OpenBLAS core (Prescott on some VMs) is 5x slower.
  mtrank::ensure_fast_blas(argc, argv);
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR DATA_FILE [threads=1] [EXPORT_FILE]\n", argv[0]);
    return 2;
  }
  mtrank::configure_threads(argc > 3 ? std::stoi(argv[3]) : 1);
  torch::InferenceMode guard;
  mtrank::model::LoadedModel m = mtrank::model::load_model_dir(argv[1]);
  const auto& cfg = m.config.model;
  if (cfg.type != "mmoe" || cfg.integers("expert_hidden").size() != 1 || cfg.integers("tower_hidden").size() != 1 || m.preprocessor->num_bags())
    throw std::runtime_error("needs an MMoE with one expert layer, one tower layer, no multi-hot features");
  mtrank::data::FeaturizedData data = mtrank::data::featurize_file(*m.preprocessor, argv[2], false);
  auto params = m.net->named_parameters();
  auto p = [&](const std::string& name) { return *params.find(name); };
  const std::int64_t E = cfg.integer("num_experts"), H = cfg.integers("expert_hidden")[0], D = cfg.integer("embedding_dim"), T = m.config.tasks.size();

  // The same weights, in per-field, per-expert, per-task modules.
  EagerMMoE eager;
  for (const auto& f : m.preprocessor->categorical_fields()) {
    auto emb = torch::nn::Embedding(f.size, D);
    emb->weight.set_data(p("input.table").slice(0, f.offset, f.offset + f.size).clone());
    eager.embeddings.push_back(eager.register_module("embedding" + std::to_string(eager.embeddings.size()), emb));
    eager.offsets.push_back(f.offset);
  }
  const torch::Tensor w0 = p("experts.w0"), b0 = p("experts.b0");
  const std::int64_t in = w0.size(0);
  for (std::int64_t e = 0; e < E; ++e) {
    auto lin = torch::nn::Linear(in, H);
    lin->weight.set_data(w0.slice(1, e * H, (e + 1) * H).t().contiguous());
    lin->bias.set_data(b0.slice(0, e * H, (e + 1) * H).clone());
    eager.experts.push_back(eager.register_module("expert" + std::to_string(e), torch::nn::Sequential(lin, torch::nn::ReLU())));
  }
  const torch::Tensor gw = p("gate_w"), gb = p("gate_b");
  for (std::int64_t t = 0; t < T; ++t) {
    auto gate = torch::nn::Linear(in, E);
    gate->weight.set_data(gw.slice(1, t * E, (t + 1) * E).t().contiguous());
    gate->bias.set_data(gb.slice(0, t * E, (t + 1) * E).clone());
    eager.gates.push_back(eager.register_module("gate" + std::to_string(t), gate));
    const std::int64_t th = cfg.integers("tower_hidden")[0];
    auto l1 = torch::nn::Linear(H, th), l2 = torch::nn::Linear(th, 1);
    l1->weight.set_data(p("towers.mlp.w0")[t].t().contiguous());
    l1->bias.set_data(p("towers.mlp.b0")[t][0].clone());
    l2->weight.set_data(p("towers.mlp.w1")[t].t().contiguous());
    l2->bias.set_data(p("towers.mlp.b1")[t][0].clone());
    eager.towers.push_back(eager.register_module("tower" + std::to_string(t), torch::nn::Sequential(l1, torch::nn::ReLU(), l2)));
  }

  mtrank::model::BatchBuilder builder;
  if (argc > 4) {
    c10::Dict<std::string, torch::Tensor> out;
    for (const auto& item : eager.named_parameters()) out.insert(item.key(), item.value().contiguous());
    const std::int64_t rows = std::min<std::int64_t>(5000, data.rows());
    mtrank::model::Batch b = builder.build_range(data, 0, rows);
    out.insert("input.categorical", (b.categorical - torch::tensor(eager.offsets)).contiguous());
    out.insert("input.dense", b.dense.clone());
    out.insert("expected.logits", m.net->forward(b, nullptr).logits.contiguous());
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(out));
    std::FILE* f = std::fopen(argv[4], "wb");
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0)
      throw std::runtime_error(std::string("cannot write ") + argv[4]);
  }
  std::printf("%10s %14s %14s %8s   (p50 ms per request, model forward on featurized candidates)\n", "candidates",
              "mtrank", "eager", "ratio");
  for (std::int64_t n : {50, 200, 1000}) {
    std::vector<double> ours, theirs;
    for (int r = 0; r < 220; ++r) {
      mtrank::model::Batch b = builder.build_range(data, (r * 131) % (data.rows() - n), n);
      double t0 = now_ms();
      torch::Tensor a = m.net->forward(b, nullptr).logits;
      double t1 = now_ms();
      torch::Tensor c = eager.forward(b);
      double t2 = now_ms();
      if (r == 0 && !torch::allclose(a, c, 1e-4, 1e-5)) {
        std::fprintf(stderr, "the eager model does not match mtrank's outputs\n");
        return 1;
      }
      if (r >= 20) {
        ours.push_back(t1 - t0);
        theirs.push_back(t2 - t1);
      }
    }
    std::sort(ours.begin(), ours.end());
    std::sort(theirs.begin(), theirs.end());
    const double a = ours[ours.size() / 2], c = theirs[theirs.size() / 2];
    std::printf("%10lld %14.3f %14.3f %7.1fx\n", static_cast<long long>(n), a, c, c / a);
  }
  return 0;
}
