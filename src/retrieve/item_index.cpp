#include "retrieve/item_index.h"

#include <algorithm>
#include <numeric>
#include <cmath>
#include <stdexcept>
#include <unordered_set>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/utils/distances.h>

// The Fortran BLAS interface faiss itself calls (the BLAS faiss links).
extern "C" int sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
                      const float* x, const int* incx, const float* beta, float* y, const int* incy);

namespace mtrank::retrieve {
namespace {

std::int64_t checked_width(const ItemTable& table, std::int64_t width) {
  if (table.rows < 2 || table.dim < 1 ||
      table.vectors.size() != static_cast<std::size_t>(table.rows) * static_cast<std::size_t>(table.dim))
    throw std::invalid_argument("item index: the item table needs rows x dim values and at least one item past padding");
  if (!table.bias.empty() && table.bias.size() != static_cast<std::size_t>(table.rows))
    throw std::invalid_argument("item index: the bias needs one value per row of the item table");
  if (width == 0) return table.dim;
  if (width < 1 || width > table.dim)
    throw std::invalid_argument("item index: width " + std::to_string(width) + " is not within 1.." +
                                std::to_string(table.dim) + " (the item table's width)");
  return width;
}

// The prefix [0, width) of items 1..rows-1, contiguous, with the bias as one
// more column (the query gets a 1 there): inner product then is the score.
// faiss id = item - 1.
std::vector<float> prefix_rows(const ItemTable& table, std::int64_t width) {
  const std::int64_t cols = width + (table.bias.empty() ? 0 : 1);
  std::vector<float> out(static_cast<std::size_t>((table.rows - 1) * cols));
  for (std::int64_t item = 1; item < table.rows; ++item) {
    float* to = out.data() + (item - 1) * cols;
    std::copy(table.row(item), table.row(item) + width, to);
    if (!table.bias.empty()) to[width] = table.bias_of(item);
  }
  return out;
}

// exact, hnsw and ivf: faiss indexes over the prefix rows. faiss filters one
// id set per call, not per query, so exclusions are met by fetching k plus
// the longest exclusion list and dropping the excluded.
class FaissItemIndex : public ItemIndex {
 public:
  FaissItemIndex(const std::string& kind, const ItemTable& table, const IndexOptions& o)
      : kind_(kind), width_(checked_width(table, o.width)), bias_(!table.bias.empty()), items_(table.rows - 1),
        options_(o) {
    const auto cols = static_cast<int>(width_ + (bias_ ? 1 : 0));
    if (kind == "exact") {
      // faiss's brute-force kernel (blocked sgemm and a heap) over rows in
      // place: at the full width without a bias those are the table's own, so
      // a 10M x 256 catalog is not held twice. Below
      // distance_compute_blas_threshold queries (20) faiss loops over the rows
      // instead, and Debian's build has only the scalar loop
      // (fvec_inner_product_ref): one query on 9,066 x 64 took 0.91 ms that
      // way and 0.06 ms through sgemm (docs/benchmarks.md), so sgemm serves
      // every query count. A process-wide faiss setting, set before any search.
      faiss::distance_compute_blas_threshold = 1;
      if (width_ == table.dim && !bias_) {
        exact_rows_ = table.row(1);
      } else {
        own_rows_ = prefix_rows(table, width_);
        exact_rows_ = own_rows_.data();
      }
      return;
    }
    const std::vector<float> rows = prefix_rows(table, width_);
    if (kind == "hnsw") {
      if (o.hnsw_m < 2 || o.hnsw_ef_construction < 1 || o.hnsw_ef_search < 1)
        throw std::invalid_argument("hnsw index: hnsw_m must be >= 2 and the ef sizes >= 1");
      auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(cols, o.hnsw_m, faiss::METRIC_INNER_PRODUCT);
      hnsw->hnsw.efConstruction = o.hnsw_ef_construction;
      // faiss 1.7.3's IndexHNSW::search ignores SearchParametersHNSW's efSearch
      // (measured: recall stayed at efSearch 16's), so it is set here, once;
      // faiss searches with at least the k it is asked for.
      hnsw->hnsw.efSearch = o.hnsw_ef_search;
      index_ = std::move(hnsw);
    } else if (kind == "ivf") {
      lists_ = o.ivf_lists > 0 ? o.ivf_lists
                               : static_cast<int>(std::clamp<std::int64_t>(
                                     static_cast<std::int64_t>(4 * std::sqrt(static_cast<double>(items_))), 1, items_));
      if (lists_ > items_ || o.ivf_probe < 1)
        throw std::invalid_argument("ivf index: " + std::to_string(lists_) + " lists for " + std::to_string(items_) +
                                    " items (at most one list an item) and ivf_probe >= 1 are needed");
      quantizer_ = std::make_unique<faiss::IndexFlatIP>(cols);
      auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer_.get(), cols, static_cast<std::size_t>(lists_),
                                                       faiss::METRIC_INNER_PRODUCT);
      ivf->cp.seed = static_cast<int>(o.seed);
      ivf->train(items_, rows.data());
      index_ = std::move(ivf);
    } else {
      throw std::invalid_argument("unknown faiss item index '" + kind + "'");
    }
    index_->add(items_, rows.data());
  }

