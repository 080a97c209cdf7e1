#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "data/record_reader.h"
#include "data/simulate.h"
#include "test_util.h"

namespace {

using mtrank::data::ClickModel;
using mtrank::data::SimulateOptions;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// 30 users x 40 items, each user rating 12 items (a fixed pattern), with titles, years and genres.
std::string ratings_csv() {
  std::string out = "movieId,title,year,genres,userId,rating,timestamp\n";
  for (int u = 0; u < 30; ++u)
    for (int k = 0; k < 12; ++k) {
      const int i = (u * 7 + k * 3) % 40;
      const double rating = 0.5 + ((u + 2 * i) % 10) * 0.5;
      out += std::to_string(i) + ",\"Movie, " + std::to_string(i) + " (Part " + std::to_string(i % 3) + ")\"," +
             std::to_string(1990 + i % 20) + ",Drama|Genre" + std::to_string(i % 4) + "," + std::to_string(u) + "," +
             std::to_string(rating) + ",0\n";
    }
  return out;
}

struct Sim {
  mtrank::testing::TempDir dir;
  SimulateOptions options;
  Sim() {
    options.ratings = dir.write("ratings.csv", ratings_csv());
    options.out_dir = dir.file("out");
    options.sessions = 2000;
    options.positions = 5;
    options.quiet = true;
    options.mf_epochs = 10;
  }
  std::vector<std::vector<std::string>> rows(const std::string& name) const {
    mtrank::data::RecordReader reader(dir.file("out/" + name));
    std::vector<std::vector<std::string>> out;
    std::vector<std::string_view> f;
    while (reader.next(f)) out.emplace_back(f.begin(), f.end());
    return out;
  }
};

TEST(Simulate, ClickArithmeticOnHandCheckedValues) {
  EXPECT_DOUBLE_EQ(mtrank::data::relevance_probability(0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(mtrank::data::relevance_probability(2, 0.1), 0.1 + 0.9 * 3.0 / 15.0);  // 0.28
  EXPECT_DOUBLE_EQ(mtrank::data::relevance_probability(4, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(mtrank::data::examination_probability(1, 1.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(mtrank::data::examination_probability(2, 1.0, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(mtrank::data::examination_probability(4, 2.0, 1.0), 1.0 / 16);
  EXPECT_DOUBLE_EQ(mtrank::data::examination_probability(4, 1.0, 0.5), 0.5);
}

TEST(Simulate, PositionBasedClicksFollowTheTruthFile) {
  Sim sim;
  const auto summary = mtrank::data::simulate_impressions(sim.options);
  EXPECT_EQ(summary.users, 30);
  EXPECT_EQ(summary.items, 40);
  EXPECT_EQ(summary.ratings, 360);
  const auto log = sim.rows("train.csv"), truth = sim.rows("train.truth.csv");
  ASSERT_EQ(log.size(), truth.size());
  ASSERT_EQ(static_cast<std::int64_t>(log.size()), summary.impressions[0]);
  const auto& devices = mtrank::data::simulated_devices();
  std::map<int, double> expected, clicked, shown;
  for (std::size_t r = 0; r < log.size(); ++r) {
    const int position = std::stoi(log[r][5]);
    ASSERT_EQ(log[r][0], truth[r][0]);  // same session, row for row
    ASSERT_EQ(std::stoi(truth[r][1]), position);
    const int grade = std::stoi(truth[r][2]);
    double factor = 0;
    for (const auto& d : devices)
      if (log[r][3] == d.name) factor = d.examination_factor;
    ASSERT_GT(factor, 0) << log[r][3];
    const double p_rel = std::stod(truth[r][4]), p_exam = std::stod(truth[r][5]), p_click = std::stod(truth[r][6]);
    EXPECT_NEAR(p_rel, mtrank::data::relevance_probability(grade, 0.1), 1e-5);
    EXPECT_NEAR(p_exam, mtrank::data::examination_probability(position, 1.0, factor), 1e-5);
    EXPECT_NEAR(p_click, p_exam * p_rel, 1e-5);
    // Labels of the later tasks exist exactly on clicks.
    const bool click = log[r][9] == "1";
    EXPECT_EQ(!log[r][10].empty(), click);
    EXPECT_EQ(!log[r][11].empty(), click);
    EXPECT_EQ(!log[r][12].empty(), click);
    expected[position] += p_click;
    clicked[position] += click;
    shown[position] += 1;
  }
  // The empirical click rate per position is within 4 standard errors of the truth (seeded: not flaky).
  for (const auto& [position, n] : shown) {
    const double p = expected[position] / n;
    EXPECT_NEAR(clicked[position] / n, p, 4 * std::sqrt(p * (1 - p) / n) + 1e-9) << "position " << position;
  }
  EXPECT_GT(clicked[1] / shown[1], 1.5 * clicked[5] / shown[5]);  // the bias is there
  // Titles become lower-case word bags, quoted commas survive.
  EXPECT_NE(read(sim.dir.file("out/train.csv")).find(",movie|"), std::string::npos);
}

TEST(Simulate, SameSeedSameFilesAndUsersStayInTheirSplit) {
  Sim a, b;
  mtrank::data::simulate_impressions(a.options);
  mtrank::data::simulate_impressions(b.options);
  for (const char* f : {"train.csv", "val.csv", "test.csv", "train.truth.csv", "examination.csv"})
    EXPECT_EQ(read(a.dir.file(std::string("out/") + f)), read(b.dir.file(std::string("out/") + f))) << f;
  b.options.seed = 2;
  mtrank::data::simulate_impressions(b.options);
  EXPECT_NE(read(a.dir.file("out/train.csv")), read(b.dir.file("out/train.csv")));
  std::set<std::string> train_users, test_users;
  for (const auto& r : a.rows("train.csv")) train_users.insert(r[1]);
  for (const auto& r : a.rows("test.csv")) test_users.insert(r[1]);
  EXPECT_FALSE(test_users.empty());
  for (const std::string& u : test_users) EXPECT_EQ(train_users.count(u), 0u) << u;
}

TEST(Simulate, CascadeClicksAtMostOncePerSession) {
  Sim sim;
  sim.options.click_model = ClickModel::kCascade;
  sim.options.logger = "random";
  mtrank::data::simulate_impressions(sim.options);
  std::map<std::string, int> clicks;
  const auto log = sim.rows("train.csv"), truth = sim.rows("train.truth.csv");
  std::map<std::string, bool> clicked_before;
  for (std::size_t r = 0; r < log.size(); ++r) {
    // Examined until the first click, never after.
    EXPECT_EQ(std::stod(truth[r][5]), clicked_before[log[r][0]] ? 0.0 : 1.0);
    if (log[r][9] == "1") clicked_before[log[r][0]] = true;
    clicks[log[r][0]] += log[r][9] == "1";
  }
  for (const auto& [session, n] : clicks) EXPECT_LE(n, 1) << session;
}

TEST(Simulate, StrongLoggerPutsBetterItemsHigher) {
  Sim sim;
  sim.options.logger = "strong";
  mtrank::data::simulate_impressions(sim.options);
  const auto truth = sim.rows("train.truth.csv");
  double top = 0, bottom = 0, n_top = 0, n_bottom = 0;
  for (const auto& r : truth) {
    const int position = std::stoi(r[1]);
    if (position == 1) top += std::stod(r[3]), ++n_top;
    if (position == 5) bottom += std::stod(r[3]), ++n_bottom;
  }
  EXPECT_GT(top / n_top, bottom / n_bottom + 0.3);
}

TEST(Simulate, PopularityLoggerPutsTheMostRatedItemsFirst) {
  Sim sim;
  // Item i is rated by the users u with u % 20 >= i: item 0 by all 40, item 19 by 2.
  std::string ratings = "userId,movieId,rating\n";
  for (int u = 0; u < 40; ++u)
    for (int i = 0; i <= u % 20; ++i)
      ratings += std::to_string(u) + "," + std::to_string(i) + "," + std::to_string(1 + (u + i) % 5) + "\n";
  sim.options.ratings = sim.dir.write("popular.csv", ratings);
  sim.options.logger = "popularity";
  mtrank::data::simulate_impressions(sim.options);
  // Count each item's ratings in the input, then check every logged list is in
  // non-increasing order of that count.
  std::map<std::string, int> count;
  mtrank::data::RecordReader reader(sim.options.ratings);
  std::vector<std::string_view> f;
  while (reader.next(f)) ++count[std::string(f[1])];
  const auto log = sim.rows("train.csv");
  const auto truth = sim.rows("train.truth.csv");
  ASSERT_EQ(log.size(), truth.size());
  int ordered = 0, lists = 0;
  for (std::size_t i = 1; i < log.size(); ++i) {
    if (truth[i][0] != truth[i - 1][0]) continue;  // a new session
    EXPECT_GE(count[log[i - 1][2]], count[log[i][2]]) << "row " << i;
    ordered += count[log[i - 1][2]] > count[log[i][2]];
    ++lists;
  }
  EXPECT_GT(lists, 100);
  EXPECT_GT(ordered, 0);
}

TEST(Simulate, BadRatingsAreNamedByFileLineAndColumn) {
  Sim sim;
  sim.options.ratings = sim.dir.write("bad.csv", "userId,movieId,rating\n1,2,4\n1,3,abc\n");
  try {
    mtrank::data::simulate_impressions(sim.options);
    FAIL() << "no error";
  } catch (const mtrank::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv:3:3: column 'rating': 'abc' is not a rating"), std::string::npos)
        << e.what();
  }
  sim.options.ratings = sim.dir.write("cols.csv", "user,movieId,stars\n1,2,4\n");
  try {
    mtrank::data::simulate_impressions(sim.options);
    FAIL() << "no error";
  } catch (const mtrank::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cols.csv: no column 'userId' (its columns: user, movieId, stars); name the "
                                         "user column with --user-column"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(sim.dir.file("out/train.csv")));  // nothing half-written
  sim.options.ratings = sim.dir.write("empty.csv", "userId,movieId,rating\n");
  EXPECT_THROW(mtrank::data::simulate_impressions(sim.options), mtrank::DataError);
  sim.options.ratings = sim.dir.write("ok.csv", "userId,movieId,rating\n1,2,4\n");
  sim.options.logger = "psychic";
  EXPECT_THROW(mtrank::data::simulate_impressions(sim.options), mtrank::ConfigError);
  sim.options.logger = "medium";
  sim.options.mf_dim = -1;  // found in review: a huge allocation instead of an error naming the flag
  EXPECT_THROW(mtrank::data::simulate_impressions(sim.options), mtrank::ConfigError);
  sim.options.mf_dim = 16;
  sim.options.max_rating = 0;
  EXPECT_THROW(mtrank::data::simulate_impressions(sim.options), mtrank::ConfigError);
}

}  // namespace
