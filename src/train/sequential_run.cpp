#include "train/sequential_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <set>

#include <unistd.h>

#include <torch/torch.h>

#include "common/error.h"
#include "common/progress.h"
#include "common/system.h"
#include "data/dataset.h"
#include "data/hash.h"
#include "data/item_features.h"
#include "eval/metric_registry.h"
#include "eval/next_item.h"
#include "model/model_dir.h"
#include "model/sequential.h"
#include "model/sequential_dir.h"
#include "train/checkpoint_io.h"
#include "train/candidate_sampler.h"
#include "train/communicator.h"

namespace mtrank::train {
namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

torch::Tensor windows_tensor(const std::vector<std::int32_t>& v, std::int64_t rows, std::int64_t cols) {
  return torch::from_blob(const_cast<std::int32_t*>(v.data()), {rows, cols}, torch::kInt32).to(torch::kInt64);
}

// AdamW with LRURec's groups: LayerNorm affines and the LRU's lambda
// parameters take no weight decay; everything else does.
std::unique_ptr<torch::optim::AdamW> make_optimizer(model::SequentialRecommenderImpl& net, const TrainConfig& t) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : net.named_parameters()) {
    const std::string& name = p.key();
    const bool exempt = name.find("norm") != std::string::npos || name.find("lambda_") != std::string::npos;
    (exempt ? no_decay : decay).push_back(p.value());
  }
  const auto options = torch::optim::AdamWOptions(t.learning_rate).eps(t.adam_eps);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(options).weight_decay(t.weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(options).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(options).weight_decay(t.weight_decay));
}

// Linear warm-up, then constant or cosine to 0 at `total` steps.
double learning_rate_at(const TrainConfig& t, std::int64_t step, std::int64_t total) {
  if (t.warmup_steps > 0 && step < t.warmup_steps) return t.learning_rate * static_cast<double>(step + 1) / t.warmup_steps;
  if (t.lr_decay != "cosine" || total <= t.warmup_steps) return t.learning_rate;
  const double progress = static_cast<double>(step - t.warmup_steps) / static_cast<double>(total - t.warmup_steps);
  return t.learning_rate * 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress)));
}

double metric_of(const std::vector<std::pair<std::string, double>>& metrics, const std::string& name) {
  for (const auto& [n, v] : metrics)
    if (n == name) return v;
  return std::numeric_limits<double>::quiet_NaN();
}

// The training loop's state between steps: with the model, the optimizer
// and LibTorch's generator, what a checkpoint holds.
struct LoopState {
  int epoch = 1;                // 1-based
  std::int64_t next_batch = 0;  // the epoch's next batch
  torch::Tensor order;          // the epoch's order of training windows
  double best = -std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best_weights;
  std::int64_t validations_without_gain = 0;
  double candidate_sum = 0;
  bool stop = false;
};

nlohmann::json history_json(const std::vector<ValidationPoint>& history) {
  nlohmann::json out = nlohmann::json::array();  // doubles round-trip exactly through the JSON text
  const auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  for (const ValidationPoint& p : history) {
    nlohmann::json val = nlohmann::json::array();
    for (const auto& [name, v] : p.val) val.push_back({name, num(v)});
    out.push_back({{"step", p.step}, {"epoch", p.epoch}, {"train_loss", num(p.train_loss)},
                   {"learning_rate", p.learning_rate}, {"seconds", p.seconds}, {"val", val}});
  }
  return out;
}

void save_checkpoint(const std::string& path, const std::string& fingerprint, model::SequentialRecommenderImpl& net,
                     torch::optim::AdamW& optimizer, const SequentialRunRecord& run, const LoopState& state) {
  torch::serialize::OutputArchive a, model, adam, best;
  a.write("fingerprint", bytes_tensor(fingerprint), true);
  net.save(model);
  a.write("model", model);
  optimizer.save(adam);
  a.write("optimizer", adam);
  for (std::size_t i = 0; i < state.best_weights.size(); ++i) best.write("p" + std::to_string(i), state.best_weights[i], true);
  a.write("best_weights", best);
  a.write("counters", torch::tensor({static_cast<std::int64_t>(state.epoch), state.next_batch, run.steps, run.best_step,
                                     state.validations_without_gain, static_cast<std::int64_t>(state.best_weights.size()),
                                     static_cast<std::int64_t>(state.stop), static_cast<std::int64_t>(run.threads)}),
          true);
  a.write("figures", torch::tensor({state.best, state.candidate_sum, run.train_seconds, run.validation_seconds},
                                   torch::kFloat64),
          true);
  a.write("order", state.order, true);
  a.write("torch_rng", at::detail::getDefaultCPUGenerator().get_state(), true);
  a.write("history", bytes_tensor(history_json(run.history).dump()), true);
  write_archive_atomic(a, path);
}

