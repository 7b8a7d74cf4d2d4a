// libFuzzer target over request decoding and validation (docs/testing.md).
//
// Every input is used three ways:
//   1. as a serialized inference.ModelInferRequest, decoded against each of
//      the fixed specs below;
//   2. as the choices of a request generator that mostly builds plausible
//      requests for one spec (right names, datatypes and shapes, off by a
//      little), so that decoding is reached beyond the first check;
//   3. as config.pbtxt text, through ParseModelConfig and BuildModelSpec; a
//      spec that builds is then fed generated requests too.
// Besides crashes and sanitizer findings, each result is checked against the
// codec's contract (CheckDecoded, CheckSpec): a violation aborts, which
// libFuzzer reports like a crash.
//
//   request_fuzzer --write-seeds=DIR   writes the seed corpus (tests/fuzz/corpus) and exits

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "google/protobuf/stubs/logging.h"
#include "inference/grpc_service.pb.h"
#include "server/core/datatype.h"
#include "server/core/model_config.h"
#include "server/core/tensor_codec.h"

namespace dytserve {
namespace {

using inference::ModelInferRequest;

// The ViT of the default repository: fixed dims, batched.
constexpr char kVitConfig[] = R"pb(
name: "vit"
max_batch_size: 64
input { name: "pixel_values" data_type: TYPE_FP32 dims: [1, 8, 8] }
output { name: "logits" data_type: TYPE_FP32 dims: [10] }
dynamic_batching { max_queue_delay_us: 2000 max_queue_size: 1024 }
)pb";

// A ragged decoder: variable lengths, pad values, a generated mask that
// clients must not send, and outputs that follow an input's length.
constexpr char kLlamaConfig[] = R"pb(
name: "llama"
max_batch_size: 16
input { name: "input_ids" data_type: TYPE_INT64 dims: [-1] pad_value: 0 }
input { name: "attention_mask" data_type: TYPE_INT64 dims: [-1] mask_of: "input_ids" }
input { name: "token_type_ids" data_type: TYPE_INT32 dims: [-1] pad_value: 1 }
output { name: "logits" data_type: TYPE_FP32 dims: [-1, 256] follows { input: "input_ids" input_dim: 0 output_dim: 0 } }
output { name: "hidden" data_type: TYPE_FP16 dims: [-1, 8] follows { input: "input_ids" input_dim: 0 output_dim: 0 } }
dynamic_batching { ragged_batching: true length_bucket: 32 }
)pb";

// No batch dimension.
constexpr char kUnbatchedConfig[] = R"pb(
name: "unbatched"
max_batch_size: 0
input { name: "x" data_type: TYPE_FP64 dims: [2, -1] }
input { name: "flags" data_type: TYPE_BOOL dims: [3] }
output { name: "y" data_type: TYPE_FP64 dims: [-1] }
)pb";

// One input of every datatype, so that every typed-contents path is reached.
constexpr char kEveryTypeConfig[] = R"pb(
name: "every_type"
max_batch_size: 4
input { name: "b" data_type: TYPE_BOOL dims: [2] }
input { name: "u8" data_type: TYPE_UINT8 dims: [2] }
input { name: "i8" data_type: TYPE_INT8 dims: [2] }
input { name: "i16" data_type: TYPE_INT16 dims: [2] }
input { name: "i32" data_type: TYPE_INT32 dims: [2] }
input { name: "i64" data_type: TYPE_INT64 dims: [2] }
input { name: "f16" data_type: TYPE_FP16 dims: [2] }
input { name: "bf16" data_type: TYPE_BF16 dims: [2] }
input { name: "f32" data_type: TYPE_FP32 dims: [2] }
input { name: "f64" data_type: TYPE_FP64 dims: [2] }
output { name: "out" data_type: TYPE_FP32 dims: [1] }
)pb";

// Triton's schema for a PyTorch model (read by triton_config.cc).
constexpr char kTritonConfig[] = R"pb(
name: "triton"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 default_queue_policy { max_queue_size: 4 } }
instance_group [ { count: 2, kind: KIND_CPU } ]
parameters: { key: "k" value: { string_value: "v" } }
)pb";

struct NamedConfig {
  const char* name;
  const char* text;
};
constexpr NamedConfig kConfigs[] = {
    {"vit", kVitConfig}, {"llama", kLlamaConfig}, {"unbatched", kUnbatchedConfig}, {"every_type", kEveryTypeConfig},
    {"triton", kTritonConfig}};

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzzer: contract violated: %s\n", what.c_str());
  std::abort();
}

