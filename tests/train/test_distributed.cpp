// Data-parallel training over torch.distributed's Gloo: the collectives give
// exact values, and N ranks train the model one process trains (replicas
// bitwise identical, within float rounding of the one-process run). The ranks
// are threads of this process, each with its own process group over loopback
// TCP: the same code path as worker processes, without process management
// (tests/cli/cli_test.sh runs the launcher and kills a worker).
#include <filesystem>
#include <functional>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "config/config.h"
#include "model/model.h"
#include "train/communicator.h"
#include "train/launcher.h"
#include "train/trainer.h"
#include "test_util.h"
#include "torch_test_util.h"

using namespace mtrank;
using namespace mtrank::testing;

namespace {

// Runs fn(communicator) on `ranks` threads, the ranks of one run; rethrows
// the first exception a rank threw.
void on_ranks(int ranks, const std::function<void(train::Communicator&)>& fn) {
  const int port = train::free_local_port();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        train::DistributedEnv env;
        env.rank = r;
        env.world_size = ranks;
        env.local_rank = r;
        env.local_world_size = ranks;
        env.master_port = port;
        env.timeout = std::chrono::seconds(60);
        std::unique_ptr<train::Communicator> c = train::make_communicator(env);
        fn(*c);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::vector<torch::Tensor> parameters_of(model::RankingModel& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net.parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

}  // namespace

TEST(Communicator, RegistryAndEnvironment) {
  EXPECT_EQ(train::make_communicator("local", {})->world_size(), 1);
  EXPECT_THROW(train::make_communicator("mpi", {}), std::invalid_argument);
  ::setenv("WORLD_SIZE", "2", 1);
  ::unsetenv("RANK");
  EXPECT_THROW(train::DistributedEnv::from_environment(), ConfigError);  // WORLD_SIZE without RANK
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(train::DistributedEnv::from_environment(), ConfigError);  // RANK beyond WORLD_SIZE
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "6000", 1);
  ::setenv("GLOO_SOCKET_IFNAME", "eth1", 1);
  const train::DistributedEnv env = train::DistributedEnv::from_environment();
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_EQ(env.local_world_size, 1);  // without LOCAL_WORLD_SIZE: one worker on this machine
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.master_port, 6000);
  EXPECT_EQ(env.socket_ifname, "eth1");
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_PORT", "GLOO_SOCKET_IFNAME"}) ::unsetenv(v);
  EXPECT_FALSE(train::DistributedEnv::from_environment().distributed());
}

