#include "data/simulate.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/progress.h"
#include "data/record_reader.h"

namespace mtrank::data {

const char* to_string(ClickModel model) {
  switch (model) {
    case ClickModel::kPositionBased: return "pbm";
    case ClickModel::kCascade: return "cascade";
    case ClickModel::kTrustBias: return "trust";
    case ClickModel::kAdditive: return "additive";
  }
  return "?";
}

ClickModel parse_click_model(const std::string& name) {
  for (ClickModel m : {ClickModel::kPositionBased, ClickModel::kCascade, ClickModel::kTrustBias, ClickModel::kAdditive})
    if (name == to_string(m)) return m;
  throw ConfigError("--click-model: '" + name + "' is not one of pbm, cascade, trust, additive");
}

const std::array<DeviceSpec, 3>& simulated_devices() {
  // Phones show fewer items per screen, so lower positions are seen less; a TV
  // shows a row the user scans whole.
  static const std::array<DeviceSpec, 3> devices{{{"mobile", 0.5, 1.25}, {"desktop", 0.35, 1.0}, {"tv", 0.15, 0.75}}};
  return devices;
}

double relevance_probability(int grade, double epsilon) {
  return epsilon + (1 - epsilon) * (std::exp2(grade) - 1) / (std::exp2(4) - 1);
}

double examination_probability(int position, double eta, double device_factor) {
  return std::pow(1.0 / position, eta * device_factor);
}

namespace {

struct Item {
  std::string id, title_words, genres;
  std::string year;  // "" when unknown
  std::int64_t ratings = 0;
};

struct Ratings {
  std::vector<std::string> users;  // dense index -> original id
  std::vector<Item> items;
  struct Entry {
    std::int32_t user, item;
    float rating;
  };
  std::vector<Entry> entries;
  std::vector<std::unordered_map<std::int32_t, float>> by_user;  // user -> item -> rating
};

// "Toy Story (1995)" -> "toy|story|1995": lower-case words for a multi-hot column.
std::string title_words(std::string_view title) {
  std::string out, word;
  std::vector<std::string> seen;
  auto flush = [&] {
    if (!word.empty() && std::find(seen.begin(), seen.end(), word) == seen.end()) {
      out += (out.empty() ? "" : "|") + word;
      seen.push_back(word);
    }
    word.clear();
  };
  for (char c : title) {
    if (std::isalnum(static_cast<unsigned char>(c))) word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else flush();
  }
  flush();
  return out;
}

std::size_t column_of(const RecordReader& reader, const std::string& name, const char* flag, bool required) {
  const auto& h = reader.header();
  for (std::size_t i = 0; i < h.size(); ++i)
    if (h[i] == name) return i;
  if (!required) return SIZE_MAX;
  std::string cols;
  for (const std::string& c : h) cols += (cols.empty() ? "" : ", ") + c;
  throw DataError(reader.path() + ": no column '" + name + "' (its columns: " + cols + "); name the " + flag +
                  " column with --" + flag + "-column");
}

Ratings read_ratings(const SimulateOptions& o) {
  RecordReader reader(o.ratings);
  const std::size_t cu = column_of(reader, o.user_column, "user", true);
  const std::size_t ci = column_of(reader, o.item_column, "item", true);
  const std::size_t cr = column_of(reader, o.rating_column, "rating", true);
  const std::size_t ct = o.title_column.empty() ? SIZE_MAX : column_of(reader, o.title_column, "title", false);
  const std::size_t cy = o.year_column.empty() ? SIZE_MAX : column_of(reader, o.year_column, "year", false);
  const std::size_t cg = o.genres_column.empty() ? SIZE_MAX : column_of(reader, o.genres_column, "genres", false);
  const std::size_t needed = std::max({cu, ci, cr}) + 1;
  Ratings r;
  std::unordered_map<std::string, std::int32_t> user_index, item_index;
  std::vector<std::string_view> f;
  while (reader.next(f)) {
    auto where = [&](std::size_t col) {
      return reader.path() + ":" + std::to_string(reader.line()) + ":" + std::to_string(col + 1);
    };
    if (f.size() < needed)
      throw DataError(where(f.size()) + ": the row has " + std::to_string(f.size()) + " fields, the header " +
                      std::to_string(reader.header().size()));
    float rating = 0;
    const std::string_view rs = f[cr];
    auto [end, ec] = std::from_chars(rs.data(), rs.data() + rs.size(), rating);
    if (ec != std::errc() || end != rs.data() + rs.size() || !std::isfinite(rating) || rating < 0 ||
        rating > o.max_rating)
      throw DataError(where(cr) + ": column '" + o.rating_column + "': '" + std::string(rs) +
                      "' is not a rating (a number from 0 to " + std::to_string(o.max_rating) + ")");
    if (f[cu].empty()) throw DataError(where(cu) + ": column '" + o.user_column + "' is empty");
    if (f[ci].empty()) throw DataError(where(ci) + ": column '" + o.item_column + "' is empty");
    auto [uit, new_user] = user_index.emplace(std::string(f[cu]), static_cast<std::int32_t>(r.users.size()));
    if (new_user) {
      r.users.emplace_back(f[cu]);
      r.by_user.emplace_back();
    }
    auto [iit, new_item] = item_index.emplace(std::string(f[ci]), static_cast<std::int32_t>(r.items.size()));
    if (new_item) {
      Item item;
      item.id = std::string(f[ci]);
      if (ct < f.size()) item.title_words = title_words(f[ct]);
      if (cg < f.size()) item.genres = std::string(f[cg]);
      if (cy < f.size()) {
        double y = 0;
        auto [ye, yec] = std::from_chars(f[cy].data(), f[cy].data() + f[cy].size(), y);
        if (yec == std::errc() && ye == f[cy].data() + f[cy].size()) item.year = std::string(f[cy]);  // else unknown
      }
      r.items.push_back(std::move(item));
    }
    const std::int32_t u = uit->second, i = iit->second;
    // A repeated (user, item) keeps the last rating, as a later rating replaces an earlier one.
    if (r.by_user[u].count(i) == 0) ++r.items[i].ratings;
    r.by_user[u][i] = rating;
  }
  if (r.users.empty()) throw DataError(o.ratings + ": no ratings");
  for (std::size_t u = 0; u < r.by_user.size(); ++u)
    for (const auto& [i, rating] : r.by_user[u]) r.entries.push_back({static_cast<std::int32_t>(u), i, rating});
  // by_user is unordered: sort so the factorization's input order, and so the result, is deterministic.
  std::sort(r.entries.begin(), r.entries.end(),
            [](const Ratings::Entry& a, const Ratings::Entry& b) { return a.user != b.user ? a.user < b.user : a.item < b.item; });
  return r;
}

// Biased matrix factorization r = mu + b_u + b_i + p_u . q_i, fitted by SGD.
// Hand-written: a hundred thousand ratings take well under a second, and the
// data layer stays free of torch.
struct Factorization {
  int dim = 0;
  float mu = 0;
  std::vector<float> bu, bi, p, q;

