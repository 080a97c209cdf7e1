#include "data/training_rows.h"

#include <algorithm>
#include <numeric>

namespace mtrank::data {

void InMemoryRows::epoch(std::mt19937_64& rng, std::int64_t batch_size, const BatchVisitor& batch) {
  order_.resize(static_cast<std::size_t>(data_.rows()));
  std::iota(order_.begin(), order_.end(), 0);
  std::shuffle(order_.begin(), order_.end(), rng);
  for (std::int64_t begin = 0; begin < data_.rows(); begin += batch_size)
    batch(data_, order_.data() + begin, std::min(batch_size, data_.rows() - begin));
}

void StreamedRows::epoch(std::mt19937_64& rng, std::int64_t batch_size, const BatchVisitor& batch) {
  std::vector<std::size_t> blocks(store_.blocks());
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  FeaturizedData buffer(store_.num_categorical(), store_.num_bags(), store_.num_dense(), store_.num_tasks());
  std::vector<std::int64_t> order;
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    buffer.append(store_.read(blocks[k], embedding_rows_));
    peak_rows_ = std::max(peak_rows_, buffer.rows());
    const bool last = k + 1 == blocks.size();
    if (buffer.rows() < buffer_rows_ && !last) continue;
    order.resize(static_cast<std::size_t>(buffer.rows()));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    // Full batches now; the rest waits for the next fill (the last fill sends it all).
    const std::int64_t out = last ? buffer.rows() : buffer.rows() / batch_size * batch_size;
    for (std::int64_t begin = 0; begin < out; begin += batch_size)
      batch(buffer, order.data() + begin, std::min(batch_size, out - begin));
    buffer = buffer.select(order.data() + out, buffer.rows() - out);
  }
}

}  // namespace mtrank::data