// Throws ModelError for a missing, foreign or corrupt checkpoint. `samples`,
// `steps_per_epoch` and `total`: the run's, which the loop state must fit.
// `bytes`: the file's contents (rank 0 reads it and sends it to the others).
void load_checkpoint(const std::string& bytes, const std::string& path, const std::string& fingerprint,
                     model::SequentialRecommenderImpl& net, torch::optim::AdamW& optimizer, SequentialRunRecord& run,
                     LoopState& state, std::int64_t samples, std::int64_t steps_per_epoch, std::int64_t total) {
  if (bytes.empty()) throw ModelError(path + ": no checkpoint to resume from (train without --resume first)");
  try {
    torch::serialize::InputArchive a, model, adam, best;
    a.load_from(bytes.data(), bytes.size());
    // LibTorch resizes tensors on load instead of checking shapes, so a
    // checkpoint of another config or data would load "successfully".
    torch::Tensor stored, counters, figures, rng, history;
    a.read("fingerprint", stored, true);
    if (tensor_bytes(stored) != fingerprint)
      throw ModelError(path + ": this checkpoint belongs to another config or training log; delete it or train "
                              "without --resume");
    // Shapes are checked after loading too: LibTorch resizes on load.
    std::vector<std::vector<std::int64_t>> shapes;
    for (const auto& p : net.parameters()) shapes.push_back(p.sizes().vec());
    for (const auto& b : net.buffers()) shapes.push_back(b.sizes().vec());
    a.read("model", model);
    net.load(model);
    std::size_t k = 0;
    for (const auto& p : net.parameters())
      if (p.sizes().vec() != shapes[k++]) throw ModelError(path + ": corrupt checkpoint: a parameter has another shape");
    for (const auto& b : net.buffers())
      if (b.sizes().vec() != shapes[k++]) throw ModelError(path + ": corrupt checkpoint: a buffer has another shape");
    a.read("optimizer", adam);
    optimizer.load(adam);
    a.read("counters", counters, true);
    a.read("figures", figures, true);
    a.read("order", state.order, true);
    a.read("torch_rng", rng, true);
    a.read("history", history, true);
    if (counters.numel() != 8 || figures.numel() != 4)
      throw ModelError(path + ": corrupt checkpoint: its counters have the wrong size");
    const auto c = [&](int i) { return counters[i].item<std::int64_t>(); };
    state.epoch = static_cast<int>(c(0));
    state.next_batch = c(1);
    run.steps = c(2);
    run.best_step = c(3);
    state.validations_without_gain = c(4);
    state.stop = c(6) != 0;
    run.early_stopped = state.stop;
    if (c(7) != run.threads && run.threads > 0)
      std::fprintf(stderr, "resuming with %d threads a run that trained with %lld: sums reduce in another order, so "
                           "results match an uninterrupted run only to rounding\n",
                   run.threads, static_cast<long long>(c(7)));
    const bool order_fits = state.order.dim() == 1 && state.order.scalar_type() == torch::kInt64 &&
                            state.order.numel() == samples &&
                            (samples == 0 || (state.order.min().item<std::int64_t>() >= 0 &&
                                              state.order.max().item<std::int64_t>() < samples));
    if (!order_fits || state.epoch < 1 || state.next_batch < 1 || state.next_batch > steps_per_epoch || run.steps < 1 ||
        run.steps > total || run.best_step < 0 || run.best_step > run.steps || state.validations_without_gain < 0)
      throw ModelError(path + ": corrupt checkpoint: its position in training does not fit this run");
    state.best = figures[0].item<double>();
    state.candidate_sum = figures[1].item<double>();
    run.train_seconds = figures[2].item<double>();
    run.validation_seconds = figures[3].item<double>();
    const auto params = net.parameters();
    if (c(5) != 0 && c(5) != static_cast<std::int64_t>(params.size()))
      throw ModelError(path + ": corrupt checkpoint: it keeps " + std::to_string(c(5)) + " best weights for " +
                       std::to_string(params.size()) + " parameters");
    a.read("best_weights", best);
    state.best_weights.assign(static_cast<std::size_t>(c(5)), torch::Tensor());
    for (std::size_t i = 0; i < state.best_weights.size(); ++i) {
      best.read("p" + std::to_string(i), state.best_weights[i], true);
      if (!state.best_weights[i].sizes().equals(params[i].sizes()) || state.best_weights[i].dtype() != params[i].dtype())
        throw ModelError(path + ": corrupt checkpoint: best weight " + std::to_string(i) + " has another shape");
    }
    set_torch_generator_state(rng);
    const nlohmann::json points = nlohmann::json::parse(tensor_bytes(history), nullptr, false);
    if (!points.is_array()) throw ModelError(path + ": corrupt checkpoint: its validation history is not JSON");
    run.history.clear();
    for (const auto& p : points) {
      ValidationPoint v;
      v.step = p.at("step").get<std::int64_t>();
      v.epoch = p.at("epoch").get<int>();
      const auto num = [](const nlohmann::json& x) {  // null: a figure that was not finite
        return x.is_null() ? std::numeric_limits<double>::quiet_NaN() : x.get<double>();
      };
      v.train_loss = num(p.at("train_loss"));
      v.learning_rate = p.at("learning_rate").get<double>();
      v.seconds = p.at("seconds").get<double>();
      for (const auto& m : p.at("val")) v.val.emplace_back(m.at(0).get<std::string>(), num(m.at(1)));
      run.history.push_back(std::move(v));
    }
  } catch (const c10::Error& e) {
    throw ModelError(path + ": corrupt checkpoint or one from another config: " + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path + ": corrupt checkpoint: its validation history: " + e.what());
  }
  run.resumed = true;
}

}  // namespace

const std::vector<std::string>& next_item_metric_names() {
  static const std::vector<std::string> names = {"ndcg@5",    "ndcg@10",   "ndcg@20", "recall@5",
                                                 "recall@10", "recall@20", "mrr"};
  return names;
}

