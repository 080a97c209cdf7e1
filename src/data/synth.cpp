#include "data/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"

namespace mtrank::data {


void write_mmoe_synthetic(const MmoeSynthOptions& o, const std::string& path) {
  if (o.correlation < -1 || o.correlation > 1) throw DataError("--correlation must be in [-1, 1]");
  if (o.dim < 2) throw DataError("--dim must be at least 2");
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int d = o.dim;
  // Two orthogonal unit vectors by Gram-Schmidt on Gaussian draws.
  std::vector<double> u1(d), u2(d);
  for (auto& v : u1) v = normal(rng);
  for (auto& v : u2) v = normal(rng);
  auto dot = [&](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += a[i] * b[i];
    return s;
  };
  const double n1 = std::sqrt(dot(u1, u1));
  for (auto& v : u1) v /= n1;
  const double proj = dot(u1, u2);
  for (int i = 0; i < d; ++i) u2[i] -= proj * u1[i];
  const double n2 = std::sqrt(dot(u2, u2));
  for (auto& v : u2) v /= n2;
  const double p = o.correlation, q = std::sqrt(std::max(0.0, 1 - p * p));
  std::vector<double> w1(d), w2(d);
  for (int i = 0; i < d; ++i) {
    w1[i] = o.scale * u1[i];
    w2[i] = o.scale * (p * u1[i] + q * u2[i]);
  }
  std::vector<double> alpha(o.sin_terms), beta(o.sin_terms);
  for (int i = 0; i < o.sin_terms; ++i) {
    alpha[i] = normal(rng);
    beta[i] = normal(rng);
  }
  const double noise_sd = std::sqrt(o.noise_variance);
  AtomicFile out(path);
  std::FILE* f = out.get();
  for (int i = 0; i < d; ++i) std::fprintf(f, "x%d,", i);
  std::fprintf(f, "y1,y2\n");
  std::vector<double> x(d);
  for (std::int64_t r = 0; r < o.rows; ++r) {
    for (auto& v : x) v = normal(rng);
    const double a = dot(w1, x), b = dot(w2, x);
    double y1 = a, y2 = b;
    for (int i = 0; i < o.sin_terms; ++i) {
      y1 += std::sin(alpha[i] * a + beta[i]);
      y2 += std::sin(alpha[i] * b + beta[i]);
    }
    y1 += noise_sd * normal(rng);
    y2 += noise_sd * normal(rng);
    for (int i = 0; i < d; ++i) std::fprintf(f, "%.6g,", x[i]);
    std::fprintf(f, "%.6g,%.6g\n", y1, y2);
  }
  out.commit();
}

void write_ranking_synthetic(const RankingSynthOptions& o, const std::string& path) {
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  constexpr int kLatent = 4;
  auto sigmoid = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
  struct User {
    double taste[kLatent];
    int interest_a, interest_b;
    double activity;
  };
  struct Item {
    double style[kLatent];
    int category;
    double price, quality;
  };
  std::vector<User> users(o.users);
  for (auto& u : users) {
    for (double& t : u.taste) t = normal(rng);
    u.interest_a = static_cast<int>(rng() % o.categories);
    u.interest_b = static_cast<int>(rng() % o.categories);
    u.activity = normal(rng) * 0.5;
  }
  std::vector<Item> items(o.items);
  for (auto& it : items) {
    for (double& s : it.style) s = normal(rng) * 0.5;
    it.category = static_cast<int>(rng() % o.categories);
    it.price = std::exp(2.5 + normal(rng));
    it.quality = normal(rng);
  }
  static const char* kDevices[] = {"mobile", "desktop", "tv"};
  static const double kDeviceEffect[] = {0.0, -0.3, 0.4};
  // Item popularity follows a Zipf-like law so ids have a long tail.
  std::vector<double> cumulative(o.items);
  double total = 0;
  for (int i = 0; i < o.items; ++i) cumulative[i] = (total += 1.0 / std::pow(i + 1.0, 0.8));
  AtomicFile out(path);
  std::FILE* f = out.get();
  std::fprintf(f, "user_id,item_id,item_category,device,user_interests,price,hour,click,like,watch_time\n");
  for (std::int64_t r = 0; r < o.rows; ++r) {
    const int ui = static_cast<int>(rng() % o.users);
    const double pick = uniform(rng) * total;
    const int ii = static_cast<int>(std::lower_bound(cumulative.begin(), cumulative.end(), pick) - cumulative.begin());
    const int device = static_cast<int>(rng() % 3);
    const int hour = static_cast<int>(rng() % 24);
    const User& u = users[ui];
    const Item& it = items[std::min(ii, o.items - 1)];
    double affinity = 0;
    for (int k = 0; k < kLatent; ++k) affinity += u.taste[k] * it.style[k];
    const bool interested = it.category == u.interest_a || it.category == u.interest_b;
    const double evening = (hour >= 18 && hour <= 23) ? 0.3 : 0.0;
    const double click_logit = -1.2 + 1.2 * affinity + 1.0 * interested + kDeviceEffect[device] + u.activity +
                               evening - 0.25 * std::log(it.price);
    const bool click = uniform(rng) < sigmoid(click_logit);
    std::string like = "", watch = "";
    if (click) {
      like = uniform(rng) < sigmoid(-0.5 + 1.5 * it.quality + 0.8 * affinity) ? "1" : "0";
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", std::max(0.0, 60.0 * sigmoid(it.quality + affinity) + 5 * normal(rng)));
      watch = buf;
    }
    std::fprintf(f, "u%d,i%d,c%d,%s,c%d|c%d,%.2f,%d,%d,%s,%s\n", ui, ii, it.category, kDevices[device], u.interest_a,
                 u.interest_b, it.price, hour, click ? 1 : 0, like.c_str(), watch.c_str());
  }
  out.commit();
}

}  // namespace mtrank::data
