#include "model/model.h"

#include <algorithm>
#include <cstring>

#include <ATen/Parallel.h>

#include "common/error.h"
#include "data/preprocessor.h"
#include "model/bias_tower.h"
#include "model/esmm.h"
#include "model/mmoe.h"
#include "model/objective.h"
#include "model/ple.h"
#include "model/shared_bottom.h"

namespace mtrank::model {

FeatureInputImpl::FeatureInputImpl(const InputShape& shape, std::int64_t embedding_dim, std::int64_t copies)
    : shape_(shape), dim_(embedding_dim), copies_(copies) {
  // Small uniform init: embeddings start near zero so no field dominates early.
  table_ = register_parameter(
      "table", torch::empty({std::max<std::int64_t>(shape.embedding_rows, 1), copies_ * dim_}).uniform_(-0.05, 0.05),
      /*requires_grad=*/false);
  output_dim_ = (shape.num_categorical + shape.num_bags) * dim_ + shape.num_dense;
}

namespace {

// out[i] = table[ids[i]] for a contiguous float table, ids checked. Rows are
// copied by a loop rather than memcpy: census rows are 16 bytes, where a call
// per row cost more than the copy (LibTorch's index_select was 160 us of a 2 ms
// census step, issue 15).
torch::Tensor copy_rows(const torch::Tensor& table, const torch::Tensor& ids, const char* who) {
  const torch::Tensor idx = ids.contiguous();
  TORCH_CHECK(idx.scalar_type() == torch::kLong, who, ": ids must be int64");
  const std::int64_t n = idx.numel(), width = table.size(1), rows = table.size(0);
  torch::Tensor out = torch::empty({n, width});
  const std::int64_t* id = idx.data_ptr<std::int64_t>();
  const float* src = table.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  constexpr std::int64_t kAhead = 16;  // rows in flight; 16 and 32 measured alike, 4 slower
  for (std::int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(id[i] >= 0 && id[i] < rows, who, ": id ", id[i], " outside a table of ", rows, " rows");
    if (i + kAhead < n && id[i + kAhead] >= 0 && id[i + kAhead] < rows) __builtin_prefetch(src + id[i + kAhead] * width);
    const float* from = src + id[i] * width;
    float* to = dst + i * width;
    for (std::int64_t k = 0; k < width; ++k) to[k] = from[k];
  }
  return out;
}

}  // namespace

torch::Tensor gather_rows(const torch::Tensor& table, const torch::Tensor& ids) {
  TORCH_CHECK(table.dim() == 2 && table.is_contiguous() && table.scalar_type() == torch::kFloat, "gather_rows: table");
  TORCH_CHECK(!(torch::GradMode::is_enabled() && table.requires_grad()), "gather_rows: no autograd; use index_select");
  return copy_rows(table, ids, "gather_rows");
}

namespace {

// select_rows' autograd function. Backward: grad of rows[U, D] =
// sum over i with ids[i] = u of grad_out[i], added in order of i.
class SelectRows : public torch::autograd::Function<SelectRows> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& rows,
                               const torch::Tensor& ids) {
    ctx->save_for_backward({ids});
    ctx->saved_data["rows"] = rows.size(0);
    return copy_rows(rows.contiguous(), ids, "select_rows");
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::Tensor ids = ctx->get_saved_variables()[0].contiguous();
    const torch::Tensor grad = grads[0].contiguous();
    const std::int64_t n = ids.numel(), width = grad.size(1), rows = ctx->saved_data["rows"].toInt();
    torch::Tensor out = torch::zeros({rows, width}, grad.options());
    const std::int64_t* id = ids.data_ptr<std::int64_t>();
    const float* g = grad.data_ptr<float>();
    float* o = out.data_ptr<float>();
    for (std::int64_t i = 0; i < n; ++i) {
      float* dst = o + id[i] * width;
      const float* src = g + i * width;
      for (std::int64_t k = 0; k < width; ++k) dst[k] += src[k];
    }
    return {out, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor select_rows(const torch::Tensor& rows, const torch::Tensor& ids) {
  TORCH_CHECK(rows.dim() == 2 && rows.scalar_type() == torch::kFloat && ids.scalar_type() == torch::kLong,
              "select_rows: float rows [U, D] and int64 ids");
  return SelectRows::apply(rows, ids);
}

std::pair<torch::Tensor, torch::Tensor> unique_ids(const torch::Tensor& ids, std::int64_t table_rows) {
  const std::int64_t n = ids.numel();
  // Marking costs O(table_rows) per batch: only worth it when the table is not much larger than the batch.
  if (table_rows > 8 * n + 4096) {
    auto [unique, inverse] = at::_unique(ids, /*sorted=*/true, /*return_inverse=*/true);
    return {unique, inverse};
  }
  const torch::Tensor flat = ids.contiguous();
  const std::int64_t* id = flat.data_ptr<std::int64_t>();
  std::vector<std::int64_t> position(static_cast<std::size_t>(table_rows), -1);
  for (std::int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(id[i] >= 0 && id[i] < table_rows, "unique_ids: id ", id[i], " outside a table of ", table_rows, " rows");
    position[static_cast<std::size_t>(id[i])] = 0;
  }
  std::int64_t distinct = 0;
  for (std::int64_t& p : position)
    if (p == 0) p = distinct++;  // present: its rank among the present ids, in id order
  torch::Tensor unique = torch::empty({distinct}, torch::kLong), inverse = torch::empty_like(flat);
  std::int64_t* u = unique.data_ptr<std::int64_t>();
  for (std::int64_t r = 0; r < table_rows; ++r)
    if (position[static_cast<std::size_t>(r)] >= 0) u[position[static_cast<std::size_t>(r)]] = r;
  std::int64_t* inv = inverse.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) inv[i] = position[static_cast<std::size_t>(id[i])];
  return {unique, inverse};
}

torch::Tensor FeatureInputImpl::forward(const Batch& batch, const SparseLookup& lookup, const torch::Tensor& rows) {
  const std::int64_t B = batch.size;
  const torch::Tensor& source = lookup.training ? rows : table_;
  std::vector<torch::Tensor> parts;
  // Each part is [B, fields, copies, D] -> [copies, B, fields * D].
  auto per_copy = [&](torch::Tensor t, std::int64_t fields) {
    return t.view({B, fields, copies_, dim_}).permute({2, 0, 1, 3}).reshape({copies_, B, fields * dim_});
  };
  if (shape_.num_categorical > 0)
    parts.push_back(per_copy(lookup.training ? select_rows(source, lookup.categorical)
                                             : gather_rows(table_, lookup.categorical),
                             shape_.num_categorical));
  if (shape_.num_bags > 0)
    parts.push_back(per_copy(std::get<0>(torch::embedding_bag(source, lookup.bag_ids, batch.bag_offsets,
                                                              /*scale_grad_by_freq=*/false, /*mode=sum*/ 0,
                                                              /*sparse=*/false, batch.bag_weights,
                                                              /*include_last_offset=*/true)),
                             shape_.num_bags));
  if (shape_.num_dense > 0) parts.push_back(batch.dense.unsqueeze(0).expand({copies_, B, shape_.num_dense}));
  return torch::cat(parts, 2);
}

const InputField* InputShape::field(const std::string& name) const {
  for (const InputField& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

std::vector<const InputField*> InputShape::fields_in_group(const std::string& group) const {
  std::vector<const InputField*> out;
  for (const InputField& f : fields)
    if (std::find(f.groups.begin(), f.groups.end(), group) != f.groups.end()) out.push_back(&f);
  return out;
}

std::pair<std::int64_t, std::int64_t> feature_columns(const InputShape& shape, const InputField& field,
                                                      std::int64_t embedding_dim) {
  const std::int64_t D = embedding_dim;
  switch (field.kind) {
    case FieldKind::kCategorical: return {field.slot * D, (field.slot + 1) * D};
    case FieldKind::kBag: return {(shape.num_categorical + field.slot) * D, (shape.num_categorical + field.slot + 1) * D};
    case FieldKind::kDense: {
      const std::int64_t begin = (shape.num_categorical + shape.num_bags) * D + field.slot;
      return {begin, begin + 1};
    }
  }
  return {0, 0};
}

torch::Tensor select_fields(const torch::Tensor& features, const InputShape& shape,
                            const std::vector<const InputField*>& fields, std::int64_t embedding_dim) {
  std::vector<torch::Tensor> parts;
  for (const InputField* f : fields) {
    const auto [begin, end] = feature_columns(shape, *f, embedding_dim);
    parts.push_back(features.slice(-1, begin, end));
  }
  if (parts.empty()) {
    std::vector<std::int64_t> sizes = features.sizes().vec();
    sizes.back() = 0;
    return torch::zeros(sizes, features.options());
  }
  return torch::cat(parts, -1);
}

WideHead::WideHead(const InputShape& shape, bool skip_bias_fields) : shape_(shape) {
  if (skip_bias_fields) {
    std::vector<float> categorical(static_cast<std::size_t>(shape.num_categorical), 1.0f),
        bags(static_cast<std::size_t>(shape.num_bags), 1.0f);
    bool any = false;
    for (const InputField* f : shape.fields_in_group("bias")) {
      if (f->kind == FieldKind::kCategorical) categorical[static_cast<std::size_t>(f->slot)] = 0.0f, any = true;
      if (f->kind == FieldKind::kBag) bags[static_cast<std::size_t>(f->slot)] = 0.0f, any = true;
    }
    if (any) {
      categorical_keep_ = torch::tensor(categorical).view({1, shape.num_categorical, 1});
      bag_keep_ = torch::tensor(bags).view({1, shape.num_bags, 1});
    }
  }
  // Linear weights start at zero, as a logistic regression does.
  table_ = {"wide",
            register_parameter("table", torch::zeros({std::max<std::int64_t>(shape.embedding_rows, 1), shape.num_tasks}),
                               /*requires_grad=*/false),
            true};
  bias_ = register_parameter("bias", torch::zeros({shape.num_tasks}));
}

torch::Tensor WideHead::forward(const HeadInput& in) {
  const Batch& batch = in.batch;
  const SparseLookup& lookup = in.lookup;
  const std::int64_t B = batch.size, T = shape_.num_tasks;
  const torch::Tensor& source = lookup.training ? in.table_rows : table_.table;
  torch::Tensor out = bias_.expand({B, T});
  if (shape_.num_categorical > 0) {
    torch::Tensor w = (lookup.training ? select_rows(source, lookup.categorical) : gather_rows(table_.table, lookup.categorical))
                          .view({B, shape_.num_categorical, T});
    if (categorical_keep_.defined()) w = w * categorical_keep_;
    out = out + w.sum(1);
  }
  if (shape_.num_bags > 0) {
    torch::Tensor w = std::get<0>(torch::embedding_bag(source, lookup.bag_ids, batch.bag_offsets, false, 0, false,
                                                       batch.bag_weights, true))
                          .view({B, shape_.num_bags, T});
    if (bag_keep_.defined()) w = w * bag_keep_;
    out = out + w.sum(1);
  }
  return out;
}

RankingModel::RankingModel(const ModelConfig& config, const InputShape& shape, std::int64_t embedding_copies)
    : shape_(shape) {
  input_ = register_module("input", FeatureInput(shape, config.integer("embedding_dim"), embedding_copies));
  if (config.flag("wide")) add_head("wide", std::make_shared<WideHead>(shape, config.bias_tower.enabled));
  if (const BiasTowerConfig& tower = config.bias_tower; tower.enabled) {
    const std::int64_t dim = config.integer("embedding_dim");
    std::vector<bool> bias_column(static_cast<std::size_t>(input_->output_dim()), false);
    for (const InputField* f : shape.fields_in_group("bias")) {
      const auto [begin, end] = feature_columns(shape, *f, dim);
      for (std::int64_t c = begin; c < end; ++c) bias_column[static_cast<std::size_t>(c)] = true;
    }
    std::vector<std::int64_t> deep;
    for (std::size_t c = 0; c < bias_column.size(); ++c)
      if (!bias_column[c]) deep.push_back(static_cast<std::int64_t>(c));
    if (deep.empty()) throw ConfigError("model.bias_tower: every feature is a bias feature; the main model would read nothing");
    deep_columns_ = torch::tensor(deep, torch::kInt64);
    bias_tower_ = register_module("bias_tower", std::make_shared<BiasTowerHead>(tower, shape, dim));
    pal_ = tower.kind == "pal";
    biased_tasks_ = torch::zeros({shape.num_tasks}, torch::kBool);
    for (int t : tower.task_indices) biased_tasks_[t] = true;
    position_dropout_ = tower.position_dropout;
    if (position_dropout_ > 0) {
      std::vector<std::int64_t> slots, empty;
      for (const InputField* f : shape.fields_in_group("bias")) {
        if (f->kind != FieldKind::kCategorical)
          throw ConfigError("model.bias_tower.position_dropout: bias feature '" + f->name + "' is not categorical");
        slots.push_back(f->slot);
        empty.push_back(f->empty_id);
      }
      dropout_slots_ = torch::tensor(slots, torch::kInt64);
      dropout_empty_ids_ = torch::tensor(empty, torch::kInt64);
    }
  }
}

torch::Tensor RankingModel::categorical_ids(const Batch& batch) {
  if (!is_training() || position_dropout_ <= 0 || !dropout_slots_.defined() || batch.size == 0) return batch.categorical;
  torch::Tensor ids = batch.categorical.clone();
  const torch::Tensor drop = (torch::rand({batch.size}) < position_dropout_).unsqueeze(1);  // the torch RNG: seeded, restored on resume
  const torch::Tensor bias = ids.index_select(1, dropout_slots_);                          // [B, bias fields]
  ids.index_copy_(1, dropout_slots_, torch::where(drop, dropout_empty_ids_.unsqueeze(0).expand_as(bias), bias));
  return ids;
}

torch::Tensor RankingModel::bias_logits(const Batch& batch) {
  if (!bias_tower_) return {};
  torch::NoGradGuard no_grad;
  const SparseLookup lookup{batch.categorical.reshape({-1}), batch.bag_ids, false};
  const torch::Tensor features = input_->forward(batch, lookup, torch::Tensor());
  const torch::Tensor none;
  const torch::Tensor b = bias_tower_->forward({batch, lookup, none, features, shape_});
  return pal_ ? torch::where(biased_tasks_, torch::log_sigmoid(b), b) : b;
}

void RankingModel::add_head(const std::string& name, std::shared_ptr<AdditiveHead> head) {
  heads_.push_back(register_module(name, std::move(head)));
}

ModelOutput RankingModel::forward(const Batch& batch, TouchedRows* touched) {
  // A table holding one worker's rows (sharded training) read with global
  // ids would give other rows' values without an error.
  if (!row_fetch_ && input_->table().size(0) != std::max<std::int64_t>(shape_.embedding_rows, 1))
    throw std::logic_error("this model's tables hold one data-parallel worker's rows only (train.table_sharding = "
                           "\"row\"); rank 0's model is the whole one");
  SparseLookup lookup;
  torch::Tensor input_rows;
  const torch::Tensor categorical = categorical_ids(batch).reshape({-1});
  if (touched) {
    // One unique over every id of the batch; each sparse table gathers those rows as a leaf.
    const std::int64_t ncat = categorical.size(0);
    torch::Tensor all = shape_.num_bags > 0 ? torch::cat({categorical, batch.bag_ids}) : categorical;
    auto [unique, inverse] = unique_ids(all, std::max<std::int64_t>(shape_.embedding_rows, 1));
    lookup = {inverse.slice(0, 0, ncat), inverse.slice(0, ncat), true};
    touched->ids = unique;
    touched->rows.clear();
    if (row_fetch_) {
      for (torch::Tensor& rows : row_fetch_(unique)) touched->rows.push_back(rows.detach().requires_grad_(true));
    } else {
      for (SparseTable& t : sparse_tables())
        touched->rows.push_back(gather_rows(t.table, unique).requires_grad_(true));
    }
    input_rows = touched->rows[0];
  } else {
    lookup = {categorical, batch.bag_ids, false};
  }
  const torch::Tensor features = input_->forward(batch, lookup, input_rows);
  ModelOutput out = forward_deep(deep_columns_.defined() ? features.index_select(-1, deep_columns_) : features);
  std::size_t table = 1;  // TouchedRows::rows[0] is the embeddings
  const torch::Tensor none;
  for (const auto& head : heads_) {
    const bool has_table = head->sparse_table() != nullptr;
    const torch::Tensor& rows = touched && has_table ? touched->rows[table] : none;
    if (has_table) ++table;
    out.logits = out.logits + head->forward({batch, lookup, rows, features, shape_});
  }
  if (bias_tower_) {
    const torch::Tensor b = bias_tower_->forward({batch, lookup, none, features, shape_});
    if (!pal_) {
      out.logits = out.logits + b;
    } else {
      // PAL: the logit of p = sigmoid(s) x sigmoid(m), so the tasks' usual
      // cross-entropy on logits trains the product. With 1 - p =
      // (e^-s + e^-m + e^-(s+m)) / ((1 + e^-s)(1 + e^-m)), the logit is
      // -logsumexp(-s, -m, -s-m): stable, with a gradient everywhere (a clamp
      // near p = 1 let saturated rows stop learning and tie at 1).
      const torch::Tensor& m = out.logits;
      const torch::Tensor z = -torch::logsumexp(torch::stack({-b, -m, -b - m}), 0);
      out.logits = torch::where(biased_tasks_, z, m);
    }
  }
  return out;
}

std::vector<SparseTable> RankingModel::sparse_tables() {
  std::vector<SparseTable> tables{{"embeddings", input_->table(), false}};
  for (const auto& head : heads_)
    if (const SparseTable* t = head->sparse_table()) tables.push_back(*t);
  return tables;
}

std::int64_t RankingModel::training_matmul_flops_per_row() {
  std::int64_t weights = 0;
  for (const auto& p : parameters())
    if (p.requires_grad() && p.dim() >= 2) weights += p.numel();  // [in, out] or [groups, in, out]
  return 6 * weights;
}

std::vector<torch::Tensor> RankingModel::wide_dense_parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& head : heads_)
    for (torch::Tensor& p : head->wide_optimizer_parameters()) out.push_back(p);
  return out;
}

torch::Tensor task_values(const torch::Tensor& logits, const std::vector<TaskConfig>& tasks) {
  std::vector<torch::Tensor> columns;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    torch::Tensor z = logits.select(1, static_cast<std::int64_t>(t));
    columns.push_back(objective_for(tasks[t].type).value(z));
  }
  return torch::stack(columns, 1).contiguous();
}

void score_in_chunks(RankingModel& net, const std::vector<TaskConfig>& tasks, std::int64_t n, std::int64_t max_chunk,
                     const ChunkFill& fill, float* values) {
  if (n <= 0) return;
  const std::int64_t T = static_cast<std::int64_t>(tasks.size());
  const std::int64_t threads = at::get_num_threads();
  const std::int64_t chunks =
      threads == 1 ? 1 : std::max((n - 1) / std::max<std::int64_t>(1, max_chunk) + 1, std::min(threads, n));
  const std::int64_t size = (n - 1) / chunks + 1;  // equal chunks: 200 at most 128 -> 100 + 100, not 128 + 72
  auto run = [&](std::int64_t first, std::int64_t last) {
    c10::InferenceMode guard;
    model::BatchBuilder builder;
    for (std::int64_t c = first; c < last; ++c) {
      const std::int64_t begin = c * size, end = std::min(n, begin + size);
      if (begin >= end) continue;
      const data::FeaturizedData d = fill(begin, end);
      TORCH_CHECK(d.rows() == end - begin, "score_in_chunks: fill made ", d.rows(), " rows, not ", end - begin);
      const Batch batch = builder.build_range(d, 0, d.rows());
      const torch::Tensor p = task_values(net.forward(batch, nullptr).logits, tasks);
      std::copy_n(p.data_ptr<float>(), (end - begin) * T, values + begin * T);
    }
  };
  // at::parallel_for rethrows the first exception of a task after the region.
  at::parallel_for(0, chunks, 1, run);
}

const std::map<std::string, ModelFactory>& model_registry() {
  // Built-in models are listed here (not via static initializers, which a
  // static library link may drop). Adding a model: its file plus one line.
  static const std::map<std::string, ModelFactory> registry = {
      {"single_task", make_single_task},
      {"shared_bottom", make_shared_bottom},
      {"wide_deep", make_wide_deep},
      {"omoe", make_mmoe},
      {"mmoe", make_mmoe},
      {"cgc", make_ple},
      {"ple", make_ple},
      {"esmm", make_esmm},
  };
  return registry;
}

std::shared_ptr<RankingModel> create_model(const ModelConfig& config, const InputShape& shape) {
  const auto& registry = model_registry();
  auto it = registry.find(config.type);
  if (it == registry.end()) throw ConfigError("model.type: unknown model '" + config.type + "'");
  return it->second(config, shape);
}

InputShape input_shape(const data::Preprocessor& pre) {
  InputShape shape{pre.embedding_rows(), pre.num_categorical(), pre.num_bags(), pre.num_dense(), pre.num_tasks(), {}};
  auto add = [&](const FeatureConfig& f, FieldKind kind, int slot, std::int64_t offset, std::int64_t size) {
    InputField field{f.name, kind, slot, offset, size, {}, 0};
    if (!f.group.empty()) field.groups.push_back(f.group);
    if (f.bias) field.groups.push_back("bias");
    shape.fields.push_back(std::move(field));
  };
  for (std::size_t i = 0; i < pre.categorical_fields().size(); ++i) {
    const auto& f = pre.categorical_fields()[i];
    add(f.feature, FieldKind::kCategorical, static_cast<int>(i), f.offset, f.size);
    if (f.feature.type != FeatureType::kCross) shape.fields.back().empty_id = pre.empty_value_id(f);
  }
  for (std::size_t i = 0; i < pre.bag_fields().size(); ++i) {
    const auto& f = pre.bag_fields()[i];
    add(f.feature, FieldKind::kBag, static_cast<int>(i), f.offset, f.size);
  }
  for (std::size_t i = 0; i < pre.dense_fields().size(); ++i)
    add(pre.dense_fields()[i].feature, FieldKind::kDense, static_cast<int>(i), 0, 0);
  return shape;
}

bool parameters_finite(RankingModel& net) {
  torch::NoGradGuard no_grad;
  for (const auto& p : net.parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

std::vector<std::string> expert_labels(const ModelConfig& config, const std::vector<TaskConfig>& tasks) {
  std::vector<std::string> out;
  if (config.type == "cgc" || config.type == "ple") {  // the order of ExtractionLayer's experts
    for (const TaskConfig& t : tasks)
      for (std::int64_t i = 0; i < config.integer("specific_experts"); ++i) out.push_back(t.name + ":own" + std::to_string(i));
    for (std::int64_t i = 0; i < config.integer("shared_experts"); ++i) out.push_back("shared" + std::to_string(i));
  } else {
    for (std::int64_t i = 0; i < config.integer("num_experts"); ++i) out.push_back("e" + std::to_string(i));
  }
  return out;
}

ParameterEstimate estimate_parameters(const ModelConfig& config, const InputShape& shape) {
  ParameterEstimate e;
  // One estimate for every family: a key the family does not take counts as 0 (or no layers).
  auto count = [&](const char* key) { return config.has(key) ? static_cast<double>(config.integer(key)) : 0.0; };
  auto layers = [&](const char* key) { return config.has(key) ? config.integers(key) : std::vector<std::int64_t>{}; };
  const double T = std::max(shape.num_tasks, 1);
  const double rows = static_cast<double>(std::max<std::int64_t>(shape.embedding_rows, 1));
  // single_task keeps one embedding copy and one bottom per task (shared_bottom.cpp); the wide part has
  // T columns and T biases.
  const double copies = config.type == "single_task" ? T : 1;
  e.embedding = rows * count("embedding_dim") * copies + (config.flag("wide") ? (rows + 1) * T : 0);
  const double input =
      static_cast<double>(shape.num_categorical + shape.num_bags) * count("embedding_dim") +
      shape.num_dense;
  auto chain = [](double in, const std::vector<std::int64_t>& widths) {
    double params = 0;
    for (std::int64_t w : widths) {
      params += (in + 1) * static_cast<double>(w);
      in = static_cast<double>(w);
    }
    return std::make_pair(params, in);
  };
  const auto [bottom, bottom_out] = chain(input, layers("bottom_hidden"));
  const double experts = std::max(count("num_experts"), count("specific_experts") * T + count("shared_experts")) *
                         std::max(count("levels"), 1.0);
  const auto [expert, expert_out] = chain(bottom_out, layers("expert_hidden"));
  const auto [tower, tower_out] = chain(std::max(expert_out, bottom_out), layers("tower_hidden"));
  e.dense = bottom * copies + experts * expert + experts * T * (bottom_out + 1) + T * (tower + tower_out + 1);
  return e;
}

}  // namespace mtrank::model