  std::vector<Hits> search(const float* queries, std::int64_t count, std::int64_t query_dim, std::int64_t k,
                           const std::vector<std::vector<std::int64_t>>* exclude) const override {
    if (query_dim < width_) throw std::invalid_argument("item index: queries of " + std::to_string(query_dim) +
                                                        " features for an index of width " + std::to_string(width_));
    if (exclude && exclude->size() != static_cast<std::size_t>(count))
      throw std::invalid_argument("item index: one exclusion list per query is needed");
    std::vector<Hits> out(static_cast<std::size_t>(count));
    if (count == 0 || k <= 0) return out;
    k = std::min(k, items_);  // and so no overflow below
    std::size_t longest = 0;
    if (exclude)
      for (const auto& e : *exclude) longest = std::max(longest, e.size());
    const std::int64_t fetch = std::min<std::int64_t>(items_, k + static_cast<std::int64_t>(longest));
    const std::int64_t cols = width_ + (bias_ ? 1 : 0);
    std::vector<float> q(static_cast<std::size_t>(count * cols));
    for (std::int64_t i = 0; i < count; ++i) {
      std::copy(queries + i * query_dim, queries + i * query_dim + width_, q.data() + i * cols);
      if (bias_) q[static_cast<std::size_t>(i * cols + width_)] = 1.0f;
    }
    std::vector<float> scores(static_cast<std::size_t>(count * fetch));
    std::vector<std::int64_t> labels(scores.size());  // faiss::Index::idx_t
    faiss::SearchParametersIVF ivf;
    const faiss::SearchParameters* params = nullptr;
    if (kind_ == "ivf") {
      ivf.nprobe = static_cast<std::size_t>(std::min(options_.ivf_probe, lists_));
      params = &ivf;
    }
    if (exact_rows_ && count < kFewQueries)
      for (std::int64_t i = 0; i < count; ++i)
        exact_one(q.data() + i * cols, cols, fetch, scores.data() + i * fetch, labels.data() + i * fetch);
    else if (exact_rows_)
      faiss::knn_inner_product(q.data(), exact_rows_, static_cast<std::size_t>(cols), static_cast<std::size_t>(count),
                               static_cast<std::size_t>(items_), static_cast<std::size_t>(fetch), scores.data(),
                               labels.data());
    else
      index_->search(count, q.data(), fetch, scores.data(), labels.data(), params);
    for (std::int64_t i = 0; i < count; ++i) {
      std::vector<std::int64_t> excluded;
      if (exclude) {
        excluded = (*exclude)[static_cast<std::size_t>(i)];
        std::sort(excluded.begin(), excluded.end());
      }
      Hits& hits = out[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < fetch && static_cast<std::int64_t>(hits.size()) < k; ++j) {
        const std::int64_t label = labels[static_cast<std::size_t>(i * fetch + j)];
        if (label < 0) continue;  // an approximate index may find fewer than asked
        const std::int64_t item = label + 1;
        if (std::binary_search(excluded.begin(), excluded.end(), item)) continue;
        hits.push_back({item, scores[static_cast<std::size_t>(i * fetch + j)]});
      }
    }
    return out;
  }

  std::int64_t width() const override { return width_; }
  std::string describe() const override {
    std::string s = kind_ + " width " + std::to_string(width_);
    if (kind_ == "hnsw")
      s += " (M " + std::to_string(options_.hnsw_m) + ", efConstruction " + std::to_string(options_.hnsw_ef_construction) +
           ", efSearch " + std::to_string(options_.hnsw_ef_search) + ")";
    if (kind_ == "ivf") s += " (" + std::to_string(lists_) + " lists, probe " + std::to_string(options_.ivf_probe) + ")";
    return s;
  }

