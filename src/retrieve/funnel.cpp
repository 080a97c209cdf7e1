// The Matryoshka funnel (reference.md section 4; MRL's adaptive retrieval):
// a Matryoshka model's width-w score is the width-v score (v < w) plus the
// product of the next features, so a shortlist found cheaply at a small width
// can be rescored at growing widths by adding only each chunk's product, and
// each stage keeps fewer items. Exact at the full width for the items that
// reach it; what it can miss is an item the first stage did not shortlist.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "retrieve/item_index.h"

namespace mtrank::retrieve {
namespace {

class FunnelIndex : public ItemIndex {
 public:
  FunnelIndex(const ItemTable& table, const IndexOptions& o) : table_(table), widths_(o.funnel_widths), keep_(o.funnel_keep) {
    if (widths_.size() < 2)
      throw std::invalid_argument("funnel: funnel_widths needs at least two widths, the last the full width " +
                                  std::to_string(table.dim));
    for (std::size_t i = 0; i < widths_.size(); ++i)
      if (widths_[i] < 1 || (i > 0 && widths_[i] <= widths_[i - 1]))
        throw std::invalid_argument("funnel: funnel_widths must increase from >= 1");
    if (widths_.back() != table.dim)
      throw std::invalid_argument("funnel: the last of funnel_widths must be the item table's width " +
                                  std::to_string(table.dim) + ", not " + std::to_string(widths_.back()));
    if (keep_.size() != widths_.size() - 1)
      throw std::invalid_argument("funnel: funnel_keep needs one size per stage before the last (" +
                                  std::to_string(widths_.size() - 1) + "), not " + std::to_string(keep_.size()));
    for (std::size_t i = 0; i < keep_.size(); ++i)
      if (keep_[i] < 1 || (i > 0 && keep_[i] > keep_[i - 1]))
        throw std::invalid_argument("funnel: funnel_keep must be >= 1 and not grow from stage to stage");
    if (o.funnel_first == "funnel") throw std::invalid_argument("funnel: the first stage cannot be a funnel");
    IndexOptions first = o;
    first.width = widths_.front();
    first_ = make_index(o.funnel_first, table, first);
  }

  std::vector<Hits> search(const float* queries, std::int64_t count, std::int64_t query_dim, std::int64_t k,
                           const std::vector<std::vector<std::int64_t>>* exclude) const override {
    if (query_dim < table_.dim)
      throw std::invalid_argument("funnel: queries of " + std::to_string(query_dim) + " features for width " +
                                  std::to_string(table_.dim));
    if (k <= 0) return std::vector<Hits>(static_cast<std::size_t>(std::max<std::int64_t>(count, 0)));
    std::vector<Hits> out = first_->search(queries, count, query_dim, std::max(k, keep_.front()), exclude);
    for (std::int64_t q = 0; q < count; ++q) {
      const float* query = queries + q * query_dim;
      Hits& hits = out[static_cast<std::size_t>(q)];
      for (std::size_t stage = 1; stage < widths_.size(); ++stage) {
        const std::int64_t begin = widths_[stage - 1], end = widths_[stage];
        for (Hit& h : hits) {
          const float* row = table_.row(h.item);
          float sum = 0;
          for (std::int64_t j = begin; j < end; ++j) sum += query[j] * row[j];
          h.score += sum;
        }
        const std::size_t keep = static_cast<std::size_t>(
            stage < keep_.size() ? std::max(k, keep_[stage]) : k);  // the last stage keeps the request's k
        // A strict weak order even with NaN scores (a model with broken
        // weights): NaN ranks below every number, as if it were -infinity.
        const auto better = [](const Hit& a, const Hit& b) {
          const float x = std::isnan(a.score) ? -INFINITY : a.score, y = std::isnan(b.score) ? -INFINITY : b.score;
          return x > y || (x == y && a.item < b.item);
        };
        if (hits.size() > keep) {
          std::nth_element(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), better);
          hits.resize(keep);
        }
        if (stage + 1 == widths_.size()) std::sort(hits.begin(), hits.end(), better);
      }
    }
    return out;
  }

  std::int64_t width() const override { return table_.dim; }
  std::string describe() const override {
    std::string s = "funnel: " + first_->describe() + " keeps " + std::to_string(keep_.front());
    for (std::size_t i = 1; i < widths_.size(); ++i)
      s += ", width " + std::to_string(widths_[i]) + (i < keep_.size() ? " keeps " + std::to_string(keep_[i]) : " ranks");
    return s;
  }

 private:
  const ItemTable& table_;
  std::vector<std::int64_t> widths_, keep_;
  std::unique_ptr<ItemIndex> first_;
};

}  // namespace

std::unique_ptr<ItemIndex> make_funnel(const ItemTable& table, const IndexOptions& options) {
  return std::make_unique<FunnelIndex>(table, options);
}

}  // namespace mtrank::retrieve