double WidthMetrics::value(const std::string& name) const { return metric_of(metrics, name); }

namespace {
bool is_user_item_file(const std::string& path) { return has_suffix(path, ".txt") || has_suffix(path, ".txt.gz"); }
}  // namespace

bool is_user_item_log(const FileList& files) {
  return !files.empty() && std::all_of(files.begin(), files.end(), is_user_item_file);
}

data::Interactions read_interactions(const SequentialConfig& config, const FileList& files) {
  if (is_user_item_log(files)) return data::read_user_item_lines(files);
  for (const std::string& f : files)
    if (is_user_item_file(f))
      throw DataError(describe(files) + ": mixes `user item` lines (" + f +
                      ") with CSV/TSV tables; one log's files are all of one kind");
  return data::read_interaction_table(files, {config.user_column, config.item_column, config.time_column});
}

NextItemCases validation_cases(const data::LeaveOneOut& split) {
  NextItemCases c;
  for (std::size_t u = 0; u < split.train.size(); ++u) {
    if (split.val[u] == 0) continue;
    c.inputs.push_back(split.train[u]);
    c.targets.push_back(split.val[u]);
  }
  return c;
}

NextItemCases test_cases(const data::LeaveOneOut& split) {
  NextItemCases c;
  for (std::size_t u = 0; u < split.train.size(); ++u) {
    if (split.test[u] == 0) continue;
    std::vector<std::int32_t> input = split.train[u];
    input.push_back(split.val[u]);
    c.inputs.push_back(std::move(input));
    c.targets.push_back(split.test[u]);
  }
  return c;
}

namespace {
// The target's rank at every width for cases [first, last).
std::vector<std::vector<std::int64_t>> next_item_ranks(model::SequentialRecommenderImpl& net, const NextItemCases& cases,
                                                       std::int64_t first, std::int64_t last, int max_len,
                                                       bool exclude_history, std::int64_t batch_size,
                                                       const std::string& name, const std::string& path) {
  const std::vector<std::int64_t>& widths = net.options().widths;
  std::vector<std::vector<std::int64_t>> ranks(widths.size());
  const bool was_training = net.is_training();
  net.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor table = net.item_table();
  std::vector<std::int32_t> window_block;
  for (std::int64_t begin = first; begin < last; begin += batch_size) {
    const std::int64_t end = std::min(last, begin + batch_size);
    window_block.clear();
    for (std::int64_t i = begin; i < end; ++i) {
      const std::vector<std::int32_t> w = data::input_window(cases.inputs[static_cast<std::size_t>(i)], max_len);
      window_block.insert(window_block.end(), w.begin(), w.end());
    }
    const torch::Tensor tokens = windows_tensor(window_block, end - begin, max_len);
    const torch::Tensor last = net.forward(tokens, table).select(1, max_len - 1);  // [B, D]
    const torch::Tensor scores = net.scores_by_width(last, table).contiguous();    // [W, B, V]
    if (!torch::isfinite(scores).all().item<bool>())
      throw TrainingError(path + ": the model scores nan or infinity for a user of " + name);
    const std::int64_t V = scores.size(2);
    std::vector<std::int32_t> excluded;
    for (std::int64_t i = begin; i < end; ++i) {
      excluded.clear();
      if (exclude_history) {
        const std::int32_t* w = window_block.data() + (i - begin) * max_len;
        excluded.assign(w, w + max_len);
      }
      for (std::size_t k = 0; k < widths.size(); ++k) {
        const float* row = scores.data_ptr<float>() + (static_cast<std::int64_t>(k) * (end - begin) + (i - begin)) * V;
        ranks[k].push_back(eval::next_item_rank(row, V, cases.targets[static_cast<std::size_t>(i)], excluded));
      }
    }
  }
  if (was_training) net.train();
  return ranks;
}
}  // namespace

NextItemRecord evaluate_next_item(model::SequentialRecommenderImpl& net, const NextItemCases& cases, int max_len,
                                  bool exclude_history, std::int64_t batch_size, const std::string& name,
                                  const std::string& path, Communicator* communicator) {
  const std::vector<std::int64_t>& widths = net.options().widths;
  const std::int64_t n = static_cast<std::int64_t>(cases.targets.size());
  std::vector<std::vector<std::int64_t>> ranks;
  const int world = communicator ? communicator->world_size() : 1;
  if (world == 1) {
    ranks = next_item_ranks(net, cases, 0, n, max_len, exclude_history, batch_size, name, path);
  } else {
    // Each process ranks a slice of the users; the ranks are gathered (as
    // floats: exact below 2^24 items) and every process computes the metrics
    // of all users from them, exactly as one process would.
    if (net.options().num_items >= (1 << 24))
      throw ConfigError("data-parallel evaluation gathers ranks as floats, exact below 16,777,216 items; this "
                        "catalog has " + std::to_string(net.options().num_items));
    const std::int64_t slice = (n + world - 1) / world;
    const auto bounds = [&](int r) {
      const std::int64_t b = std::min(n, slice * r);
      return std::make_pair(b, std::min(n, b + slice));
    };
    const auto [first, last] = bounds(communicator->rank());
    const auto mine = next_item_ranks(net, cases, first, last, max_len, exclude_history, batch_size, name, path);
    std::vector<float> local;
    for (const auto& w : mine) local.insert(local.end(), w.begin(), w.end());
    const std::vector<float> all = communicator->gather_all(local);
    ranks.assign(widths.size(), {});
    std::size_t at = 0;
    for (int r = 0; r < world; ++r) {
      const auto [b, e] = bounds(r);
      for (std::size_t k = 0; k < widths.size(); ++k)
        for (std::int64_t i = b; i < e; ++i) ranks[k].push_back(static_cast<std::int64_t>(all[at++]));
    }
  }
  NextItemRecord record;
  record.name = name;
  record.path = path;
  record.users = n;
  for (std::size_t k = 0; k < widths.size(); ++k) {
    WidthMetrics w;
    w.width = widths[k];
    for (const std::string& metric : next_item_metric_names())
      w.metrics.emplace_back(metric, n ? eval::make_metric(metric)->compute_from_ranks(ranks[k])
                                       : std::numeric_limits<double>::quiet_NaN());
    record.widths.push_back(std::move(w));
  }
  return record;
}

