#pragma once
// Where a training run's rows come from, one epoch at a time, in a seeded
// order of global batches (train::Trainer reads them): all rows in memory
// (one shuffle of every row), or streamed from a BlockStore on disk, so that
// memory holds a shuffle buffer, not the data.
//
// The streamed order: the blocks in a shuffled order; rows pile up in a
// buffer until it holds data.shuffle_buffer_rows, are shuffled there and go
// out in full batches; the rows left over (fewer than a batch) stay for the
// next fill. Peak memory: about the buffer plus one block (the next one,
// read ahead on another thread). A row still lands
// in every epoch exactly once; with a buffer as large as the data, the order
// is a full shuffle, as in memory.
#include <cstdint>
#include <functional>
#include <random>

#include "data/block_store.h"
#include "data/dataset.h"

namespace mtrank::data {

// batch(rows_data, rows, n): a global batch, rows rows[0..n) of rows_data,
// valid during the call.
using BatchVisitor = std::function<void(const FeaturizedData&, const std::int64_t*, std::int64_t)>;

class TrainingRows {
 public:
  virtual ~TrainingRows() = default;
  virtual std::int64_t rows() const = 0;
  // One epoch of batches of `batch_size` rows (the last may be shorter), in an order drawn from `rng`.
  virtual void epoch(std::mt19937_64& rng, std::int64_t batch_size, const BatchVisitor& batch) = 0;
};

class InMemoryRows final : public TrainingRows {
 public:
  explicit InMemoryRows(const FeaturizedData& data) : data_(data) {}
  std::int64_t rows() const override { return data_.rows(); }
  void epoch(std::mt19937_64& rng, std::int64_t batch_size, const BatchVisitor& batch) override;

 private:
  const FeaturizedData& data_;
  std::vector<std::int64_t> order_;
};

class StreamedRows final : public TrainingRows {
 public:
  // embedding_rows >= 0: every block's ids are checked against the table as it is read.
  StreamedRows(const BlockStore& store, std::int64_t buffer_rows, std::int64_t embedding_rows)
      : store_(store), buffer_rows_(buffer_rows), embedding_rows_(embedding_rows) {}
  std::int64_t rows() const override { return store_.rows(); }
  void epoch(std::mt19937_64& rng, std::int64_t batch_size, const BatchVisitor& batch) override;
  // The most rows held in memory at once so far (the buffer and the block being added).
  std::int64_t peak_rows() const { return peak_rows_; }

 private:
  const BlockStore& store_;
  std::int64_t buffer_rows_, embedding_rows_;
  std::int64_t peak_rows_ = 0;
};

}  // namespace mtrank::data
