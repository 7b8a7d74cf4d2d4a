#include "server/core/aoti_backend.h"

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/inductor/aoti_runner/model_container_runner.h>
#include <torch/version.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/core/datatype.h"
#include "server/core/device.h"
#include "server/core/log.h"

namespace dytserve {
namespace {

namespace pb = google::protobuf;
using Metadata = std::map<std::string, std::string>;

absl::StatusOr<pb::Value> ParseJson(absl::string_view json, absl::string_view what) {
  pb::Value value;
  if (!pb::util::JsonStringToMessage(std::string(json), &value).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not JSON: ", json.substr(0, 200)));
  }
  return value;
}

// A node of a pytree spec (torch.utils._pytree, serialized as JSON protocol 1):
// a leaf (one tensor) or a container whose children are nodes.
struct SpecNode {
  std::string type;                  // "builtins.tuple", "builtins.dict", ...; empty for a leaf
  std::vector<std::string> keys;     // dict keys, from the node's context
  std::vector<SpecNode> children;
  bool leaf() const { return type.empty(); }
  int Leaves() const {
    if (leaf()) return 1;
    int n = 0;
    for (const SpecNode& c : children) n += c.Leaves();
    return n;
  }
};

absl::StatusOr<SpecNode> ParseSpecNode(const pb::Value& v) {
  if (!v.has_struct_value()) return absl::InvalidArgumentError("a pytree node is not an object");
  const auto& fields = v.struct_value().fields();
  SpecNode node;
  if (auto it = fields.find("type"); it != fields.end() && it->second.has_string_value()) {
    node.type = it->second.string_value();
  }
  if (node.type == "builtins.dict" || absl::StrContains(node.type, "OrderedDict")) {
    auto it = fields.find("context");
    if (it == fields.end() || !it->second.has_string_value()) {
      return absl::InvalidArgumentError("a dict node has no context");
    }
    absl::StatusOr<pb::Value> keys = ParseJson(it->second.string_value(), "a dict node's context");
    if (!keys.ok()) return keys.status();
    for (const pb::Value& k : keys->list_value().values()) {
      if (!k.has_string_value()) return absl::InvalidArgumentError("a dict node has a key that is not a string");
      node.keys.push_back(k.string_value());
    }
  }
  if (auto it = fields.find("children_spec"); it != fields.end()) {
    for (const pb::Value& c : it->second.list_value().values()) {
      absl::StatusOr<SpecNode> child = ParseSpecNode(c);
      if (!child.ok()) return child.status();
      node.children.push_back(*std::move(child));
    }
  }
  if (!node.keys.empty() && node.keys.size() != node.children.size()) {
    return absl::InvalidArgumentError("a dict node's keys and children differ in number");
  }
  return node;
}

// "[1, {...}]" -> the root node.
absl::StatusOr<SpecNode> ParseTreeSpec(const std::string& json) {
  absl::StatusOr<pb::Value> value = ParseJson(json, "a call spec");
  if (!value.ok()) return value.status();
  const auto& list = value->list_value().values();
  if (list.size() != 2 || list[0].number_value() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("unknown pytree spec protocol: ", json.substr(0, 100)));
  }
  return ParseSpecNode(list[1]);
}

std::string Names(const std::vector<std::string>& names) {
  return names.empty() ? "none" : absl::StrCat("'", absl::StrJoin(names, "', '"), "'");
}

// Maps the package's flattened inputs and outputs to the config's, from its
// call spec. input_order[p]: the config input at flattened position p;
// output_order[i]: the flattened position of config output i.
struct IoOrder {
  std::vector<int> input_order;
  std::vector<int> output_order;
};

absl::StatusOr<IoOrder> OrderFromCallSpec(const std::vector<std::string>& call_spec, const ModelSpec& spec) {
  if (call_spec.size() != 2) return ModelError(spec, "model.pt2", "the package has no call spec (in, out)");
  absl::StatusOr<SpecNode> in = ParseTreeSpec(call_spec[0]);
  absl::StatusOr<SpecNode> out = ParseTreeSpec(call_spec[1]);
  if (!in.ok() || !out.ok()) {
    return ModelError(spec, "model.pt2",
                      absl::StrCat("cannot read its call spec: ", (in.ok() ? out.status() : in.status()).message()));
  }
  if (in->children.size() != 2) return ModelError(spec, "model.pt2", "its input spec is not (args, kwargs)");
  const SpecNode& args = in->children[0];
  const SpecNode& kwargs = in->children[1];
  const int positional = args.Leaves();
  const int total = positional + kwargs.Leaves();
  IoOrder order;
  if (total != static_cast<int>(spec.inputs.size())) {
    return ModelError(spec, "input",
                      absl::StrCat("the config names ", spec.inputs.size(), " input(s), the package takes ", total,
                                   " tensor(s): ", positional, " positional and keyword ", Names(kwargs.keys)));
  }
  for (int p = 0; p < positional; ++p) order.input_order.push_back(p);
  for (size_t k = 0; k < kwargs.keys.size(); ++k) {
    if (!kwargs.children[k].leaf()) {
      return ModelError(spec, "input", absl::StrCat("the package's keyword argument '", kwargs.keys[k],
                                                    "' is not one tensor"));
    }
    int found = -1;
    for (size_t i = positional; i < spec.inputs.size(); ++i) {
      if (spec.inputs[i].name == kwargs.keys[k]) found = static_cast<int>(i);
    }
    if (found < 0) {
      return ModelError(spec, "input",
                        absl::StrCat("the package takes keyword argument '", kwargs.keys[k],
                                     "', which is not among the config's inputs after the first ", positional));
    }
    order.input_order.push_back(found);
  }

  if (out->Leaves() != static_cast<int>(spec.outputs.size())) {
    return ModelError(spec, "output", absl::StrCat("the config names ", spec.outputs.size(),
                                                   " output(s), the package returns ", out->Leaves(), " tensor(s)"));
  }
  if (!out->keys.empty()) {
    for (const TensorSpec& o : spec.outputs) {
      int found = -1;
      for (size_t k = 0; k < out->keys.size(); ++k) {
        if (out->keys[k] == o.name && out->children[k].leaf()) found = static_cast<int>(k);
      }
      if (found < 0) {
        return ModelError(spec, absl::StrCat("output '", o.name, "'"),
                          absl::StrCat("the package returns a dict of ", Names(out->keys)));
      }
      order.output_order.push_back(found);
    }
  } else {
    for (size_t i = 0; i < spec.outputs.size(); ++i) order.output_order.push_back(static_cast<int>(i));
  }
  return order;
}

// The exporter's description of one tensor, checked against the config's.
absl::Status CheckTensors(const ModelSpec& spec, const std::vector<TensorSpec>& configured, absl::string_view kind,
                          const std::string& json) {
  absl::StatusOr<pb::Value> value = ParseJson(json, absl::StrCat("metadata ", kind));
  if (!value.ok()) return ModelError(spec, "model.pt2", value.status().message());
  std::vector<std::string> names;
  for (const pb::Value& t : value->list_value().values()) {
    names.push_back(t.struct_value().fields().count("name") ? t.struct_value().fields().at("name").string_value() : "");
  }
  for (size_t i = 0; i < configured.size(); ++i) {
    const TensorSpec& c = configured[i];
    if (c.generated()) continue;  // a mask the server makes; described like any input, checked by the sample run
    const std::string field = absl::StrCat(kind, "[", i, "] '", c.name, "'");
    const pb::Value* described = nullptr;
    for (const pb::Value& t : value->list_value().values()) {
      auto it = t.struct_value().fields().find("name");
      if (it != t.struct_value().fields().end() && it->second.string_value() == c.name) described = &t;
    }
    if (described == nullptr) {
      return ModelError(spec, field, absl::StrCat("the package was exported with ", kind, "s ", Names(names)));
    }
    const auto& f = described->struct_value().fields();
    const std::string datatype = f.count("datatype") ? f.at("datatype").string_value() : "";
    if (datatype != DataTypeName(c.type)) {
      return ModelError(spec, absl::StrCat(field, ".data_type"),
                        absl::StrCat("the package's is ", datatype, ", the config says ", DataTypeName(c.type)));
    }
    std::vector<int64_t> shape;
    if (f.count("shape")) {
      for (const pb::Value& d : f.at("shape").list_value().values()) shape.push_back(static_cast<int64_t>(d.number_value()));
    }
    const std::vector<int64_t> wire = spec.WireShape(c);
    bool same = shape.size() == wire.size();
    for (size_t d = 0; same && d < wire.size(); ++d) same = shape[d] == wire[d];
    if (!same) {
      return ModelError(spec, absl::StrCat(field, ".dims"),
                        absl::StrCat("the package's shape is [", absl::StrJoin(shape, ", "),
                                     "], the config's (batch first, -1 variable) is [", absl::StrJoin(wire, ", "),
                                     "]"));
    }
  }
  return absl::OkStatus();
}

bool HostHas(const char* feature) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (absl::string_view(feature) == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (absl::string_view(feature) == "avx512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }
#endif
  return false;
}

// What can be refused from the metadata alone, before the package's shared
// object is loaded (it would fail there, with a far less helpful message,
// or worse, run an instruction this CPU does not have).
absl::Status CheckMetadata(const ModelSpec& spec, const Metadata& metadata) {
  auto get = [&metadata](const std::string& key) {
    auto it = metadata.find(key);
    return it == metadata.end() ? std::string() : it->second;
  };
  const std::string machine = get("AOTI_MACHINE");
#if defined(__x86_64__)
  if (!machine.empty() && machine != "x86_64") {
    return ModelError(spec, "model.pt2", absl::StrCat("the package was compiled for ", machine, ", this host is x86_64"));
  }
#endif
  const std::string isa = get("AOTI_CPU_ISA");
  if (get("AOTI_DEVICE_KEY") == "cpu" && !isa.empty()) {
    const bool ok = absl::StartsWith(isa, "AVX512") ? HostHas("avx512")
                    : isa == "AVX2"                 ? HostHas("avx2")
                                                    : isa == "INVALID";
    if (!ok) {
      return ModelError(spec, "model.pt2",
                        absl::StrCat("the package's CPU kernels use ", isa,
                                     ", which this host's CPU lacks; export it on (or for) a CPU like this one"));
    }
  }
  const std::string exported_by = get(kAotiTorchVersionKey);
  if (!exported_by.empty()) {
    const std::string version = std::vector<std::string>(absl::StrSplit(exported_by, '+')).front();
    if (version != TORCH_VERSION) {
      return ModelError(spec, "model.pt2",
                        absl::StrCat("exported by PyTorch ", exported_by, ", this server runs LibTorch ",
                                     TORCH_VERSION, "; AOTInductor packages load only in the version that made them"));
    }
  }
  const std::string max_batch = get(kAotiMaxBatchKey);
  int64_t package_max = 0;
  if (!max_batch.empty() && absl::SimpleAtoi(max_batch, &package_max) && spec.max_batch_size > package_max) {
    return ModelError(spec, "max_batch_size",
                      absl::StrCat(spec.max_batch_size, ", but the package was exported for batches of at most ",
                                   package_max, " rows"));
  }
  if (const std::string inputs = get(kAotiInputsKey); !inputs.empty()) {
    if (absl::Status s = CheckTensors(spec, spec.inputs, "input", inputs); !s.ok()) return s;
  }
  if (const std::string outputs = get(kAotiOutputsKey); !outputs.empty()) {
    if (absl::Status s = CheckTensors(spec, spec.outputs, "output", outputs); !s.ok()) return s;
  }
  if (get(kAotiInputsKey).empty()) {
    LogWarning(absl::StrCat("model '", spec.name, "': model.pt2 does not describe its inputs (it was not exported by "
                            "models/dytserve_models/aoti.py): input data types and dims cannot be checked against "
                            "the config before it runs, only their count, names and order"));
  }
  return absl::OkStatus();
}

class AotiBackend final : public ModelBackend {
 public:
  AotiBackend(std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader, IoOrder order, BackendFacts facts)
      : loader_(std::move(loader)), order_(std::move(order)), facts_(facts) {}

  absl::StatusOr<std::vector<at::Tensor>> Forward(std::vector<at::Tensor> inputs) override {
    // The package's kernels index their inputs as dense row-major arrays.
    std::vector<at::Tensor> flat;
    flat.reserve(inputs.size());
    for (int config_index : order_.input_order) flat.push_back(inputs[config_index].contiguous());
    std::vector<at::Tensor> results;
    try {
      results = loader_->boxed_run(std::move(flat));
    } catch (const std::exception& e) {
      // AOTInductor's C shim prints the kernel's own message to stderr (the
      // server's log) and throws only "API call failed at ...".
      return ForwardFailure(e);
    }
    std::vector<at::Tensor> outputs;
    outputs.reserve(order_.output_order.size());
    for (int flat_index : order_.output_order) {
      if (flat_index >= static_cast<int>(results.size())) {
        return absl::InternalError(absl::StrCat("the package returned ", results.size(), " tensors"));
      }
      outputs.push_back(std::move(results[flat_index]));
    }
    return outputs;
  }

  const BackendFacts& facts() const override { return facts_; }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  const IoOrder order_;
  const BackendFacts facts_;
};

}  // namespace

absl::StatusOr<Metadata> ReadAotiMetadata(const std::filesystem::path& file) {
  try {
    std::unordered_map<std::string, std::string> raw =
        torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(file.string(), "model");
    return Metadata(raw.begin(), raw.end());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), " is not an AOTInductor package: ", ForwardFailure(e).message()));
  }
}

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadAotiBackend(const std::filesystem::path& file,
                                                              const ModelSpec& spec) {
  absl::StatusOr<Metadata> metadata = ReadAotiMetadata(file);
  if (!metadata.ok()) return ModelError(spec, "model.pt2", metadata.status().message());
  const std::string device_key = metadata->count("AOTI_DEVICE_KEY") ? metadata->at("AOTI_DEVICE_KEY") : "";
  std::optional<c10::DeviceType> compiled_for;
  if (device_key == "cpu") {
    compiled_for = c10::DeviceType::CPU;
  } else if (device_key == "cuda") {
    compiled_for = c10::DeviceType::CUDA;
  } else {
    return ModelError(spec, "model.pt2",
                      absl::StrCat("the package was compiled for device '", device_key,
                                   "'; this server runs cpu and cuda packages"));
  }
  absl::StatusOr<c10::Device> device = ResolveDevice(spec, compiled_for);
  if (!device.ok()) return device.status();
  if (absl::Status s = CheckMetadata(spec, *metadata); !s.ok()) return s;

  BackendFacts facts;
  facts.format = ModelFormat::kAotInductor;
  facts.device = *device;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  try {
    loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
        file.string(), "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        device->is_cuda() ? device->index() : c10::DeviceIndex(-1));
    for (const auto& [name, tensor] : loader->get_runner()->extract_constants_map(/*use_inactive=*/false)) {
      facts.weight_bytes += tensor.numel() * tensor.element_size();
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "': cannot load ", file.string(), ": ",
                                                   ForwardFailure(e).message()));
  }
  absl::StatusOr<IoOrder> order = OrderFromCallSpec(loader->get_call_spec(), spec);
  if (!order.ok()) return order.status();
  return std::make_unique<AotiBackend>(std::move(loader), *std::move(order), facts);
}

}  // namespace dytserve
