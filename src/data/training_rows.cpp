#include "data/training_rows.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace mtrank::data {

namespace {
// Hands freed heap memory back to the system. mtrank keeps up to 256 MB
// free for speed (common/system.cpp, M_TRIM_THRESHOLD); a streamed run under
// a memory limit must not: each block read frees its arrays.
void release_free_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// Reads the blocks in order on one thread of its own, one block ahead of
// the trainer: reading and checking a block took about a tenth of a census
// epoch while training waited. One thread for the epoch, not one per block:
// glibc gives each new thread its own malloc arena, and freed blocks spread
// over many arenas held memory a limited run did not have (measured: killed
// at 200 MB).
class BlockReadAhead {
 public:
  BlockReadAhead(const BlockStore& store, const std::vector<std::size_t>& order, std::int64_t embedding_rows)
      : thread_([this, &store, order, embedding_rows] {
          for (std::size_t b : order) {
            {  // one block ahead, not two: read only once the slot is free
              std::unique_lock<std::mutex> lock(mutex_);
              ready_.wait(lock, [this] { return (!slot_ && !error_) || stop_; });
              if (stop_) return;
            }
            std::optional<FeaturizedData> block;
            std::exception_ptr error;
            try {
              block = store.read(b, embedding_rows);
            } catch (...) {
              error = std::current_exception();
            }
            std::unique_lock<std::mutex> lock(mutex_);
            if (stop_) return;
            slot_ = std::move(block);
            error_ = error;
            ready_.notify_all();
            if (error) return;
          }
        }) {}
  ~BlockReadAhead() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    ready_.notify_all();
    thread_.join();
  }
  // The next block in order; rethrows the reader's error (a damaged block).
  FeaturizedData next() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return slot_.has_value() || error_; });
    if (error_) std::rethrow_exception(error_);
    FeaturizedData block = std::move(*slot_);
    slot_.reset();
    ready_.notify_all();
    return block;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::optional<FeaturizedData> slot_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};
}  // namespace

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
  // One buffer for the whole epoch, sized once: the fill never reallocates
  // (growth by doubling would hold twice the buffer), and what is freed goes
  // back to the system after each fill, so memory stays near the buffer.
  std::int64_t largest_block = 0;
  for (std::size_t i = 0; i < store_.blocks(); ++i) largest_block = std::max(largest_block, store_.block_rows(i));
  const std::int64_t capacity = std::min(store_.rows(), buffer_rows_ + largest_block + batch_size);
  FeaturizedData buffer(store_.num_categorical(), store_.num_bags(), store_.num_dense(), store_.num_tasks());
  const std::int64_t bag_entries =
      store_.rows() > 0 ? static_cast<std::int64_t>(static_cast<double>(store_.bag_entries()) * capacity / store_.rows() * 1.1)
                        : 0;
  buffer.reserve(capacity, bag_entries);
  std::vector<std::int64_t> order;
  BlockReadAhead ahead(store_, blocks, embedding_rows_);
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    buffer.append(ahead.next());
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
    const FeaturizedData rest = buffer.select(order.data() + out, buffer.rows() - out);
    buffer.clear();
    buffer.append(rest);
    release_free_memory();
  }
}

}  // namespace mtrank::data
