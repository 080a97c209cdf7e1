#include "serve/retriever.h"

#include <torch/torch.h>

#include "data/sequences.h"
#include "model/sequential.h"

namespace mtrank::serve {

retrieve::ItemTable item_table_of(model::SequentialRecommenderImpl& net) {
  torch::NoGradGuard no_grad;
  const torch::Tensor table = net.item_table().contiguous();
  retrieve::ItemTable out;
  out.rows = table.size(0);
  out.dim = table.size(1);
  out.vectors.assign(table.data_ptr<float>(), table.data_ptr<float>() + table.numel());
  if (net.item_bias().defined()) {
    const torch::Tensor bias = net.item_bias().contiguous();
    out.bias.assign(bias.data_ptr<float>(), bias.data_ptr<float>() + bias.numel());
  }
  return out;
}

std::vector<float> queries_of(model::SequentialRecommenderImpl& net, const std::vector<std::vector<std::int32_t>>& histories,
                              int max_len, std::int64_t batch_size) {
  net.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor table = net.item_table();
  const std::int64_t d = table.size(1), n = static_cast<std::int64_t>(histories.size());
  std::vector<float> out(static_cast<std::size_t>(n * d));
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    const std::int64_t end = std::min(n, begin + batch_size);
    std::vector<std::int64_t> windows;
    for (std::int64_t u = begin; u < end; ++u)
      for (std::int32_t id : data::input_window(histories[static_cast<std::size_t>(u)], max_len)) windows.push_back(id);
    const torch::Tensor tokens = torch::tensor(windows, torch::kInt64).view({end - begin, max_len});
    const torch::Tensor last = net.forward(tokens, table).select(1, max_len - 1).contiguous();
    std::copy(last.data_ptr<float>(), last.data_ptr<float>() + last.numel(), out.data() + begin * d);
  }
  return out;
}

}  // namespace mtrank::serve
