// Retrieval with a sequential model (issue 12): served = offline (the
// retriever's exact top k is `mtrank recommend`'s, and a funnel that keeps
// every item gives the same), unknown history items skipped and counted,
// nothing known or a bad k refused, bad index settings named.
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "model/sequential.h"
#include "serve/request.h"
#include "serve/retriever.h"
#include "sequential_fixture.h"
#include "test_util.h"
#include "train/sequential_run.h"

using namespace mtrank;


TEST(Retriever, ServesWhatRecommendGivesOfflineAndSkipsUnknownItems) {
  mtrank::testing::TempDir dir;
  const std::string model_dir = mtrank::testing::trained_sequential_model(dir);
  model::LoadedSequentialModel offline = model::load_sequential_model_dir(model_dir);
  const std::vector<std::string> history = {"1003", "1024", "0999", "1019", "01007"};  // 0999 unknown; 01007 is 1007
  std::int64_t unknown = 0;
  const std::vector<std::int32_t> ids = serve::known_items(offline, history, &unknown);
  EXPECT_EQ(unknown, 1);
  ASSERT_EQ(ids.size(), 4u);
  const auto want = train::recommend(*offline.net, ids, 16, 0, 10);
  ASSERT_EQ(want.size(), 10u);
  serve::RetrieverOptions exact;  // the default
  serve::RetrieverOptions funnel;
  funnel.index = "funnel";  // from the smallest width to the full one, by default
  funnel.index_options.funnel_keep = {40};
  for (const serve::RetrieverOptions& options : {exact, funnel}) {
    const serve::Retriever retriever(model::load_sequential_model_dir(model_dir), options);
    SCOPED_TRACE(retriever.index().describe());
    const serve::Retrieved got = retriever.retrieve(history, 10);
    EXPECT_EQ(got.unknown_items, 1);
    ASSERT_EQ(got.hits.size(), 10u);
    for (std::size_t r = 0; r < 10; ++r) {
      EXPECT_EQ(got.hits[r].item, want[r].first) << "rank " << r;
      EXPECT_NEAR(got.hits[r].score, want[r].second, 1e-4);
      for (std::int32_t id : ids) EXPECT_NE(got.hits[r].item, id);  // the history is left out
    }
    EXPECT_EQ(retriever.item_name(got.hits[0].item), offline.items.external(want[0].first));
  }
  const serve::Retriever retriever(model::load_sequential_model_dir(model_dir), funnel);
  EXPECT_EQ(retriever.index().describe().rfind("funnel: exact width 4 keeps 40", 0), 0u) << retriever.index().describe();
  EXPECT_THROW(retriever.retrieve({"0999", "x"}, 10), serve::RequestError);  // nothing known
  EXPECT_THROW(retriever.retrieve({"1003"}, 0), serve::RequestError);
  // 36 items are left after a 4-item history: asking for 100 returns them all.
  EXPECT_EQ(retriever.retrieve(history, 100).hits.size(), 36u);
  // A moved retriever (a server swaps them on reload) still searches its own table.
  serve::Retriever original(model::load_sequential_model_dir(model_dir), funnel);
  const serve::Retrieved before = original.retrieve(history, 10);
  const serve::Retriever moved(std::move(original));
  const serve::Retrieved after = moved.retrieve(history, 10);
  ASSERT_EQ(after.hits.size(), before.hits.size());
  for (std::size_t r = 0; r < before.hits.size(); ++r) EXPECT_EQ(after.hits[r].item, before.hits[r].item);
  serve::RetrieverOptions bad = funnel;
  bad.index_options.funnel_widths = {4, 12};
  EXPECT_THROW(serve::Retriever(model::load_sequential_model_dir(model_dir), bad), ConfigError);
}
