#pragma once
// Retrieval with a sequential model (issue 12): its item table as the
// torch-free retrieve::ItemTable the item indexes read, and users' queries.
#include <cstdint>
#include <vector>

#include "retrieve/item_index.h"

namespace mtrank::model {
class SequentialRecommenderImpl;
}

namespace mtrank::serve {

// The model's item representation (item_table(): ids, features and projected
// vectors summed) and its per-item bias, as floats: row r = model item id r.
// Index scores then equal the model's scores_by_width at every width.
retrieve::ItemTable item_table_of(model::SequentialRecommenderImpl& net);

// The query of each history (model ids, oldest first; its last max_len items
// are the input window, left-padded): the hidden state at the last position,
// row-major [histories, D].
std::vector<float> queries_of(model::SequentialRecommenderImpl& net, const std::vector<std::vector<std::int32_t>>& histories,
                              int max_len, std::int64_t batch_size = 256);

}  // namespace mtrank::serve