  // Written here, not faiss's: one query (a served request) through faiss's
  // blocked sgemm and heap took 0.29 ms on 9,066 x 64 (its scalar loop, the
  // default below 20 queries, 0.91 ms), where one sgemv over the rows and a
  // bounded heap take 0.09 ms (docs/benchmarks.md, "Retrieval").
  static constexpr std::int64_t kFewQueries = 4;
  void exact_one(const float* q, std::int64_t cols, std::int64_t fetch, float* scores, std::int64_t* labels) const {
    thread_local std::vector<float> all;
    all.resize(static_cast<std::size_t>(items_));
    // Row-major rows [items, cols] are a column-major [cols, items] matrix: all = rows^T q.
    const int m = static_cast<int>(cols), n = static_cast<int>(items_), one = 1;
    const float alpha = 1.0f, beta = 0.0f;
    sgemv_("T", &m, &n, &alpha, exact_rows_, &m, q, &one, &beta, all.data(), &one);
    // The best `fetch` by a heap whose top is the worst kept: most items are
    // turned away by one comparison with it. Ties go to the lower id; a NaN
    // score is never kept.
    thread_local std::vector<std::pair<float, std::int64_t>> heap;
    heap.clear();
    auto better = [](const std::pair<float, std::int64_t>& a, const std::pair<float, std::int64_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    for (std::int64_t r = 0; r < items_; ++r) {
      const float v = all[static_cast<std::size_t>(r)];
      if (std::isnan(v)) continue;
      if (static_cast<std::int64_t>(heap.size()) < fetch) {
        heap.emplace_back(v, r);
        std::push_heap(heap.begin(), heap.end(), better);
      } else if (better({v, r}, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = {v, r};
        std::push_heap(heap.begin(), heap.end(), better);
      }
    }
    std::sort_heap(heap.begin(), heap.end(), better);
    for (std::int64_t j = 0; j < fetch; ++j) {
      const bool have = j < static_cast<std::int64_t>(heap.size());
      labels[j] = have ? heap[static_cast<std::size_t>(j)].second : -1;
      scores[j] = have ? heap[static_cast<std::size_t>(j)].first : 0.0f;
    }
  }

 private:
  std::string kind_;
  std::int64_t width_;
  bool bias_;
  std::int64_t items_;
  IndexOptions options_;
  int lists_ = 0;
  std::vector<float> own_rows_;           // exact: the prefix rows, unless the table's rows are they
  const float* exact_rows_ = nullptr;     // exact: items 1.. as rows of width_ (+ bias) floats
  std::unique_ptr<faiss::Index> quantizer_;  // ivf: declared before index_, so it is destroyed after it
  std::unique_ptr<faiss::Index> index_;
};

}  // namespace

std::unique_ptr<ItemIndex> make_faiss_index(const std::string& kind, const ItemTable& table, const IndexOptions& options) {
  return std::make_unique<FaissItemIndex>(kind, table, options);
}

const std::vector<IndexKind>& index_registry() {
  static const std::vector<IndexKind> registry = {
      {"exact", "every item scored at the index's width (faiss's brute-force kernel: blocked sgemm and a heap)",
       [](const ItemTable& t, const IndexOptions& o) { return make_faiss_index("exact", t, o); }},
      {"hnsw", "faiss HNSW graph over inner product (hnsw_m, hnsw_ef_construction, hnsw_ef_search)",
       [](const ItemTable& t, const IndexOptions& o) { return make_faiss_index("hnsw", t, o); }},
      {"ivf", "faiss inverted lists over inner product (ivf_lists, ivf_probe)",
       [](const ItemTable& t, const IndexOptions& o) { return make_faiss_index("ivf", t, o); }},
      {"funnel", "Matryoshka funnel: a funnel_first shortlist at funnel_widths[0], rescored at each wider width",
       [](const ItemTable& t, const IndexOptions& o) { return make_funnel(t, o); }},
  };
  return registry;
}

std::unique_ptr<ItemIndex> make_index(const std::string& kind, const ItemTable& table, const IndexOptions& options) {
  std::string names;
  for (const IndexKind& k : index_registry()) {
    if (k.name == kind) return k.make(table, options);
    names += (names.empty() ? "" : ", ") + k.name;
  }
  throw std::invalid_argument("unknown item index '" + kind + "' (" + names + ")");
}

double recall_at(const std::vector<Hits>& found, const std::vector<Hits>& truth, std::size_t k) {
  if (found.size() != truth.size()) throw std::invalid_argument("recall_at: different numbers of queries");
  if (truth.empty()) return 0;
  double sum = 0;
  for (std::size_t q = 0; q < truth.size(); ++q) {
    std::unordered_set<std::int64_t> want;
    for (std::size_t i = 0; i < std::min(k, truth[q].size()); ++i) want.insert(truth[q][i].item);
    if (want.empty()) continue;
    std::size_t got = 0;
    for (std::size_t i = 0; i < std::min(k, found[q].size()); ++i) got += want.count(found[q][i].item);
    sum += static_cast<double>(got) / static_cast<double>(want.size());
  }
  return sum / static_cast<double>(truth.size());
}

}  // namespace mtrank::retrieve