TEST(Communicator, GlooCollectivesGiveExactValues) {
  on_ranks(2, [](train::Communicator& c) {
    const int r = c.rank();
    std::vector<double> values{r + 1.0, 10.0 * (r + 1)};
    c.sum(values);
    EXPECT_EQ(values, (std::vector<double>{3, 30}));

    std::vector<torch::Tensor> dense{torch::full({2, 2}, r + 1.0f), torch::tensor({1.0f, -2.0f * r})};
    c.sum_dense(dense);
    EXPECT_TRUE(torch::equal(dense[0], torch::full({2, 2}, 3.0f)));
    EXPECT_TRUE(torch::equal(dense[1], torch::tensor({2.0f, -2.0f})));

    // Rank 0 touched rows 1 and 4, rank 1 rows 4 and 7: the union, row 4 summed.
    torch::Tensor ids = r == 0 ? torch::tensor({1, 4}, torch::kInt64) : torch::tensor({4, 7}, torch::kInt64);
    torch::Tensor rows = r == 0 ? torch::tensor({{1.0f, 1.0f}, {2.0f, 2.0f}}) : torch::tensor({{3.0f, 3.0f}, {4.0f, 4.0f}});
    c.sum_rows(ids, rows, 10);
    EXPECT_TRUE(torch::equal(ids, torch::tensor({1, 4, 7}, torch::kInt64)));
    EXPECT_TRUE(torch::equal(rows, torch::tensor({{1.0f, 1.0f}, {5.0f, 5.0f}, {4.0f, 4.0f}})));
    // A rank whose share of a batch touched no row.
    ids = r == 0 ? torch::tensor({2}, torch::kInt64) : torch::zeros({0}, torch::kInt64);
    rows = r == 0 ? torch::tensor({{0.5f, 1.5f}}) : torch::zeros({0, 2});
    c.sum_rows(ids, rows, 10);
    EXPECT_TRUE(torch::equal(ids, torch::tensor({2}, torch::kInt64)));
    EXPECT_TRUE(torch::equal(rows, torch::tensor({{0.5f, 1.5f}})));

    // Personalized exchange: rank r sends d + 1 copies of 10r + d to rank d; rank 1 sends rank 0 nothing.
    std::vector<torch::Tensor> send;
    for (int d = 0; d < 2; ++d)
      send.push_back(r == 1 && d == 0 ? torch::zeros({0}, torch::kInt64)
                                      : torch::full({d + 1}, 10 * r + d, torch::kInt64));
    std::vector<torch::Tensor> got = c.all_to_all(send);
    ASSERT_EQ(got.size(), 2u);
    if (r == 0) {
      EXPECT_TRUE(torch::equal(got[0], torch::full({1}, 0, torch::kInt64)));
      EXPECT_EQ(got[1].numel(), 0);
    } else {
      EXPECT_TRUE(torch::equal(got[0], torch::full({2}, 1, torch::kInt64)));
      EXPECT_TRUE(torch::equal(got[1], torch::full({2}, 11, torch::kInt64)));
    }
    // Floats, the sizes known to the receiver (a reply): each rank returns what it got, times 0.5.
    std::vector<torch::Tensor> reply;
    std::vector<std::int64_t> counts;
    for (int s = 0; s < 2; ++s) {
      reply.push_back(got[static_cast<std::size_t>(s)].to(torch::kFloat32) * 0.5f);
      counts.push_back(send[static_cast<std::size_t>(s)].numel());
    }
    const std::vector<torch::Tensor> back = c.all_to_all(reply, &counts);
    for (int d = 0; d < 2; ++d)
      EXPECT_TRUE(torch::equal(back[static_cast<std::size_t>(d)], send[static_cast<std::size_t>(d)].to(torch::kFloat32) * 0.5f));

    const std::vector<float> all = c.gather_all(r == 0 ? std::vector<float>{1, 2, 3} : std::vector<float>{4});
    EXPECT_EQ(all, (std::vector<float>{1, 2, 3, 4}));

    std::string bytes = r == 0 ? std::string("rank 0's checkpoint\0bytes", 25) : std::string("other");
    c.broadcast(bytes);
    EXPECT_EQ(bytes, std::string("rank 0's checkpoint\0bytes", 25));
    std::string empty = r == 0 ? "" : "stale";
    c.broadcast(empty);
    EXPECT_EQ(empty, "");
    std::vector<torch::Tensor> weights{torch::full({3}, static_cast<float>(r) + 0.25f)};
    c.broadcast(weights);
    EXPECT_TRUE(torch::equal(weights[0], torch::full({3}, 0.25f)));
  });
}

namespace {

struct Case {
  std::string name;
  Config config;
};

Config distributed_config(const std::string& type, bool wide) {
  Config c;
  c.model = small_model(type);
  set_where_taken(c.model, "specific_experts", std::int64_t{2});
  set_where_taken(c.model, "shared_experts", std::int64_t{1});
  if (wide) c.model.set("wide", true);
  c.tasks.resize(2);
  c.tasks[0].name = "a";
  c.tasks[1].name = "b";
  c.train.epochs = 3;
  c.train.batch_size = 16;  // 2 ranks: 8 rows each
  c.train.patience = 0;
  return c;
}

// What one run leaves: the weights and each epoch's validation AUC of task a.
struct Outcome {
  std::vector<torch::Tensor> weights;
  std::vector<double> val_auc;
  double last_train_loss = 0;
};

Outcome outcome_of(model::RankingModel& net, const train::TrainReport& report) {
  Outcome o;
  o.weights = parameters_of(net);
  for (const auto& e : report.epochs) o.val_auc.push_back(e.val[0].auc);
  o.last_train_loss = report.epochs.back().train_loss;
  return o;
}

}  // namespace

class TwoRanks : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

