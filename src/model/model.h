#pragma once
// Multi-task ranking models. Every model reads the same featurized input
// (FeatureInput: one fused embedding table + dense features), may add a wide
// linear part, and returns one logit per task. Models are created by name
// through a registry, so adding a model is its file plus two registrations
// (its torch-free spec in config/model_families.cpp, its constructor here).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "model/batch.h"

namespace mtrank::model {

// One named input field, as the fitted preprocessor laid it out: components
// select fields by name or group instead of by position (a bias tower reads
// "the bias fields").
enum class FieldKind { kCategorical, kBag, kDense };
struct InputField {
  std::string name;
  FieldKind kind = FieldKind::kCategorical;
  int slot = 0;                          // column of Batch::categorical, bag number, or column of Batch::dense
  std::int64_t offset = 0, size = 0;     // its rows in the fused embedding table (categorical and bags)
  std::vector<std::string> groups;       // [[features]] group, and "bias" for bias features
  std::int64_t empty_id = 0;             // categorical: the table row of the empty value (missing at serving)
};

// Sizes and fields of the featurized input, from the fitted preprocessor.
struct InputShape {
  std::int64_t embedding_rows = 0;
  int num_categorical = 0, num_bags = 0, num_dense = 0, num_tasks = 0;
  std::vector<InputField> fields;  // categorical (incl. crosses), then bags, then dense, each in slot order

  const InputField* field(const std::string& name) const;  // nullptr if no field has the name
  std::vector<const InputField*> fields_in_group(const std::string& group) const;
};

// The columns [begin, end) of `field` in FeatureInput's output, whose layout
// is every categorical field's embedding, then every bag's, then the dense
// features (embedding_dim wide for embeddings, 1 for a dense column).
std::pair<std::int64_t, std::int64_t> feature_columns(const InputShape& shape, const InputField& field,
                                                      std::int64_t embedding_dim);
// The given fields' columns of FeatureInput's output [copies, B, in], concatenated in the given order.
torch::Tensor select_fields(const torch::Tensor& features, const InputShape& shape,
                            const std::vector<const InputField*>& fields, std::int64_t embedding_dim);

// The rows of each sparse table that a training batch touched, as leaf tensors:
// autograd fills rows[i].grad(), and a row-wise optimizer updates only those
// rows of table i (never the whole table). All tables share the same row ids.
struct TouchedRows {
  torch::Tensor ids;                // [U] unique row ids
  std::vector<torch::Tensor> rows;  // per sparse table: [U, width] leaf, requires_grad
};

// table[ids] for scoring (no autograd): rows of a large table at random ids.
// index_select copies a row at a time and waits on each cache miss; prefetching
// 16 rows ahead keeps misses in flight (5,200 rows of 64 B from a 166 MB table:
// 155-161 -> 52-56 us, build/bench/bench_micro). Training gathers from its few
// unique rows with index_select, which autograd differentiates.
torch::Tensor gather_rows(const torch::Tensor& table, const torch::Tensor& ids);

// rows[ids] with autograd, for training: the batch's rows of its gathered
// unique rows. The same values and gradients as rows.index_select(0, ids),
// bit for bit (the backward adds rows in the same order), but the backward is
// one plain loop: LibTorch's index_add_ took a quarter of a census MMoE step
// (2.4 of 8.4 ms for 34,000 rows of 4 floats; bench/step_profile.cpp).
torch::Tensor select_rows(const torch::Tensor& rows, const torch::Tensor& ids);

// The sorted distinct ids of a batch and, for each id, its position among
// them: at::_unique(ids, sorted, return_inverse), exactly. Ids must lie in
// [0, table_rows). When the table is small against the batch (census: a few
// thousand rows, 40,000 ids) it marks ids in a table-sized array instead of
// hashing: at::_unique's hash set took 13% of a census MMoE step.
std::pair<torch::Tensor, torch::Tensor> unique_ids(const torch::Tensor& ids, std::int64_t table_rows);

// Where a batch's ids point: into the table itself (inference), or into the
// gathered unique rows (training).

struct SparseLookup {
  torch::Tensor categorical;  // [B * F] indices
  torch::Tensor bag_ids;      // [nnz] indices
  bool training = false;
};

struct ModelOutput {
  torch::Tensor logits;  // [B, T]
  torch::Tensor gates;   // [B, T, E] gate weights for expert utilization (undefined if none)
};

// A table updated row-wise, outside the dense optimizers.
struct SparseTable {
  std::string name;
  torch::Tensor table;
  bool wide = false;  // wide-part table (FTRL by default) or deep embeddings
};

// Embedding lookup for all categorical fields and multi-hot bags at once,
// concatenated with dense features. With copies > 1 every task gets its own
// embeddings (single-task models): the table is copies times wider and the
// output is [copies, B, in].
class FeatureInputImpl : public torch::nn::Module {
 public:
  FeatureInputImpl(const InputShape& shape, std::int64_t embedding_dim, std::int64_t copies = 1);
  torch::Tensor forward(const Batch& batch, const SparseLookup& lookup, const torch::Tensor& rows);
  std::int64_t output_dim() const { return output_dim_; }
  torch::Tensor& table() { return table_; }