void Check(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

const std::vector<ModelSpec>& Specs() {
  static const std::vector<ModelSpec>* specs = [] {
    auto* out = new std::vector<ModelSpec>;
    for (const NamedConfig& c : kConfigs) {
      absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(c.text, c.name);
      Check(config.ok(), std::string("fixed config ") + c.name + " parses");
      absl::StatusOr<ModelSpec> spec = BuildModelSpec(*std::move(config), c.name);
      Check(spec.ok(), std::string("fixed config ") + c.name + " builds: " + std::string(spec.status().message()));
      out->push_back(*std::move(spec));
    }
    return out;
  }();
  return *specs;
}

constexpr const char* kWireTypes[] = {"BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64",
                                      "FP16", "BF16",  "FP32", "FP64",  "UINT16", "BYTES"};

// The contract of DecodeRequest (tensor_codec.h) on one result.
void CheckDecoded(const ModelInferRequest& request, const ModelSpec& spec,
                  const absl::StatusOr<DecodedRequest>& decoded) {
  if (!decoded.ok()) {
    Check(decoded.status().code() == absl::StatusCode::kInvalidArgument,
          "a rejection is INVALID_ARGUMENT, got: " + decoded.status().ToString());
    Check(!decoded.status().message().empty(), "a rejection says why");
    return;
  }
  const DecodedRequest& d = *decoded;
  Check(d.inputs.size() == spec.inputs.size(), "one tensor slot per config input");
  if (spec.batched()) {
    Check(d.rows >= 1 && d.rows <= spec.max_batch_size, "rows within [1, max_batch_size]");
  } else {
    Check(d.rows == 1, "unbatched requests have one row");
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const TensorSpec& ts = spec.inputs[i];
    const at::Tensor& t = d.inputs[i];
    if (ts.generated()) {
      Check(!t.defined(), "generated input '" + ts.name + "' is left to the batch");
      continue;
    }
    Check(t.defined(), "input '" + ts.name + "' is decoded");
    Check(t.scalar_type() == ScalarTypeOf(ts.type), "input '" + ts.name + "' has the config's type");
    const std::vector<int64_t> wire = spec.WireShape(ts);
    Check(t.dim() == static_cast<int64_t>(wire.size()), "input '" + ts.name + "' has the config's rank");
    for (size_t k = 0; k < wire.size(); ++k) {
      if (wire[k] != -1) Check(t.size(k) == wire[k], "input '" + ts.name + "' matches fixed dims");
      if (wire[k] == -1) Check(t.size(k) >= 1, "input '" + ts.name + "' has no empty variable dim");
    }
    if (spec.batched()) Check(t.size(0) == d.rows, "input '" + ts.name + "' has `rows` rows");
    Check(t.is_contiguous(), "input '" + ts.name + "' is contiguous");
    if (ts.type == DataType::kBool) {
      // A bool holding anything but 0 or 1 is undefined behaviour in every
      // kernel that reads it.
      const std::string bytes = ToRawBytes(t);
      for (char c : bytes) Check(c == 0 || c == 1, "BOOL input '" + ts.name + "' holds only 0 and 1");
    }
  }
  // Raw contents come back byte for byte.
  if (request.raw_input_contents_size() > 0) {
    for (int j = 0; j < request.inputs_size(); ++j) {
      const TensorSpec* ts = spec.FindInput(request.inputs(j).name());
      Check(ts != nullptr, "an accepted input is in the spec");
      const at::Tensor& t = d.inputs[ts - spec.inputs.data()];
      Check(ToRawBytes(t) == request.raw_input_contents(j), "raw input '" + ts->name + "' round-trips");
    }
  }
  std::set<int> outputs;
  for (int o : d.outputs) {
    Check(o >= 0 && o < static_cast<int>(spec.outputs.size()), "output index in range");
    Check(outputs.insert(o).second, "each output at most once");
  }
  if (request.outputs_size() == 0) {
    Check(d.outputs.size() == spec.outputs.size(), "no outputs requested means all of them");
  } else {
    Check(d.outputs.size() == static_cast<size_t>(request.outputs_size()), "the outputs asked for");
  }
}

// The contract of BuildModelSpec (model_config.h) on a spec it accepted.
void CheckSpec(const ModelSpec& spec) {
  Check(!spec.inputs.empty() && !spec.outputs.empty(), "a spec has inputs and outputs");
  Check(spec.max_batch_size >= 0, "max_batch_size >= 0");
  Check(spec.instance_count >= 1, "at least one instance");
  std::set<std::string> names;
  for (const TensorSpec& t : spec.inputs) {
    Check(!t.name.empty() && names.insert(t.name).second, "input names are unique and set");
    for (int64_t dim : t.dims) Check(dim == -1 || dim > 0, "input dims are -1 or positive");
    if (t.generated()) {
      Check(t.mask_of < static_cast<int>(spec.inputs.size()), "mask_of in range");
      Check(!spec.inputs[t.mask_of].generated(), "a mask masks an ordinary input");
      Check(spec.batched(), "masks only in batched models");
    }
  }
  for (const TensorSpec& t : spec.outputs) {
    for (int64_t dim : t.dims) Check(dim == -1 || dim > 0, "output dims are -1 or positive");
    if (t.follows_input >= 0) {
      Check(t.follows_input < static_cast<int>(spec.inputs.size()), "follows input in range");
      const TensorSpec& in = spec.inputs[t.follows_input];
      Check(t.follows_input_dim >= 0 && t.follows_input_dim < static_cast<int>(in.dims.size()) &&
                in.dims[t.follows_input_dim] == -1,
            "follows a variable input dim");
      Check(t.follows_output_dim >= 0 && t.follows_output_dim < static_cast<int>(t.dims.size()) &&
                t.dims[t.follows_output_dim] == -1,
            "follows into a variable output dim");
    }
  }
}

// Typed contents for `count` values of `type`, drawn from the provider.
void FillTyped(FuzzedDataProvider& fdp, const std::string& datatype, int64_t count,
               inference::InferTensorContents* c) {
  for (int64_t i = 0; i < count && fdp.remaining_bytes() > 0; ++i) {
    if (datatype == "BOOL") c->add_bool_contents(fdp.ConsumeBool());
    else if (datatype == "INT64") c->add_int64_contents(fdp.ConsumeIntegral<int64_t>());
    else if (datatype == "UINT8") c->add_uint_contents(fdp.ConsumeIntegral<uint32_t>());
    else if (datatype == "FP32") c->add_fp32_contents(fdp.ConsumeFloatingPoint<float>());
    else if (datatype == "FP64") c->add_fp64_contents(fdp.ConsumeFloatingPoint<double>());
    else c->add_int_contents(fdp.ConsumeIntegral<int32_t>());
  }
}

// A request for `spec`, mostly well-formed, with every part open to the data.
ModelInferRequest GenerateRequest(FuzzedDataProvider& fdp, const ModelSpec& spec) {
  ModelInferRequest request;
  const bool raw = fdp.ConsumeBool();
  const int64_t rows = spec.batched() ? fdp.ConsumeIntegralInRange<int64_t>(0, spec.max_batch_size + 1) : 1;
  for (const TensorSpec& ts : spec.inputs) {
    const uint8_t mutation = fdp.ConsumeIntegral<uint8_t>();
    if (mutation == 0) continue;                          // leave it out
    if (ts.generated() && mutation != 1) continue;        // usually respect the mask
    auto* in = request.add_inputs();
    in->set_name(mutation == 2 ? fdp.ConsumeRandomLengthString(16) : ts.name);
    in->set_datatype(mutation == 3 ? kWireTypes[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kWireTypes) - 1)]
                                   : std::string(DataTypeName(ts.type)));
    std::vector<int64_t> shape = spec.WireShape(ts);
    if (spec.batched()) shape[0] = rows;
    for (size_t k = spec.batched() ? 1 : 0; k < shape.size(); ++k) {
      if (shape[k] == -1) shape[k] = fdp.ConsumeIntegralInRange<int64_t>(0, 40);
    }
    if (mutation == 4 && !shape.empty()) shape[fdp.ConsumeIntegralInRange<size_t>(0, shape.size() - 1)] =
        fdp.ConsumeIntegral<int64_t>();
    if (mutation == 5) shape.push_back(1);
    if (mutation == 6 && !shape.empty()) shape.pop_back();
    for (int64_t d : shape) in->add_shape(d);

    // Values to send, capped: the data, not the shape, bounds the request.
    int64_t count = 1;
    for (int64_t d : shape) count = d <= 0 ? 0 : std::min<int64_t>(count * std::min<int64_t>(d, 4096), 4096);
    if (mutation == 7) count += fdp.ConsumeIntegralInRange<int64_t>(-2, 2);
    const std::string& datatype = in->datatype();
    if (raw) {
      const absl::StatusOr<DataType> type = ParseDataType(datatype);
      const size_t size = type.ok() ? static_cast<size_t>(std::max<int64_t>(count, 0)) * DataTypeSize(*type) : 4;
      std::string bytes = fdp.ConsumeBytesAsString(size);
      if (datatype == "BOOL" && mutation != 8) {
        for (char& b : bytes) b &= 1;
      }
      request.add_raw_input_contents(std::move(bytes));
    } else {
      FillTyped(fdp, mutation == 9 ? "FP64" : datatype, count, in->mutable_contents());
    }
  }
  if (raw && fdp.ConsumeIntegral<uint8_t>() == 0) request.add_raw_input_contents("");
  const int outputs = fdp.ConsumeIntegralInRange<int>(0, 3);
  for (int o = 0; o < outputs; ++o) {
    const size_t pick = fdp.ConsumeIntegralInRange<size_t>(0, spec.outputs.size());
    request.add_outputs()->set_name(pick < spec.outputs.size() ? spec.outputs[pick].name
                                                                : fdp.ConsumeRandomLengthString(8));
  }
  return request;
}

