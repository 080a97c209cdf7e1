#pragma once
// A semi-synthetic impression-log simulator with known truth (no torch), for
// measuring position-bias correction: logged clicks cannot tell whether
// debiasing worked, data whose true relevance is known can (reference.md
// section 5). From a ratings file it fits a matrix factorization, so every
// (user, item) pair has a true graded relevance (the rating where there is
// one, the factorization's prediction elsewhere); then it simulates sessions:
// a candidate list per user, ranked by a logging policy of chosen strength,
// shown at positions 1..K on a device, clicked through a click model with
// known examination probabilities, and for clicks the watch fraction, like
// and rating a user would give.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mtrank::data {

enum class ClickModel {
  kPositionBased,  // P(click) = theta_k * P(relevant), theta_k = (1/k)^(eta * device factor)
  kCascade,        // scan from the top, click with P(relevant), stop after the first click
  kTrustBias,      // P(click) = theta_k * (relevant ? 1 - (k+1)/100 : 0.65/k) (Agarwal et al. 2019)
  kAdditive,       // logit P(click) = logit P(relevant) + log theta_k: bias added to the logit
};
const char* to_string(ClickModel model);
ClickModel parse_click_model(const std::string& name);  // pbm | cascade | trust | additive

struct SimulateOptions {
  std::string ratings = "../shared/datasets/movielens-small.csv.gz";
  std::string out_dir;
  // Columns of the ratings file; title, year and genres may be "" (absent).
  std::string user_column = "userId", item_column = "movieId", rating_column = "rating";
  std::string title_column = "title", year_column = "year", genres_column = "genres";
  double max_rating = 5.0;  // grade = clamp(round(rating) - 1, 0, 4) for ratings on a 1..5 (or 0.5..5) scale

  std::int64_t sessions = 50000;
  int positions = 10;  // candidates per session, all shown, at positions 1..K
  // A candidate comes from the user's own rated items with this probability,
  // else from the whole catalog by popularity.
  double rated_share = 0.3;

  ClickModel click_model = ClickModel::kPositionBased;
  double eta = 1.0;      // examination theta_k = (1/k)^eta
  double epsilon = 0.1;  // P(relevant | grade y) = eps + (1 - eps) (2^y - 1) / (2^4 - 1)

  // Logging policy: ranks candidates by a score. "weak" / "medium" / "strong":
  // true relevance (the continuous rating) plus Gaussian noise of standard
  // deviation 2 / 1 / 0.25, fixed per (user, item) as a deployed model's
  // errors are (deterministic for a seed); "random": a uniform shuffle; "model": a
  // factorization fitted on `logger_share` of the ratings (a production-like
  // logger that knows little); "popularity": the items with the most ratings
  // first, the same order for every user (a logger that is not personalized,
  // so an item's logged position says how popular it is, not how relevant).
  std::string logger = "medium";
  double logger_share = 0.1;
  bool plackett_luce = false;  // sample the ranking (Plackett-Luce on exp(score)) instead of sorting
  double swap_share = 0.0;     // share of positions swapped with a random other position after ranking

  double val_users = 0.1, test_users = 0.1;  // shares of users held out (all their sessions)
  std::uint64_t seed = 1;
  int mf_dim = 16, mf_epochs = 40;
  bool quiet = false;
};

// Devices of a session, with how strongly each discounts lower positions:
// theta_k(device) = (1/k)^(eta * factor).
struct DeviceSpec {
  const char* name;
  double share;
  double examination_factor;
};
const std::array<DeviceSpec, 3>& simulated_devices();

// P(relevant | grade y) of the click models, y in 0..4.
double relevance_probability(int grade, double epsilon);
// Examination probability of position k (1-based) on a device, for the
// position-based, trust-bias and additive models.
double examination_probability(int position, double eta, double device_factor);

struct SimulateSummary {
  std::int64_t users = 0, items = 0, ratings = 0;
  std::array<std::int64_t, 3> impressions{};  // train, val, test
  std::array<std::int64_t, 3> clicks{};
  std::array<std::int64_t, 5> grade_counts{};  // over all impressions
  std::vector<double> click_rate_by_position;  // over all impressions
  double mf_train_rmse = 0;
};

// Writes DIR/{train,val,test}.csv (impression logs mtrank train reads as they
// are), DIR/{train,val,test}.truth.csv (row for row: true grade, P(relevant),
// P(examined), P(click)), DIR/examination.csv (theta by position and device),
// DIR/items.csv (the item catalog: one row per item of the logs' item
// columns, for `serve --catalog`), DIR/test.relevance.csv (the true grade of
// every test user and item) and DIR/simulation.json (the options and the summary). Deterministic for a
// seed. Throws DataError naming file, line and column for bad ratings.
SimulateSummary simulate_impressions(const SimulateOptions& options);

}  // namespace mtrank::data