 private:
  torch::Tensor table_;  // [embedding_rows, copies * D]
  InputShape shape_;
  std::int64_t dim_, copies_, output_dim_;
};
TORCH_MODULE(FeatureInput);


// What an additive head reads.
struct HeadInput {
  const Batch& batch;
  const SparseLookup& lookup;
  const torch::Tensor& table_rows;  // training: the touched rows of the head's own table (undefined without one)
  const torch::Tensor& features;    // FeatureInput's output [copies, B, in] (select_fields picks fields from it)
  const InputShape& shape;
};

// A component whose output is added to every task's logit beside the model
// family's deep part: Wide & Deep's wide part today, the position-bias tower
// next. A head may own one table trained row by row (SparseTable), and may
// hand dense parameters to the wide optimizer; its other parameters train
// with the deep optimizer.
class AdditiveHead : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const HeadInput& input) = 0;  // [B, T]
  virtual const SparseTable* sparse_table() { return nullptr; }
  virtual std::vector<torch::Tensor> wide_optimizer_parameters() { return {}; }
};

// Wide & Deep's wide part as a head: a linear model over every sparse id
// (categorical, cross and multi-hot), one weight per id and task, plus a bias
// per task; FTRL (train.wide_optimizer) trains both.
class WideHead : public AdditiveHead {
 public:
  // skip_bias_fields: leave the bias features (`bias = true`) out, as the deep
  // part does when a bias tower reads them (the tower is then their only reader).
  WideHead(const InputShape& shape, bool skip_bias_fields);
  torch::Tensor forward(const HeadInput& input) override;
  const SparseTable* sparse_table() override { return &table_; }
  std::vector<torch::Tensor> wide_optimizer_parameters() override { return {bias_}; }

 private:
  SparseTable table_;  // "table": [embedding_rows, T]
  torch::Tensor bias_;  // [T]
  InputShape shape_;
  torch::Tensor categorical_keep_, bag_keep_;  // [1, fields, 1]: 0 for a skipped bias field; undefined if none is skipped
};

class RankingModel : public torch::nn::Module {
 public:
  RankingModel(const ModelConfig& config, const InputShape& shape, std::int64_t embedding_copies = 1);
  // `touched` non-null: training mode lookup through gathered unique rows.
  ModelOutput forward(const Batch& batch, TouchedRows* touched);
  // The embeddings, then each head's table, in the order of TouchedRows::rows.
  std::vector<SparseTable> sparse_tables();
  // Dense parameters the heads give the wide optimizer (the wide part's bias).
  std::vector<torch::Tensor> wide_dense_parameters();
  // Matrix-multiply FLOPs of one training row, the roofline's numerator: each
  // dense weight element is one multiply-add forward and two backward (the
  // input's and the weight's gradient), so 6 per element. Biases, activations,
  // the experts' mixing and the table rows are left out.
  std::int64_t training_matmul_flops_per_row();
  // Adds a head under `name` (its parameters are saved as "NAME.*"); model.wide adds "wide".
  void add_head(const std::string& name, std::shared_ptr<AdditiveHead> head);
  FeatureInput& input() { return input_; }
  const InputShape& shape() const { return shape_; }
  // The bias tower's per-row output [B, T] for a batch (zero in the tasks it
  // does not bias); undefined without a tower. Additive: the logit it adds;
  // PAL: log P(seen). For plots of the learned bias against log theta_k.
  torch::Tensor bias_logits(const Batch& batch);
  // The categorical ids [B, F] the model reads for a batch: in training with a
  // bias tower, every bias feature reads as its empty value in a random share
  // (position_dropout) of rows, as at serving; otherwise the batch's own ids.
  torch::Tensor categorical_ids(const Batch& batch);
  // Starts every task's deep output at a constant logit (Objective::initial_logit
  // of its training mean), one per task in config order; called on a fresh
  // model before training. Without it a head starting at logit 0 builds its
  // offset (a 15% click rate, a mean rating of 4) out of the shared layers, in
  // a direction the other tasks also move; measured on a simulated log, that
  // left the click head anti-correlated with relevance (docs/experiments.md
  // section 8).
  virtual void set_output_bias(const std::vector<double>& task_logits) = 0;
  // Where forward(batch, touched) reads the batch's unique rows of every
  // sparse table (sparse_tables() order, [U, width] each): unset, this
  // process's tables; a trainer whose tables are sharded row-wise over
  // processes sets it to fetch the rows from their owners.
  using RowFetch = std::function<std::vector<torch::Tensor>(const torch::Tensor& unique_ids)>;
  void set_row_fetch(RowFetch fetch) { row_fetch_ = std::move(fetch); }