void DecodeAndCheck(const ModelInferRequest& request, const ModelSpec& spec) {
  CheckDecoded(request, spec, DecodeRequest(request, spec));
}

// --write-seeds: small valid and near-valid requests for each fixed spec,
// and the configs themselves as text.
std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  const std::vector<ModelSpec>& specs = Specs();
  auto add_request = [&](const std::string& name, const ModelInferRequest& request) {
    std::string bytes;
    Check(request.SerializeToString(&bytes), "a seed serializes");
    seeds.emplace_back(name + ".bin", bytes);
  };
  auto raw_input = [](ModelInferRequest* r, const std::string& name, const std::string& type,
                      std::vector<int64_t> shape, std::string bytes) {
    auto* in = r->add_inputs();
    in->set_name(name);
    in->set_datatype(type);
    for (int64_t d : shape) in->add_shape(d);
    r->add_raw_input_contents(std::move(bytes));
  };

  {  // vit: typed, raw, and a wrong shape
    ModelInferRequest typed;
    auto* in = typed.add_inputs();
    in->set_name("pixel_values");
    in->set_datatype("FP32");
    for (int64_t d : {1, 1, 8, 8}) in->add_shape(d);
    for (int i = 0; i < 64; ++i) in->mutable_contents()->add_fp32_contents(i * 0.25f);
    typed.add_outputs()->set_name("logits");
    add_request("vit_typed", typed);

    ModelInferRequest raw;
    raw_input(&raw, "pixel_values", "FP32", {2, 1, 8, 8}, std::string(2 * 64 * 4, '\0'));
    add_request("vit_raw_batch2", raw);

    ModelInferRequest wrong_shape;
    raw_input(&wrong_shape, "pixel_values", "FP32", {1, 8, 8}, std::string(64 * 4, '\0'));
    add_request("vit_rank_mismatch", wrong_shape);

    ModelInferRequest short_raw;
    raw_input(&short_raw, "pixel_values", "FP32", {1, 1, 8, 8}, std::string(10, '\0'));
    add_request("vit_raw_too_short", short_raw);
  }
  {  // llama: ragged typed, raw, a mask the client must not send
    ModelInferRequest typed;
    auto* ids = typed.add_inputs();
    ids->set_name("input_ids");
    ids->set_datatype("INT64");
    for (int64_t d : {2, 5}) ids->add_shape(d);
    for (int i = 0; i < 10; ++i) ids->mutable_contents()->add_int64_contents(i * 7);
    auto* types = typed.add_inputs();
    types->set_name("token_type_ids");
    types->set_datatype("INT32");
    for (int64_t d : {2, 5}) types->add_shape(d);
    for (int i = 0; i < 10; ++i) types->mutable_contents()->add_int_contents(i % 2);
    add_request("llama_typed", typed);

    ModelInferRequest raw;
    raw_input(&raw, "input_ids", "INT64", {1, 3}, std::string(3 * 8, '\1'));
    raw_input(&raw, "token_type_ids", "INT32", {1, 3}, std::string(3 * 4, '\0'));
    raw.add_outputs()->set_name("hidden");
    add_request("llama_raw", raw);

    ModelInferRequest mask = raw;
    raw_input(&mask, "attention_mask", "INT64", {1, 3}, std::string(3 * 8, '\0'));
    add_request("llama_sends_mask", mask);

    ModelInferRequest rows;
    raw_input(&rows, "input_ids", "INT64", {2, 3}, std::string(6 * 8, '\0'));
    raw_input(&rows, "token_type_ids", "INT32", {1, 3}, std::string(3 * 4, '\0'));
    add_request("llama_rows_differ", rows);
  }
  {  // unbatched: typed, with a BOOL input; and one with a batch dim it must not have
    ModelInferRequest typed;
    auto* x = typed.add_inputs();
    x->set_name("x");
    x->set_datatype("FP64");
    for (int64_t d : {2, 3}) x->add_shape(d);
    for (int i = 0; i < 6; ++i) x->mutable_contents()->add_fp64_contents(-i * 1.5);
    auto* flags = typed.add_inputs();
    flags->set_name("flags");
    flags->set_datatype("BOOL");
    flags->add_shape(3);
    for (bool b : {true, false, true}) flags->mutable_contents()->add_bool_contents(b);
    add_request("unbatched_typed", typed);

    ModelInferRequest batched;
    raw_input(&batched, "x", "FP64", {1, 2, 1}, std::string(2 * 8, '\0'));
    raw_input(&batched, "flags", "BOOL", {1, 3}, std::string("\1\0\1", 3));
    add_request("unbatched_with_batch_dim", batched);
  }
  {  // every type, raw; and INT8 typed values out of range
    ModelInferRequest raw;
    for (const TensorSpec& ts : specs[3].inputs) {
      std::string bytes(2 * DataTypeSize(ts.type), '\0');
      raw_input(&raw, ts.name, std::string(DataTypeName(ts.type)), {1, 2}, bytes);
    }
    add_request("every_type_raw", raw);

    ModelInferRequest range;
    auto* i8 = range.add_inputs();
    i8->set_name("i8");
    i8->set_datatype("INT8");
    for (int64_t d : {1, 2}) i8->add_shape(d);
    i8->mutable_contents()->add_int_contents(127);
    i8->mutable_contents()->add_int_contents(128);
    add_request("every_type_int8_out_of_range", range);
  }
  for (const NamedConfig& c : kConfigs) seeds.emplace_back(std::string("config_") + c.name + ".pbtxt", c.text);
  return seeds;
}

}  // namespace
}  // namespace dytserve

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = (*argv)[i];
    if (!absl::StartsWith(arg, "--write-seeds=")) continue;
    const std::filesystem::path dir = arg.substr(std::strlen("--write-seeds="));
    std::filesystem::create_directories(dir);
    for (const auto& [name, bytes] : dytserve::Seeds()) {
      std::ofstream out(dir / name, std::ios::binary);
      out << bytes;
      if (!out) {
        std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
        std::exit(1);
      }
    }
    std::exit(0);
  }
  // Protobuf logs every string field with invalid UTF-8 it refuses to parse;
  // for random input that is most of them, and the log would bury a finding.
  google::protobuf::SetLogHandler(nullptr);
  dytserve::Specs();  // built once, outside the measured runs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dytserve;
  const std::vector<ModelSpec>& specs = Specs();

  ModelInferRequest parsed;
  if (parsed.ParseFromArray(data, static_cast<int>(size))) {
    for (const ModelSpec& spec : specs) DecodeAndCheck(parsed, spec);
  }

  {
    FuzzedDataProvider fdp(data, size);
    const ModelSpec& spec = specs[fdp.ConsumeIntegralInRange<size_t>(0, specs.size() - 1)];
    DecodeAndCheck(GenerateRequest(fdp, spec), spec);
  }

  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(text, "fuzz");
  if (!config.ok()) {
    Check(config.status().code() == absl::StatusCode::kInvalidArgument, "config syntax errors are INVALID_ARGUMENT");
    return 0;
  }
  const std::string name = config->name().empty() ? "fuzz" : config->name();
  absl::StatusOr<ModelSpec> spec = BuildModelSpec(*std::move(config), name);
  if (!spec.ok()) {
    Check(spec.status().code() == absl::StatusCode::kInvalidArgument, "config errors are INVALID_ARGUMENT");
    return 0;
  }
  CheckSpec(*spec);
  FuzzedDataProvider fdp(data, size);
  DecodeAndCheck(GenerateRequest(fdp, *spec), *spec);
  return 0;
}