// Two ranks with 8 rows each of every batch of 16 train the model one process
// trains with batches of 16: the loss divides by global counts, gradients are
// summed (dense in one message, embedding and wide rows sparsely), every rank
// applies the same update. 97 rows: the last batch is 1 row, so rank 1's
// share of it is empty (it still takes part in every exchange).
// The row gradients go both ways: in the dense message (small tables) and by sparse sum.
TEST_P(TwoRanks, TrainTheModelOneProcessTrains) {
  const auto [model, row_exchange] = GetParam();
  Config c = model == "mmoe_wide_ftrl" ? distributed_config("mmoe", true) : distributed_config("ple", false);
  if (model == "mmoe_wide_ftrl") {
    c.train.wide_optimizer = "ftrl";
    c.train.clip_grad_norm = 1.0;  // the clipping norm is the global one
  } else {
    c.train.loss_weighting = "uncertainty";  // each rank adds its share of s_k
  }
  at::set_num_threads(1);
  RandomBatch train_rows(97, 1), val_rows(60, 2);
  TempDir dir;

  torch::manual_seed(3);
  auto single = model::create_model(c.model, small_shape());
  train::TrainOptions so;
  const Outcome one = outcome_of(*single, train::Trainer(*single, c).run(train_rows.d, &val_rows.d, so));

  std::vector<std::shared_ptr<model::RankingModel>> nets;
  for (int r = 0; r < 2; ++r) {
    torch::manual_seed(r == 0 ? 3 : 99);  // rank 1 starts elsewhere: the trainer broadcasts rank 0's weights
    nets.push_back(model::create_model(c.model, small_shape()));
  }
  std::vector<Outcome> ranks(2);
  if (row_exchange == "row_sharded") c.train.table_sharding = "row";
  const std::int64_t table_rows = single->sparse_tables()[0].table.size(0);
  on_ranks(2, [&](train::Communicator& comm) {
    const int r = comm.rank();
    train::TrainOptions o;
    o.checkpoint_path = dir.file("rank" + std::to_string(r) + ".checkpoint");
    o.dense_row_exchange_floats = row_exchange == "dense_rows" ? 1 << 18 : 0;
    if (row_exchange == "row_sharded") {
      // While training, each rank holds only its rows of every table.
      model::RankingModel& net = *nets[static_cast<std::size_t>(r)];
      o.on_epoch_end = [&net, r, table_rows](const train::EpochLog&) {
        for (const model::SparseTable& t : net.sparse_tables())
          EXPECT_EQ(t.table.size(0), (table_rows - r + 1) / 2) << t.name;
        return true;
      };
    }
    train::Trainer t(*nets[static_cast<std::size_t>(r)], c, &comm);
    ranks[static_cast<std::size_t>(r)] = outcome_of(*nets[static_cast<std::size_t>(r)], t.run(train_rows.d, &val_rows.d, o));
  });
  EXPECT_TRUE(std::filesystem::exists(dir.file("rank0.checkpoint")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("rank1.checkpoint")));  // rank 0 alone writes the checkpoint
  // ... and with sharded tables each other rank its rows beside its path.
  EXPECT_EQ(std::filesystem::exists(dir.file("rank1.checkpoint.rank1")), row_exchange == "row_sharded");
  // Replicas bitwise identical; validation metrics the same on both ranks.
  // Sharded: rank 1 keeps its rows of each table (ids 1, 3, 5, ...): they are
  // the one-process model's rows there, and its dense weights are rank 0's;
  // rank 0 has the whole model. Its model refuses to score with global ids.
  if (row_exchange == "row_sharded") {
    std::size_t tables = 0;
    for (std::size_t i = 0; i < ranks[1].weights.size(); ++i) {
      if (ranks[1].weights[i].size(0) == ranks[0].weights[i].size(0)) continue;
      ++tables;
      const torch::Tensor odd_rows = one.weights[i].slice(0, 1, c10::nullopt, 2);
      EXPECT_LT((odd_rows - ranks[1].weights[i]).abs().max().item<double>(), 1e-6);
      ranks[1].weights[i] = ranks[0].weights[i];  // compared above
    }
    EXPECT_EQ(tables, model == "mmoe_wide_ftrl" ? 2u : 1u);  // the embeddings (and the wide weights)
    EXPECT_THROW(train::predict(*nets[1], c, val_rows.d), std::logic_error);
  }
  EXPECT_EQ(max_difference(ranks[0].weights, ranks[1].weights), 0.0);
  EXPECT_EQ(ranks[0].val_auc, ranks[1].val_auc);
  EXPECT_EQ(ranks[0].last_train_loss, ranks[1].last_train_loss);
  // Against one process: float rounding only (sums in another order).
  const double diff = max_difference(one.weights, ranks[0].weights);
  EXPECT_LT(diff, 1e-6) << model << " " << row_exchange;  // measured: 3e-8
  EXPECT_GT(max_difference(one.weights, parameters_of(*model::create_model(c.model, small_shape()))), 1e-2);  // it trained
  ASSERT_EQ(one.val_auc.size(), ranks[0].val_auc.size());
  for (std::size_t e = 0; e < one.val_auc.size(); ++e) EXPECT_NEAR(one.val_auc[e], ranks[0].val_auc[e], 1e-4) << e;
  EXPECT_NEAR(one.last_train_loss, ranks[0].last_train_loss, 1e-5);
  std::printf("%s, %s: largest weight difference, 2 ranks against 1 process: %.3g\n", model.c_str(),
              row_exchange.c_str(), diff);
}