nlohmann::json to_json(const NextItemRecord& record) {
  nlohmann::json widths = nlohmann::json::object();
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  for (const WidthMetrics& w : record.widths) {
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [name, v] : w.metrics) m[name] = num(v);
    widths[std::to_string(w.width)] = m;
  }
  return {{"users", record.users}, {"widths", widths}};
}

std::vector<std::pair<std::int32_t, float>> recommend(model::SequentialRecommenderImpl& net,
                                                      const std::vector<std::int32_t>& history, int max_len,
                                                      std::int64_t width, std::int64_t k) {
  const std::vector<std::int64_t>& widths = net.options().widths;
  const std::int64_t level =
      static_cast<std::int64_t>(width == 0 ? widths.size() - 1 : model::width_index(widths, width));
  net.eval();
  torch::NoGradGuard no_grad;
  const std::vector<std::int32_t> window = data::input_window(history, max_len);
  const torch::Tensor tokens = windows_tensor(window, 1, max_len);
  const torch::Tensor table = net.item_table();
  torch::Tensor scores =
      net.scores_by_width(net.forward(tokens, table).select(1, max_len - 1), table)[level][0].clone();  // [V]
  const std::set<std::int32_t> left_out(history.begin(), history.end());
  std::vector<std::int64_t> masked(left_out.begin(), left_out.end());
  masked.push_back(0);  // padding
  scores.index_fill_(0, torch::tensor(masked, torch::kInt64), -std::numeric_limits<float>::infinity());
  const std::int64_t available = scores.size(0) - static_cast<std::int64_t>(masked.size());
  const auto [values, ids] = scores.topk(std::max<std::int64_t>(0, std::min(k, available)));
  std::vector<std::pair<std::int32_t, float>> out;
  for (std::int64_t i = 0; i < ids.size(0); ++i)
    out.emplace_back(static_cast<std::int32_t>(ids[i].item<std::int64_t>()), values[i].item<float>());
  return out;
}

NextItemRecord evaluate_log(model::SequentialRecommenderImpl& net, const Config& config,
                            const data::ItemVocabulary& items, const std::string& path, std::int64_t* unknown_events) {
  data::Interactions log = read_interactions(config.sequential, {path});
  std::int64_t unknown = 0;
  std::vector<std::string> names;
  for (std::vector<std::int32_t>& h : log.histories) {
    names.clear();
    for (std::int32_t id : h) names.push_back(log.items.external(id));
    h = data::map_items(items, names, &unknown);
  }
  if (unknown_events) *unknown_events = unknown;
  const NextItemCases cases = test_cases(data::leave_one_out(log));
  if (cases.targets.empty())
    throw DataError(path + ": no user has 3 or more known events, so there is no test item to evaluate (" +
                    std::to_string(unknown) + " events had items the model does not know)");
  return evaluate_next_item(net, cases, static_cast<int>(config.sequential.max_len),
                            config.sequential.exclude == "history", config.train.eval_batch_size, "test", path);
}