 protected:
  // The model family's deep part: input [copies, B, in] -> logits [B, T] (+ gates).
  virtual ModelOutput forward_deep(const torch::Tensor& x) = 0;
  // Width of the deep part's input: FeatureInput's, less the bias features' columns when a bias tower reads them.
  std::int64_t input_dim() const { return deep_columns_.defined() ? deep_columns_.size(0) : input_->output_dim(); }
  InputShape shape_;

 private:
  FeatureInput input_{nullptr};
  RowFetch row_fetch_;
  std::vector<std::shared_ptr<AdditiveHead>> heads_;
  std::shared_ptr<AdditiveHead> bias_tower_;  // registered as "bias_tower", applied after the heads
  bool pal_ = false;
  torch::Tensor biased_tasks_;  // [T] bool: the tasks the tower biases
  torch::Tensor deep_columns_;  // with a bias tower: FeatureInput's columns the deep part reads (int64)
  // Position dropout: the columns of Batch::categorical it blanks (the bias
  // fields) and each one's empty-value id.
  torch::Tensor dropout_slots_, dropout_empty_ids_;
  double position_dropout_ = 0;
};

// Logits [B, T] -> task values [B, T], contiguous: probabilities for binary
// tasks, the raw output for regression tasks. Offline prediction and serving
// both use this, so they cannot disagree.
torch::Tensor task_values(const torch::Tensor& logits, const std::vector<TaskConfig>& tasks);

// Serving's scoring of one candidate list of n rows, as Wide & Deep's serving
// does it: the list is split into equal chunks of at most max_chunk rows, and
// into at least one chunk per thread; each chunk is made by `fill(begin, end)`
// and run forward, single-threaded, as its own task on LibTorch's pool. On one
// thread the list is one chunk: splitting buys no parallelism and pays every
// op's fixed cost again. Writes task values,
// row-major [n, T], to `values`; an exception from `fill` reaches the caller.
using ChunkFill = std::function<data::FeaturizedData(std::int64_t begin, std::int64_t end)>;
void score_in_chunks(RankingModel& net, const std::vector<TaskConfig>& tasks, std::int64_t n, std::int64_t max_chunk,
                     const ChunkFill& fill, float* values);

using ModelFactory = std::function<std::shared_ptr<RankingModel>(const ModelConfig&, const InputShape&)>;
const std::map<std::string, ModelFactory>& model_registry();
std::shared_ptr<RankingModel> create_model(const ModelConfig& config, const InputShape& shape);

// The input sizes a fitted preprocessor produces.
InputShape input_shape(const data::Preprocessor& pre);
// False if any weight is NaN or infinite.
bool parameters_finite(RankingModel& net);

// Any network's weights as a LibTorch archive in memory (LibTorch's own file
// writer aborts the process on a full disk), and back: load_weights checks
// every tensor's name and shape against `net` and that all are finite.
// Both throw ModelError naming `dir` / `path`.
std::string serialize_weights(torch::nn::Module& net, const std::string& dir);
void load_weights(torch::nn::Module& net, const std::string& bytes, const std::string& path);

// Names of the columns of expert utilization, one per expert: "e0", "e1", ...
// for OMoE/MMoE; for CGC/PLE (last level) each task's own experts, named by
// kind and owner ("click:own0", ...), then the shared ones ("shared0", ...).
std::vector<std::string> expert_labels(const ModelConfig& config, const std::vector<TaskConfig>& tasks);

// An upper-bound estimate of the parameter count, from the config alone (no
// allocation): the embedding table(s) plus every expert, gate, bottom and
// tower layer as if each read the whole input. Lets training refuse a config
// that cannot fit in memory, naming the key, before allocating anything.
struct ParameterEstimate {
  double embedding = 0, dense = 0;
};
ParameterEstimate estimate_parameters(const ModelConfig& config, const InputShape& shape);

}  // namespace mtrank::model