INSTANTIATE_TEST_SUITE_P(Models, TwoRanks,
                         ::testing::Combine(::testing::Values("mmoe_wide_ftrl", "ple"),
                                            ::testing::Values("dense_rows", "sparse_rows", "row_sharded")));

class TwoRanksResume : public ::testing::TestWithParam<std::string> {};

// A sharded run's checkpoint holds the whole tables, so it resumes exactly too.
TEST_P(TwoRanksResume, FromRankZerosCheckpointEndsAsTheUninterruptedRun) {
  Config c = distributed_config("mmoe", true);
  c.train.wide_optimizer = "ftrl";
  c.train.table_sharding = GetParam();
  at::set_num_threads(1);
  RandomBatch train_rows(64, 4), val_rows(40, 5);
  TempDir dir;
  auto run = [&](bool stop_after_first, bool resume) {
    std::vector<std::vector<torch::Tensor>> weights(2);
    std::vector<std::shared_ptr<model::RankingModel>> nets;
    for (int r = 0; r < 2; ++r) {
      torch::manual_seed(7);
      nets.push_back(model::create_model(c.model, small_shape()));
    }
    on_ranks(2, [&](train::Communicator& comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      train::TrainOptions o;
      // Rank 1 is given a path where nothing exists: rank 0 sends it the checkpoint.
      o.checkpoint_path = r == 0 ? dir.file("run.checkpoint") : dir.file("absent.checkpoint");
      o.resume = resume;
      if (stop_after_first) o.on_epoch_end = [](const train::EpochLog&) { return false; };
      train::Trainer t(*nets[r], c, &comm);
      t.run(train_rows.d, &val_rows.d, o);
      weights[r] = parameters_of(*nets[r]);
    });
    if (GetParam() == "replicated") {
      EXPECT_EQ(max_difference(weights[0], weights[1]), 0.0);
    }
    return weights;  // sharded: rank 1 holds its rows of the tables
  };
  const auto uninterrupted = run(false, false);
  run(true, false);  // stops after epoch 1, its checkpoint on rank 0's disk
  const auto resumed = run(false, true);
  for (std::size_t r = 0; r < 2; ++r) EXPECT_EQ(max_difference(uninterrupted[r], resumed[r]), 0.0) << r;
  if (GetParam() == "row") {
    // Rank 1 resumes from its own rows' file: without it every rank stops with an error.
    run(true, false);
    ASSERT_TRUE(std::filesystem::remove(dir.file("absent.checkpoint.rank1")));
    EXPECT_THROW(run(false, true), ModelError);
  }
  std::filesystem::remove(dir.file("run.checkpoint"));
  EXPECT_THROW(run(false, true), ModelError);  // no checkpoint: every rank stops with the same error
}

INSTANTIATE_TEST_SUITE_P(Tables, TwoRanksResume, ::testing::Values("replicated", "row"));