  float predict(std::int32_t u, std::int32_t i) const {
    float s = mu + bu[u] + bi[i];
    const float* pu = &p[static_cast<std::size_t>(u) * dim];
    const float* qi = &q[static_cast<std::size_t>(i) * dim];
    for (int k = 0; k < dim; ++k) s += pu[k] * qi[k];
    return s;
  }
};

Factorization fit_factorization(const std::vector<Ratings::Entry>& entries, std::size_t users, std::size_t items,
                                int dim, int epochs, std::uint64_t seed, double* train_rmse) {
  Factorization f;
  f.dim = dim;
  double sum = 0;
  for (const auto& e : entries) sum += e.rating;
  f.mu = entries.empty() ? 0.f : static_cast<float>(sum / static_cast<double>(entries.size()));
  f.bu.assign(users, 0);
  f.bi.assign(items, 0);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> init(0, 0.1f);
  f.p.resize(users * dim);
  f.q.resize(items * dim);
  for (float& x : f.p) x = init(rng);
  for (float& x : f.q) x = init(rng);
  std::vector<std::size_t> order(entries.size());
  std::iota(order.begin(), order.end(), 0);
  const float lr = 0.01f, reg = 0.05f;
  double sq = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    sq = 0;
    for (std::size_t idx : order) {
      const auto& e = entries[idx];
      const float err = e.rating - f.predict(e.user, e.item);
      sq += static_cast<double>(err) * err;
      f.bu[e.user] += lr * (err - reg * f.bu[e.user]);
      f.bi[e.item] += lr * (err - reg * f.bi[e.item]);
      float* pu = &f.p[static_cast<std::size_t>(e.user) * dim];
      float* qi = &f.q[static_cast<std::size_t>(e.item) * dim];
      for (int k = 0; k < dim; ++k) {
        const float a = pu[k], b = qi[k];
        pu[k] += lr * (err * b - reg * a);
        qi[k] += lr * (err * a - reg * b);
      }
    }
  }
  if (train_rmse) *train_rmse = entries.empty() ? 0 : std::sqrt(sq / static_cast<double>(entries.size()));
  return f;
}

int grade_of(double rating, double max_rating) {
  // Ratings on a 1..max scale become grades 0..4 (reference.md section 5: rating - 1).
  const double scaled = rating * 5.0 / max_rating;
  return static_cast<int>(std::clamp(std::lround(scaled) - 1L, 0L, 4L));
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double logit(double p) { return std::log(p / (1 - p)); }

// SplitMix64's finalizer: a well-mixed 64-bit value from a structured one.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Per-session random stream: sessions do not depend on each other's draws.
std::mt19937_64 session_rng(std::uint64_t seed, std::uint64_t session) {
  return std::mt19937_64(mix64(seed * 0x9E3779B97F4A7C15ULL + session + 0x632BE59BD9B4E019ULL));
}

// A standard normal draw fixed per (user, item): the noisy loggers err the
// same way every time they rank a pair, as a deployed model does. Noise drawn
// afresh per session would average out over sessions, and then clicks carry
// no systematic position confound to correct.
double pair_noise(std::uint64_t seed, std::int32_t user, std::int32_t item) {
  const std::uint64_t h = mix64(seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<std::uint64_t>(user) << 32 | static_cast<std::uint32_t>(item)));
  const double u1 = (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;
  const double u2 = (static_cast<double>(mix64(h + 1) >> 11) + 0.5) / 9007199254740992.0;
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);  // Box-Muller
}

std::string format_fraction(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

SimulateSummary simulate_impressions(const SimulateOptions& o) {
  if (o.positions < 1 || o.positions > 100) throw ConfigError("--positions must be from 1 to 100");
  if (o.sessions < 1) throw ConfigError("--sessions must be at least 1");
  if (o.mf_dim < 1 || o.mf_dim > 1024 || o.mf_epochs < 0)
    throw ConfigError("--mf-dim must be from 1 to 1024 and --mf-epochs at least 0");
  if (!(o.max_rating > 0) || !std::isfinite(o.max_rating)) throw ConfigError("--max-rating must be a positive number");
  if (!(o.eta >= 0) || !(o.epsilon >= 0 && o.epsilon < 1)) throw ConfigError("--eta must be >= 0, --epsilon in [0, 1)");
  if (!(o.rated_share >= 0 && o.rated_share <= 1) || !(o.swap_share >= 0 && o.swap_share <= 1))
    throw ConfigError("--rated-share and --swap-share must be in [0, 1]");
  if (!(o.val_users >= 0 && o.test_users >= 0 && o.val_users + o.test_users < 1))
    throw ConfigError("--val-users and --test-users must be >= 0 and leave users for training");
  double logger_noise = 0;
  if (o.logger == "weak") logger_noise = 2.0;
  else if (o.logger == "medium") logger_noise = 1.0;
  else if (o.logger == "strong") logger_noise = 0.25;
  else if (o.logger != "random" && o.logger != "model" && o.logger != "popularity")
    throw ConfigError("--logger: '" + o.logger + "' is not one of weak, medium, strong, random, model, popularity");
  if (o.logger == "model" && !(o.logger_share > 0 && o.logger_share <= 1))
    throw ConfigError("--logger-share must be in (0, 1]");
  if (o.out_dir.empty()) throw ConfigError("--out: name the output folder");
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw ConfigError("--out " + o.out_dir + ": cannot create the folder: " + ec.message());
  check_output_file((std::filesystem::path(o.out_dir) / "train.csv").string(), "--out");

  const Ratings r = read_ratings(o);
  SimulateSummary summary;
  summary.users = static_cast<std::int64_t>(r.users.size());
  summary.items = static_cast<std::int64_t>(r.items.size());
  summary.ratings = static_cast<std::int64_t>(r.entries.size());
  const Factorization truth_mf =
      fit_factorization(r.entries, r.users.size(), r.items.size(), o.mf_dim, o.mf_epochs, o.seed, &summary.mf_train_rmse);
  Factorization logger_mf;
  if (o.logger == "model") {
    std::vector<Ratings::Entry> share;
    std::mt19937_64 rng(o.seed ^ 0x5eedULL);
    std::uniform_real_distribution<double> u01(0, 1);
    for (const auto& e : r.entries)
      if (u01(rng) < o.logger_share) share.push_back(e);
    logger_mf = fit_factorization(share, r.users.size(), r.items.size(), o.mf_dim, o.mf_epochs, o.seed + 1, nullptr);
  }
  // The continuous true rating of a pair: the user's rating where there is one.
  auto true_rating = [&](std::int32_t u, std::int32_t i) {
    auto it = r.by_user[u].find(i);
    const double v = it != r.by_user[u].end() ? it->second : truth_mf.predict(u, i);
    return std::clamp(v, 0.0, o.max_rating);
  };

  // Which split a user is in: a seeded shuffle of the users.
  std::vector<int> split(r.users.size(), 0);
  {
    std::vector<std::size_t> order(r.users.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(o.seed ^ 0x5917ULL);
    std::shuffle(order.begin(), order.end(), rng);
    const auto n_val = static_cast<std::size_t>(std::llround(o.val_users * static_cast<double>(order.size())));
    const auto n_test = static_cast<std::size_t>(std::llround(o.test_users * static_cast<double>(order.size())));
    for (std::size_t k = 0; k < order.size(); ++k) split[order[k]] = k < n_test ? 2 : k < n_test + n_val ? 1 : 0;
  }
  std::vector<std::vector<std::int32_t>> rated_items(r.users.size());
  for (const auto& e : r.entries) rated_items[e.user].push_back(e.item);
  std::vector<double> popularity(r.items.size());
  for (std::size_t i = 0; i < r.items.size(); ++i) popularity[i] = static_cast<double>(r.items[i].ratings);
  std::discrete_distribution<std::int32_t> by_popularity(popularity.begin(), popularity.end());
  const auto& devices = simulated_devices();
  std::discrete_distribution<int> by_device({devices[0].share, devices[1].share, devices[2].share});

  const char* names[3] = {"train", "val", "test"};
  std::vector<std::unique_ptr<AtomicFile>> logs, truths;
  for (const char* n : names) {
    logs.push_back(std::make_unique<AtomicFile>((std::filesystem::path(o.out_dir) / (std::string(n) + ".csv")).string()));
    truths.push_back(
        std::make_unique<AtomicFile>((std::filesystem::path(o.out_dir) / (std::string(n) + ".truth.csv")).string()));
    std::fputs("session,user,item,device,hour,position,year,genres,title_words,click,watch,like,rating\n",
               logs.back()->get());
    std::fputs("session,position,grade,true_rating,p_relevant,p_examined,p_click\n", truths.back()->get());
  }

  const int K = o.positions;
  summary.click_rate_by_position.assign(K, 0.0);
  std::vector<std::int64_t> clicks_at(K, 0), shown_at(K, 0);
  Progress progress("simulate", static_cast<std::uint64_t>(o.sessions), "sessions", !o.quiet);
  std::uniform_int_distribution<std::size_t> any_user(0, r.users.size() - 1);
  std::vector<std::int32_t> cand;
  std::vector<double> score, rating;
  std::vector<int> order;
  std::string line;
  for (std::int64_t s = 0; s < o.sessions; ++s) {
    std::mt19937_64 rng = session_rng(o.seed, static_cast<std::uint64_t>(s));
    std::uniform_real_distribution<double> u01(0, 1);
    std::normal_distribution<double> normal(0, 1);
    const auto u = static_cast<std::int32_t>(any_user(rng));
    const int device = by_device(rng);
    const int hour = static_cast<int>(rng() % 24);
    // Candidates: distinct items, some the user rated, the rest by popularity.
    cand.clear();
    const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(K), r.items.size());
    for (int tries = 0; cand.size() < want && tries < 100 * K; ++tries) {
      std::int32_t i;
      if (!rated_items[u].empty() && u01(rng) < o.rated_share)
        i = rated_items[u][rng() % rated_items[u].size()];
      else
        i = by_popularity(rng);
      if (std::find(cand.begin(), cand.end(), i) == cand.end()) cand.push_back(i);
    }
    const int n = static_cast<int>(cand.size());
    rating.resize(n);
    score.resize(n);
    for (int k = 0; k < n; ++k) {
      rating[k] = true_rating(u, cand[k]);
      if (o.logger == "random") score[k] = 0;
      else if (o.logger == "model") score[k] = logger_mf.predict(u, cand[k]);
      else if (o.logger == "popularity") score[k] = popularity[static_cast<std::size_t>(cand[k])];
      else score[k] = rating[k] + logger_noise * pair_noise(o.seed, u, cand[k]);
    }
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    if (o.logger == "random") {
      std::shuffle(order.begin(), order.end(), rng);
    } else if (o.plackett_luce) {
      // Sequential sampling without replacement, weights exp(score).
      std::vector<int> pool = order;
      for (int k = 0; k < n; ++k) {
        double total = 0;
        for (int c : pool) total += std::exp(score[c]);
        double x = u01(rng) * total;
        std::size_t pick = pool.size() - 1;
        for (std::size_t j = 0; j < pool.size(); ++j) {
          x -= std::exp(score[pool[j]]);
          if (x <= 0) {
            pick = j;
            break;
          }
        }
        order[k] = pool[pick];
        pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(pick));
      }
    } else {
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    }
    for (int k = 0; k < n; ++k)
      if (u01(rng) < o.swap_share) std::swap(order[k], order[rng() % n]);

    const int sp = split[u];
    bool stopped = false;  // cascade: after the first click nothing more is examined
    for (int k = 0; k < n; ++k) {
      const int c = order[k], pos = k + 1;
      const int grade = grade_of(rating[c], o.max_rating);
      const double p_rel = relevance_probability(grade, o.epsilon);
      const double theta = examination_probability(pos, o.eta, devices[device].examination_factor);
      double p_exam = theta, p_click = 0;
      switch (o.click_model) {
        case ClickModel::kPositionBased: p_click = theta * p_rel; break;
        case ClickModel::kCascade:
          p_exam = stopped ? 0 : 1;
          p_click = p_exam * p_rel;
          break;
        case ClickModel::kTrustBias:
          // Agarwal et al. 2019 define it for 10 positions; past 98 the relevant rate would be negative.
          p_click = theta * (grade >= 3 ? std::max(0.0, 1 - (pos + 1) / 100.0) : 0.65 / pos);
          break;
        case ClickModel::kAdditive:
          // The examination enters as a logit offset; p_examined is the same theta.
          p_click = sigmoid(logit(std::clamp(p_rel, 1e-6, 1 - 1e-6)) + std::log(theta));
          break;
      }
      const bool click = u01(rng) < p_click;
      if (click) stopped = true;
      // Labels a clicking user gives, from the true grade.
      std::string watch, like, user_rating;
      if (click) {
        watch = format_fraction(std::clamp(0.15 + 0.18 * grade + 0.1 * normal(rng), 0.0, 1.0));
        like = u01(rng) < sigmoid(2.0 * (grade - 3)) ? "1" : "0";
        user_rating = format_fraction(std::clamp(std::round((grade + 1 + 0.5 * normal(rng)) * 2) / 2, 0.5, 5.0));
      }
      const Item& item = r.items[cand[c]];
      line.clear();
      line += std::to_string(s) + "," + csv_field(r.users[u]) + "," + csv_field(item.id) + "," + devices[device].name +
              "," + std::to_string(hour) + "," + std::to_string(pos) + "," + item.year + "," + csv_field(item.genres) +
              "," + csv_field(item.title_words) + "," + (click ? "1" : "0") + "," + watch + "," + like + "," +
              user_rating + "\n";
      std::fputs(line.c_str(), logs[sp]->get());
      std::fprintf(truths[sp]->get(), "%lld,%d,%d,%.4g,%.6g,%.6g,%.6g\n", static_cast<long long>(s), pos, grade,
                   rating[c], p_rel, p_exam, p_click);
      ++summary.impressions[sp];
      summary.clicks[sp] += click;
      ++summary.grade_counts[grade];
      ++shown_at[k];
      clicks_at[k] += click;
    }
    if ((s & 1023) == 0) progress.update(static_cast<std::uint64_t>(s));
  }
  for (int k = 0; k < K; ++k)
    summary.click_rate_by_position[k] = shown_at[k] ? static_cast<double>(clicks_at[k]) / static_cast<double>(shown_at[k]) : 0;

  // Examination by position and device (what a bias tower should recover, as log theta).
  std::string exam = "position,device,theta,log_theta\n";
  for (int k = 1; k <= K; ++k)
    for (const DeviceSpec& d : devices) {
      const double theta =
          o.click_model == ClickModel::kCascade ? std::nan("") : examination_probability(k, o.eta, d.examination_factor);
      exam += std::to_string(k) + "," + d.name + "," + format_fraction(theta) + "," + format_fraction(std::log(theta)) + "\n";
    }
  nlohmann::json meta{
      {"format", "mtrank-simulation"},
      {"version", 1},
      {"options",
       {{"ratings", o.ratings}, {"sessions", o.sessions}, {"positions", o.positions}, {"rated_share", o.rated_share},
        {"click_model", to_string(o.click_model)}, {"eta", o.eta}, {"epsilon", o.epsilon}, {"logger", o.logger},
        {"logger_share", o.logger_share}, {"plackett_luce", o.plackett_luce}, {"swap_share", o.swap_share},
        {"val_users", o.val_users}, {"test_users", o.test_users}, {"seed", o.seed}, {"mf_dim", o.mf_dim},
        {"mf_epochs", o.mf_epochs}}},
      {"users", summary.users},
      {"items", summary.items},
      {"ratings", summary.ratings},
      {"mf_train_rmse", summary.mf_train_rmse},
      {"impressions", {{"train", summary.impressions[0]}, {"val", summary.impressions[1]}, {"test", summary.impressions[2]}}},
      {"clicks", {{"train", summary.clicks[0]}, {"val", summary.clicks[1]}, {"test", summary.clicks[2]}}},
      {"grade_counts", summary.grade_counts},
      {"click_rate_by_position", summary.click_rate_by_position}};
  // All outputs are complete before any is renamed into place.
  for (auto& f : logs) f->commit();
  for (auto& f : truths) f->commit();
  write_file_atomic((std::filesystem::path(o.out_dir) / "examination.csv").string(), exam);
  // The item catalog: every item's columns as the logs have them, one row per
  // item (what `serve --catalog` joins to retrieved items).
  std::string catalog = "item,year,genres,title_words\n";
  for (const Item& item : r.items)
    catalog += csv_field(item.id) + "," + item.year + "," + csv_field(item.genres) + "," + csv_field(item.title_words) + "\n";
  write_file_atomic((std::filesystem::path(o.out_dir) / "items.csv").string(), catalog);
  // The truth of every (test user, item) pair, for measuring whole
  // recommenders on held-out users (what they retrieve is any item, not only
  // what a logger showed).
  {
    AtomicFile relevance((std::filesystem::path(o.out_dir) / "test.relevance.csv").string());
    std::fputs("user,item,grade,true_rating\n", relevance.get());
    for (std::size_t u = 0; u < r.users.size(); ++u) {
      if (split[u] != 2) continue;
      for (std::size_t i = 0; i < r.items.size(); ++i) {
        const double rating = true_rating(static_cast<std::int32_t>(u), static_cast<std::int32_t>(i));
        std::fprintf(relevance.get(), "%s,%s,%d,%.4g\n", csv_field(r.users[u]).c_str(), csv_field(r.items[i].id).c_str(),
                     grade_of(rating, o.max_rating), rating);
      }
    }
    relevance.commit();
  }
  write_file_atomic((std::filesystem::path(o.out_dir) / "simulation.json").string(), meta.dump(2) + "\n");
  std::int64_t total = 0;
  for (auto v : summary.impressions) total += v;
  progress.finish(human_count(static_cast<double>(total)) + " impressions");
  return summary;
}

}  // namespace mtrank::data
