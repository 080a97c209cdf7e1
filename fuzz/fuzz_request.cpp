// libFuzzer target: arbitrary bytes as a request body, through each parser of
// the serving API: a ranking request (the JSON parser and the featurizer of a
// small fitted model, every feature type), a recommend request (its fields
// and context) and an event. Only RequestError may come out; anything else
// (a crash, a sanitizer report, another exception) is a bug.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/dataset.h"
#include "data/preprocessor.h"
#include "serve/request.h"

namespace {
const char* kConfig = R"(
[data]
missing_values = ["", "NA"]
[[features]]
names = ["user", "item"]
type = "categorical"
[[features]]
name = "app"
type = "categorical"
hash_buckets = 64
[[features]]
name = "tags"
type = "multi_hot"
[[features]]
name = "user_x_app"
type = "cross"
columns = ["user", "app"]
hash_buckets = 32
[[features]]
name = "price"
type = "numeric"
log1p = true
[[features]]
name = "age"
type = "numeric"
transform = "standardize"
missing = "error"
[[features]]
name = "position"
type = "numeric"
bias = true
[[tasks]]
name = "click"
column = "click"
)";

struct Model {
  mtrank::Config config = mtrank::parse_config(kConfig, "fuzz.toml");
  mtrank::data::Preprocessor pre{config};
  mtrank::serve::RequestParser parser{config, false, 1000};
  mtrank::data::ColumnBinding binding;
  Model() {
    const std::string path = "/tmp/mtrank-fuzz-train.csv";
    std::ofstream(path) << "user,item,app,tags,price,age,position,click\nu1,i1,maps,a|b,3.5,20,1,1\n"
                        << "u2,i2,mail,b,10,30,2,0\nu1,i3,maps,,0,40,3,1\n";
    pre.fit(path);
    binding = pre.bind(parser.columns(), "request", false);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Model* model = new Model();
  const std::string body(reinterpret_cast<const char*>(data), size);
  mtrank::serve::ParsedRequest request;
  try {
    model->parser.parse(body, request);
    mtrank::data::FeaturizedData out(model->pre.num_categorical(), model->pre.num_bags(), model->pre.num_dense(),
                                     model->pre.num_tasks());
    model->parser.featurize(model->pre, model->binding, request, 0, request.candidates, out);
    if (out.rows() != request.candidates) __builtin_trap();
    // The recommender's split (serve/recommender.cpp): the columns every
    // candidate sets (a catalog's) and the bias columns form the item side,
    // written once per candidate, then copied. The rows must equal the
    // whole featurization exactly, and neither part may fail where it did not.
    const std::size_t ncols = model->parser.columns().size();
    std::vector<char> item_columns(ncols, 0);
    for (std::size_t k = 0; k < ncols; ++k) {
      bool all = request.candidates > 0;
      for (std::int64_t i = 0; i < request.candidates && all; ++i) all = request.set[static_cast<std::size_t>(i) * ncols + k] != 0;
      item_columns[k] = all || model->parser.bias_columns()[k];
    }
    const auto split = model->pre.split_features(model->binding, item_columns);
    mtrank::data::FeaturizedData items(model->pre.num_categorical(), model->pre.num_bags(), model->pre.num_dense(),
                                       model->pre.num_tasks());
    mtrank::data::FeaturizedData copied = items;
    const mtrank::serve::ItemSide write{&split, nullptr, nullptr};
    std::vector<std::int64_t> row_of(static_cast<std::size_t>(request.candidates));
    for (std::int64_t i = 0; i < request.candidates; ++i) row_of[static_cast<std::size_t>(i)] = i;
    const mtrank::serve::ItemSide read{&split, &items, row_of.data()};
    try {
      model->parser.featurize(model->pre, model->binding, request, 0, request.candidates, items, &write);
      model->parser.featurize(model->pre, model->binding, request, 0, request.candidates, copied, &read);
    } catch (const mtrank::serve::RequestError&) {
      __builtin_trap();
    }
    if (copied.categorical != out.categorical || copied.dense != out.dense || copied.bag_ids != out.bag_ids ||
        copied.bag_offsets != out.bag_offsets || copied.bag_weights != out.bag_weights || copied.rows() != out.rows())
      __builtin_trap();
  } catch (const mtrank::serve::RequestError&) {
  }
  try {
    mtrank::serve::RecommendRequest fields;
    model->parser.parse_recommend(body, 500, fields, request);
    if (fields.user.has_value() == fields.history.has_value()) __builtin_trap();  // exactly one of them
    if (fields.k < 1 || fields.retrieve < fields.k || fields.retrieve > 500) __builtin_trap();
    if (fields.history && fields.history->empty()) __builtin_trap();
    if (request.candidates != 0 || request.context.size() != model->parser.columns().size()) __builtin_trap();
  } catch (const mtrank::serve::RequestError&) {
  }
  try {
    const mtrank::serve::EventRequest event = mtrank::serve::parse_event(body);
    for (const std::string* id : {&event.user, &event.item})
      if (id->empty() || id->size() > mtrank::serve::kMaxIdBytes) __builtin_trap();
    if (event.event_id.size() > mtrank::serve::kMaxIdBytes) __builtin_trap();
  } catch (const mtrank::serve::RequestError&) {
  }
  return 0;
}
