#pragma once
// Retrieval (issue 12): the items whose vectors have the largest inner
// product with a query, over a sequential model's item table, at a Matryoshka
// prefix width. One interface, several implementations registered by name
// (index_registry()):
//   exact   every item scored (faiss's knn_inner_product: blocked sgemm and a heap)
//   hnsw    faiss's HNSW graph (IndexHNSWFlat, inner product)
//   ivf     faiss's inverted lists (IndexIVFFlat, inner product)
//   funnel  the Matryoshka funnel (reference.md section 4): a shortlist from
//           one of the above at a small width, rescored at growing widths up
//           to the full width, each stage keeping fewer items
// Torch-free: the table is plain floats, so this layer sits under serve and
// beside model, and benches and tests need no model.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mtrank::retrieve {

// Every item's vector, row r = item id r, row-major [rows, dim]; row 0 is
// padding and is never returned. `bias` (empty or [rows]) is added to every
// score at every width (LRURec's per-item bias): the score of item i for a
// query q at width w is bias[i] + sum_{j < w} q[j] vectors[i, j].
struct ItemTable {
  std::int64_t rows = 0, dim = 0;
  std::vector<float> vectors;
  std::vector<float> bias;
  const float* row(std::int64_t item) const { return vectors.data() + item * dim; }
  float bias_of(std::int64_t item) const { return bias.empty() ? 0.0f : bias[static_cast<std::size_t>(item)]; }
};

struct Hit {
  std::int64_t item = 0;
  float score = 0;
};
using Hits = std::vector<Hit>;  // best first

struct IndexOptions {
  std::int64_t width = 0;  // prefix width the index reads (0: the table's full width)
  // hnsw
  int hnsw_m = 32;                 // graph degree
  int hnsw_ef_construction = 128;  // candidate list while building
  int hnsw_ef_search = 128;        // candidate list while searching (at least k is used)
  // ivf
  int ivf_lists = 0;  // 0: 4 sqrt(items)
  int ivf_probe = 16;  // lists visited per query
  // funnel: stage i rescores the previous stage's items at funnel_widths[i]
  // and keeps funnel_keep[i]; the first stage is a `funnel_first` index at
  // funnel_widths[0]. The last width must be the table's full width; the
  // request's k is cut from the last stage.
  std::vector<std::int64_t> funnel_widths;
  std::vector<std::int64_t> funnel_keep;
  std::string funnel_first = "exact";
  unsigned seed = 42;
};

class ItemIndex {
 public:
  virtual ~ItemIndex() = default;
  // The top `k` items of each of `count` queries (row-major, `query_dim` >=
  // width() floats each; only the first width() are read), best first. Item
  // 0 and the query's ids in `exclude` (when given: one list per query, e.g.
  // the user's history) are never returned; fewer than k come back when
  // fewer items are left.
  virtual std::vector<Hits> search(const float* queries, std::int64_t count, std::int64_t query_dim, std::int64_t k,
                                   const std::vector<std::vector<std::int64_t>>* exclude = nullptr) const = 0;
  virtual std::int64_t width() const = 0;
  virtual std::string describe() const = 0;  // kind and settings, for logs and bench tables
};

// Builds an index of `kind` over `table` (kept by reference where the index
// needs it at search time: the table must outlive the index). Throws
// std::invalid_argument naming the problem (an unknown kind, a width the
// table does not have, funnel widths that do not increase to the full width).
using IndexFactory = std::function<std::unique_ptr<ItemIndex>(const ItemTable&, const IndexOptions&)>;
struct IndexKind {
  std::string name, doc;
  IndexFactory make;
};
const std::vector<IndexKind>& index_registry();
std::unique_ptr<ItemIndex> make_index(const std::string& kind, const ItemTable& table, const IndexOptions& options = {});

// The registered implementations (item_index.cpp: exact, hnsw, ivf;
// funnel.cpp: funnel).
std::unique_ptr<ItemIndex> make_faiss_index(const std::string& kind, const ItemTable& table, const IndexOptions& options);
std::unique_ptr<ItemIndex> make_funnel(const ItemTable& table, const IndexOptions& options);

// Recall@k of `found` against `truth` (e.g. exact full-width search): the
// share of truth's top k found in found's top k, averaged over queries.
double recall_at(const std::vector<Hits>& found, const std::vector<Hits>& truth, std::size_t k);

}  // namespace mtrank::retrieve