SequentialRunRecord run_sequential_training(const SequentialRunRequest& request) {
  SequentialRunRecord run;
  run.config = request.config;
  data::expand_data_sets(run.config.data);  // once: the model's config.toml names the files read
  const Config& config = run.config;
  const SequentialConfig& sc = config.sequential;
  const TrainConfig& tc = config.train;
  if (!sc.enabled) throw ConfigError(config.source + ": no [sequential] section");
  if (config.data.train.empty())
    throw ConfigError(config.source + ": no training log: set data.train or pass --train FILE");
  if (!config.data.val.empty() || !config.data.test.empty())
    throw ConfigError("a [sequential] model splits the training log leave-one-out (each user's last item tests, the "
                      "second-last validates); drop --val/--test and data.val/data.test");
  const bool columns = !sc.text_columns.empty() || !sc.multi_hot_columns.empty();
  if (columns && config.data.items.empty())
    throw ConfigError("sequential.text_columns and multi_hot_columns are columns of an item table: set data.items or "
                      "pass --items FILE");
  if (!columns && !config.data.items.empty())
    throw ConfigError(config.data.items + ": an item table, but sequential.text_columns and multi_hot_columns name "
                      "none of its columns");
  if (!sc.item_ids && !columns && config.data.item_vectors.empty())
    throw ConfigError("sequential.item_ids = false and no item features or vectors: items have no representation");
  // A worker of a data-parallel run joins the others now (docs/distributed.md).
  DistributedEnv env = request.join_distributed ? DistributedEnv::from_environment() : DistributedEnv{};
  env.timeout = request.distributed_timeout;
  const std::unique_ptr<Communicator> communicator = make_communicator(env);
  const int world = env.world_size, rank = env.rank;
  run.world_size = world;
  run.primary = communicator->is_primary();
  if (run.primary) model::check_model_output_dir(request.out);  // before any work, by the one process that writes it
  const bool progress = request.show_progress && run.primary;  // rank 0 alone reports
  run.threads = configure_threads(env.threads_per_worker(static_cast<int>(tc.threads)));
  torch::manual_seed(tc.seed);

  Progress read_timer("read", 0, "events", false);
  const data::Interactions log = read_interactions(sc, config.data.train);
  const data::LeaveOneOut split = data::leave_one_out(log);
  run.read_seconds = read_timer.elapsed_seconds();
  run.users = static_cast<std::int64_t>(log.histories.size());
  run.items = log.items.size();
  run.events = log.events;
  run.users_train_only = split.users_train_only;
  const int max_len = static_cast<int>(sc.max_len);
  const data::TrainingWindows windows =
      data::training_windows(split.train, max_len, static_cast<int>(sc.window_step > 0 ? sc.window_step : sc.max_len));
  run.train_samples = windows.samples();
  if (run.train_samples == 0) throw DataError(describe(config.data.train) + ": no training sequences (every history is empty)");
  const NextItemCases val_cases = validation_cases(split);
  if (val_cases.targets.empty())
    throw DataError(describe(config.data.train) + ": no user has 3 or more events, so there is nothing to validate or test on "
                    "(leave-one-out needs a training item, a validation item and a test item)");
  if (progress)
    std::fprintf(stderr, "read %s in %s: %lld users, %lld items, %lld events (%lld users too short to validate)\n",
                 describe(config.data.train).c_str(), human_seconds(run.read_seconds).c_str(), static_cast<long long>(run.users),
                 static_cast<long long>(run.items), static_cast<long long>(run.events),
                 static_cast<long long>(run.users_train_only));

  model::ItemFeatureSizes sizes;
  data::ItemBags bags;
  data::ItemVectorTable vectors;
  const bool integer_ids = is_user_item_log(config.data.train);
  if (columns) {
    data::ItemFeatureColumns feature_columns;
    feature_columns.id_column = sc.item_id_column;
    feature_columns.text = sc.text_columns;
    feature_columns.multi_hot = sc.multi_hot_columns;
    feature_columns.buckets = sc.feature_buckets;
    feature_columns.seed = config.data.hash_seed;
    feature_columns.integer_ids = integer_ids;
    bags = data::item_bags(config.data.items, log.items, feature_columns);
    sizes.buckets = bags.buckets;
    sizes.entries = static_cast<std::int64_t>(bags.ids.size());
    ItemFeatureSummary& f = run.item_features;
    f.buckets = bags.buckets;
    f.entries = sizes.entries;
    f.items_without_row = bags.items_without_row;
    f.items_without_terms = bags.items_without_terms;
    f.table_rows_unused = bags.rows_unused;
    if (progress)
      std::fprintf(stderr, "item features from %s: %lld terms in %lld buckets; %lld of %lld items have no row, %lld no term\n",
                   config.data.items.c_str(), static_cast<long long>(f.entries), static_cast<long long>(f.buckets),
                   static_cast<long long>(f.items_without_row), static_cast<long long>(run.items),
                   static_cast<long long>(f.items_without_terms));
  }
  if (!config.data.item_vectors.empty()) {
    vectors = data::item_vector_table(config.data.item_vectors, log.items, integer_ids);
    sizes.vector_dim = vectors.dim;
    run.item_features.vector_dims = vectors.file_dims;
    run.item_features.items_without_vector = vectors.items_without_vector;
    run.item_features.vector_rows_unused = vectors.rows_unused;
    if (progress)
      for (std::size_t i = 0; i < config.data.item_vectors.size(); ++i)
        std::fprintf(stderr, "item vectors from %s: %lld dimensions; %lld of %lld items have none (zero vectors)\n",
                     config.data.item_vectors[i].c_str(), static_cast<long long>(vectors.file_dims[i]),
                     static_cast<long long>(vectors.items_without_vector[i]), static_cast<long long>(run.items));
  }
  auto net = model::create_sequential_model(sc, run.items, sizes);
  net->set_item_features(bags.offsets, bags.ids, bags.weights, vectors.values);
  for (const auto& p : net->parameters()) run.parameters += p.numel();
  if (world > 1) {
    std::vector<torch::Tensor> params = net->parameters();
    communicator->broadcast(params);  // every replica starts from rank 0's weights
  }
  auto optimizer = make_optimizer(*net, tc);
  const torch::Tensor inputs = windows_tensor(windows.inputs, windows.samples(), max_len);
  const torch::Tensor labels = windows_tensor(windows.labels, windows.samples(), max_len);
  const std::int64_t batch = std::min<std::int64_t>(tc.batch_size, windows.samples());
  const std::int64_t steps_per_epoch = (windows.samples() + batch - 1) / batch;
  std::int64_t total = steps_per_epoch * tc.epochs;
  if (tc.max_steps > 0) total = std::min(total, tc.max_steps);
  if (progress)
    std::fprintf(stderr, "model %s, widths %s: %s parameters, %d threads, %lld training sequences, %lld steps per epoch\n",
                 sc.block.c_str(),
                 [&] {
                   std::string w;
                   for (std::int64_t x : sc.widths) w += (w.empty() ? "" : "/") + std::to_string(x);
                   return w;
                 }().c_str(),
                 human_count(static_cast<double>(run.parameters)).c_str(), run.threads,
                 static_cast<long long>(windows.samples()), static_cast<long long>(steps_per_epoch));

  std::unique_ptr<CandidateSampler> sampler;
  if (sc.softmax == "sampled") sampler = std::make_unique<CandidateSampler>(labels, run.items, sc.negatives);
  const std::string& monitor = tc.monitor;
  // What a checkpoint belongs to: the config (threads aside), the training
  // windows and their labels, the validation and test targets, the item
  // vocabulary and the item side information (the model's buffers).
  const std::string fingerprint = [&] {
    Config identity = config;
    identity.train.threads = 0;
    std::uint64_t h = data::hash_string(to_toml(identity), 7);
    const auto add = [&h](const void* p, std::size_t bytes) {
      h = data::hash_combine(h, data::hash_string(std::string_view(static_cast<const char*>(p), bytes), 7));
    };
    add(windows.inputs.data(), windows.inputs.size() * sizeof(std::int32_t));
    add(windows.labels.data(), windows.labels.size() * sizeof(std::int32_t));
    add(val_cases.targets.data(), val_cases.targets.size() * sizeof(std::int32_t));
    const NextItemCases test = test_cases(split);
    add(test.targets.data(), test.targets.size() * sizeof(std::int32_t));
    for (std::int32_t id = 1; id <= log.items.size(); ++id) add(log.items.external(id).data(), log.items.external(id).size());
    for (const auto& b : net->named_buffers()) {
      const torch::Tensor t = b.value().contiguous();
      add(t.data_ptr(), static_cast<std::size_t>(t.numel()) * t.element_size());
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return std::string(hex);
  }();
  const std::string checkpoint = request.out + ".checkpoint";
  // Workers that read another log or config would exchange mismatched messages.
  check_same_on_every_rank(*communicator, fingerprint, "the config and training log");
  if (world > 1 && run.items >= (1 << 24))
    throw ConfigError("data-parallel evaluation gathers ranks as floats, exact below 16,777,216 items; this catalog "
                      "has " + std::to_string(run.items) + ": train it in one process");
  LoopState state;
  // With several processes each draws its own dropout masks and negatives, as
  // the rows of one batch would. Rank 0 keeps one process's stream (its
  // state is in the checkpoint; it draws the shuffles); the others reseed at
  // every checkpoint, so a resumed run draws what the uninterrupted one did.
  const auto reseed_rank_stream = [&] {
    if (rank > 0)
      torch::manual_seed(tc.seed * 1000003ULL + static_cast<std::uint64_t>(rank) * 7919ULL +
                         static_cast<std::uint64_t>(run.steps));
  };
  if (request.resume) {
    std::string bytes;  // rank 0 reads the checkpoint and sends it to the others
    if (run.primary) {
      std::ifstream in(checkpoint, std::ios::binary);
      if (in) bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    communicator->broadcast(bytes);
    load_checkpoint(bytes, checkpoint, fingerprint, *net, *optimizer, run, state, windows.samples(), steps_per_epoch,
                    total);
    if (progress)
      std::fprintf(stderr, "resumed from %s at step %lld\n", checkpoint.c_str(), static_cast<long long>(run.steps));
  }
  double loss_sum = 0;  // since the last validation, which a checkpoint follows: 0 on resume
  std::int64_t loss_count = 0;
  Progress bar("train", static_cast<std::uint64_t>(total), "steps", progress);
  auto clock = std::chrono::steady_clock::now();
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  std::string last_val;
  reseed_rank_stream();
  net->train();
  for (; !state.stop && run.steps < total; ++state.epoch, state.next_batch = 0) {
    if (state.next_batch == 0) {
      if (run.primary) state.order = torch::randperm(windows.samples(), torch::kInt64);
      else state.order = torch::zeros({windows.samples()}, torch::kInt64);
      if (world > 1) {
        std::vector<torch::Tensor> order{state.order};
        communicator->broadcast(order);  // every rank takes its share of the same global batches
      }
    }
    for (std::int64_t& b = state.next_batch; b < steps_per_epoch && run.steps < total;) {
      const torch::Tensor global_idx = state.order.slice(0, b * batch, std::min(windows.samples(), (b + 1) * batch));
      const double lr = learning_rate_at(tc, run.steps, total);
      for (auto& group : optimizer->param_groups())
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      // Several processes: a strided share of the global batch, its loss
      // weighted by the share's labelled positions over the global batch's,
      // so the processes' losses (and gradients) add up to the global batch's.
      const torch::Tensor idx = world > 1 ? global_idx.slice(0, rank, global_idx.size(0), world) : global_idx;
      const torch::Tensor batch_labels = labels.index_select(0, idx);
      torch::Tensor loss;
      double value = 0;
      optimizer->zero_grad();
      if (idx.size(0) > 0) {
        if (sampler) {
          const auto [candidates, shift] = sampler->draw(batch_labels);
          state.candidate_sum += static_cast<double>(candidates.numel());
          loss = net->loss(inputs.index_select(0, idx), batch_labels, candidates, shift);
        } else {
          loss = net->loss(inputs.index_select(0, idx), batch_labels);
        }
        if (world > 1) {
          const double mine = batch_labels.ne(0).sum().item<double>();
          const double all = labels.index_select(0, global_idx).ne(0).sum().item<double>();
          loss = loss * (mine / std::max(all, 1.0));
        }
        value = loss.item<double>();
      }
      if (world == 1 && !std::isfinite(value))
        throw TrainingError("the training loss is " + std::to_string(value) + " at step " + std::to_string(run.steps + 1) +
                            " (epoch " + std::to_string(state.epoch) +
                            "); lower train.learning_rate or set train.clip_grad_norm");
      if (loss.defined()) loss.backward();
      if (world > 1) {
        // Gradients summed over the processes in one message, with the loss
        // and one flag per parameter: a gradient any process has, all apply
        // (a process whose share of a small last batch is empty has none).
        std::vector<torch::Tensor> params, grads;
        for (auto& p : net->parameters())
          if (p.requires_grad()) params.push_back(p);
        torch::Tensor small = torch::zeros({static_cast<std::int64_t>(params.size()) + 1}, torch::kFloat32);
        float* sm = small.data_ptr<float>();
        for (std::size_t i = 0; i < params.size(); ++i) {
          const bool has = params[i].grad().defined();
          sm[i] = has ? 1.0f : 0.0f;
          grads.push_back(has ? params[i].mutable_grad() : torch::zeros_like(params[i]));
        }
        sm[params.size()] = static_cast<float>(value);
        grads.push_back(small);
        communicator->sum_dense(grads);
        for (std::size_t i = 0; i < params.size(); ++i)
          if (sm[i] > 0 && !params[i].grad().defined()) params[i].mutable_grad() = grads[i];
        value = sm[params.size()];
        if (!std::isfinite(value))
          throw TrainingError("the training loss is " + std::to_string(value) + " at step " +
                              std::to_string(run.steps + 1) + " (epoch " + std::to_string(state.epoch) +
                              "); lower train.learning_rate or set train.clip_grad_norm");
      }
      if (tc.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(net->parameters(), tc.clip_grad_norm);
      optimizer->step();
      ++run.steps;
      ++b;
      loss_sum += value;
      ++loss_count;
      const bool end_of_epoch = b == steps_per_epoch;
      const bool validate = run.steps == total ||
                            (tc.eval_every_steps > 0 ? run.steps % tc.eval_every_steps == 0 : end_of_epoch);
      if (validate) {
        run.train_seconds += seconds_since(clock);
        const auto val_clock = std::chrono::steady_clock::now();
        const NextItemRecord v = evaluate_next_item(*net, val_cases, max_len, sc.exclude == "history",
                                                    tc.eval_batch_size, "val", describe(config.data.train), communicator.get());
        run.validation_seconds += seconds_since(val_clock);
        ValidationPoint point;
        point.step = run.steps;
        point.epoch = state.epoch;
        point.train_loss = loss_sum / static_cast<double>(loss_count);
        point.learning_rate = lr;
        point.seconds = run.train_seconds;
        point.val = v.widths.back().metrics;
        loss_sum = 0;
        loss_count = 0;
        const double figure = metric_of(point.val, monitor);
        if (figure > state.best) {
          state.best = figure;
          run.best_step = run.steps;
          state.validations_without_gain = 0;
          state.best_weights.clear();
          for (const auto& p : net->parameters()) state.best_weights.push_back(p.detach().clone());
        } else if (++state.validations_without_gain >= tc.patience && tc.patience > 0) {
          run.early_stopped = true;
          state.stop = true;
        }
        char buf[160];
        std::snprintf(buf, sizeof buf, "loss %.4f, val %s %.4f (best %.4f at step %lld)", point.train_loss,
                      monitor.c_str(), figure, state.best, static_cast<long long>(run.best_step));
        last_val = buf;
        if (progress && !isatty(STDERR_FILENO)) std::fprintf(stderr, "step %lld: %s\n", static_cast<long long>(run.steps), buf);
        run.history.push_back(std::move(point));
        if (run.primary) {
          save_checkpoint(checkpoint, fingerprint, *net, *optimizer, run, state);
          if (request.after_checkpoint) request.after_checkpoint(run.history.back());
        }
        reseed_rank_stream();
        clock = std::chrono::steady_clock::now();
        if (state.stop) break;
      }
      bar.update(static_cast<std::uint64_t>(run.steps), last_val);
    }
  }
  bar.finish(last_val);
  if (sampler && run.steps > 0) run.mean_candidates = state.candidate_sum / static_cast<double>(run.steps);
  if (!state.best_weights.empty()) {
    torch::NoGradGuard no_grad;
    std::size_t i = 0;
    for (auto& p : net->parameters()) p.copy_(state.best_weights[i++]);
  }
  net->eval();
  for (std::int64_t w : sc.widths) {
    std::int64_t n = 0;
    for (const auto& p : model::extract_width(*net, w)->parameters()) n += p.numel();
    run.parameters_by_width.push_back(n);
  }
  run.splits.push_back(evaluate_next_item(*net, val_cases, max_len, sc.exclude == "history", tc.eval_batch_size, "val",
                                          describe(config.data.train), communicator.get()));
  run.splits.push_back(evaluate_next_item(*net, test_cases(split), max_len, sc.exclude == "history", tc.eval_batch_size,
                                          "test", describe(config.data.train), communicator.get()));
  if (!run.primary) return run;  // rank 0 writes the model
  // The whole run record, as for ranking models: `mtrank report M` reads it.
  nlohmann::json meta{{"widths", sc.widths}, {"block", sc.block}, {"items", run.items}, {"training", to_metrics_json(run)}};
  {
    // The model's version, as for ranking models: what it was trained from and
    // when. Served user states name it (serve/user_state.h).
    Config identity = config;
    identity.train.threads = 0;
    char hex[17], created[32];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(data::hash_string(to_toml(identity) + std::to_string(run.items), 7)));
    const std::time_t now = std::time(nullptr);
    std::strftime(created, sizeof created, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
    meta["model_version"] = std::string(hex) + "-" + created;
  }
  model::save_sequential_model_dir(request.out, config, log.items, *net, meta);
  // The finished model supersedes the checkpoint.
  std::error_code ec;
  std::filesystem::remove(checkpoint, ec);
  return run;
}

nlohmann::json exported_record(const nlohmann::json& record, const std::vector<std::int64_t>& widths,
                               std::int64_t parameters) {
  nlohmann::json out = record;
  const auto keep = [&](nlohmann::json& by_width) {
    if (!by_width.is_object()) return;
    nlohmann::json kept = nlohmann::json::object();
    for (std::int64_t w : widths)
      if (by_width.contains(std::to_string(w))) kept[std::to_string(w)] = by_width[std::to_string(w)];
    by_width = kept;
  };
  if (out.contains("widths")) keep(out["widths"]);
  if (out.contains("parameters_by_width")) keep(out["parameters_by_width"]);
  if (out.contains("splits") && out["splits"].is_object())
    for (auto& [name, split] : out["splits"].items())
      if (split.is_object() && split.contains("widths")) keep(split["widths"]);
  const std::string top = std::to_string(widths.back());
  if (out.contains("tasks") && out["tasks"].contains("next_item") && out["widths"].contains(top))
    for (const auto& [metric, v] : out["widths"][top].items()) out["tasks"]["next_item"][metric] = v;
  out["parameters"] = parameters;
  out.erase("history");  // the validation curve is the full width's
  out.erase("test");     // the full model's test metrics of every width (records of older mtrank versions)
  return out;
}

nlohmann::json to_metrics_json(const SequentialRunRecord& r) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json history = nlohmann::json::array();
  for (const ValidationPoint& p : r.history) {
    nlohmann::json val = nlohmann::json::object();
    for (const auto& [name, v] : p.val) val[name] = num(v);
    history.push_back({{"step", p.step}, {"epoch", p.epoch}, {"train_loss", num(p.train_loss)},
                       {"learning_rate", p.learning_rate}, {"seconds", p.seconds}, {"val", val}});
  }
  nlohmann::json splits = nlohmann::json::object();
  for (const NextItemRecord& s : r.splits) splits[s.name] = to_json(s);
  const NextItemRecord& test = r.splits.back();
  nlohmann::json full = {{"type", "next_item"}, {"count", test.users}};
  for (const auto& [name, v] : test.widths.back().metrics) full[name] = num(v);
  const SequentialConfig& sc = r.config.sequential;
  return {{"model", sc.block},
          {"kind", "sequential"},
          {"widths", to_json(test)["widths"]},
          {"tasks", {{"next_item", full}}},
          {"task_names", {"next_item"}},
          {"metrics_split", "test"},
          {"splits", splits},
          {"history", history},
          {"parameters", r.parameters},
          {"parameters_by_width",
           [&] {
             nlohmann::json by_width = nlohmann::json::object();
             for (std::size_t k = 0; k < r.parameters_by_width.size() && k < sc.widths.size(); ++k)
               by_width[std::to_string(sc.widths[k])] = r.parameters_by_width[k];
             return by_width;
           }()},
          {"threads", r.threads},
          {"world_size", r.world_size},
          {"seed", r.config.train.seed},
          {"users", r.users},
          {"items", r.items},
          {"events", r.events},
          {"train_samples", r.train_samples},
          {"steps", r.steps},
          {"best_step", r.best_step},
          {"early_stopped", r.early_stopped},
          {"resumed", r.resumed},
          {"monitor", r.config.train.monitor},
          {"read_seconds", r.read_seconds},
          {"train_seconds", r.train_seconds},
          {"validation_seconds", r.validation_seconds},
          {"steps_per_s", r.train_seconds > 0 ? r.steps / r.train_seconds : 0.0},
          {"softmax", sc.softmax},
          {"negatives", sc.softmax == "sampled" ? nlohmann::json(sc.negatives) : nlohmann::json(nullptr)},
          {"mean_candidates", sc.softmax == "sampled" ? nlohmann::json(r.mean_candidates) : nlohmann::json(nullptr)},
          {"item_features", {{"ids", sc.item_ids},
                             {"buckets", r.item_features.buckets},
                             {"terms", r.item_features.entries},
                             {"items_without_row", r.item_features.items_without_row},
                             {"items_without_terms", r.item_features.items_without_terms},
                             {"table_rows_unused", r.item_features.table_rows_unused},
                             {"vector_dims", r.item_features.vector_dims},
                             {"items_without_vector", r.item_features.items_without_vector},
                             {"vector_rows_unused", r.item_features.vector_rows_unused}}}};
}

}  // namespace mtrank::train
