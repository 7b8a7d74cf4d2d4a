#include "server/core/model_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/text_proto.h"
#include "server/core/triton_config.h"

namespace dytserve {
namespace {

constexpr int kMaxRank = 8;
constexpr int kMaxBatchSizeLimit = 1 << 16;

absl::Status FieldError(absl::string_view model, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("model '", model, "': ", field, ": ", what));
}

template <typename ProtoTensor>
absl::StatusOr<std::vector<TensorSpec>> BuildTensors(
    const google::protobuf::RepeatedPtrField<ProtoTensor>& tensors, absl::string_view model,
    absl::string_view kind) {
  if (tensors.empty()) return FieldError(model, kind, "at least one is required");
  std::vector<TensorSpec> specs;
  std::set<std::string> seen;
  for (int i = 0; i < tensors.size(); ++i) {
    const ProtoTensor& t = tensors[i];
    const std::string field = absl::StrCat(kind, "[", i, "]");
    if (t.name().empty()) return FieldError(model, field, "name is empty");
    if (!seen.insert(t.name()).second) {
      return FieldError(model, field, absl::StrCat("duplicate name '", t.name(), "'"));
    }
    absl::StatusOr<DataType> type = FromConfigType(t.data_type());
    if (!type.ok()) {
      return FieldError(model, absl::StrCat(field, " '", t.name(), "'"), type.status().message());
    }
    if (t.dims_size() > kMaxRank) {
      return FieldError(model, absl::StrCat(field, " '", t.name(), "'.dims"),
                        absl::StrCat("rank ", t.dims_size(), " exceeds ", kMaxRank));
    }
    for (int64_t d : t.dims()) {
      if (d == 0 || d < -1) {
        return FieldError(model, absl::StrCat(field, " '", t.name(), "'.dims"),
                          absl::StrCat("dimension ", d, " is invalid (use -1 or a size > 0)"));
      }
    }
    TensorSpec spec{t.name(), *type, {t.dims().begin(), t.dims().end()}, 0.0};
    if constexpr (std::is_same_v<ProtoTensor, v1::ModelInput>) spec.pad_value = t.pad_value();
    specs.push_back(std::move(spec));
  }
  return specs;
}

absl::Status CheckDevice(absl::string_view model, absl::string_view device) {
  if (device == "cpu" || device == "auto" || device == "cuda") return absl::OkStatus();
  if (absl::StartsWith(device, "cuda:")) {
    int index = 0;
    if (absl::SimpleAtoi(device.substr(5), &index) && index >= 0) return absl::OkStatus();
  }
  return FieldError(model, "instance_group.device",
                    absl::StrCat("'", device, "' is not one of cpu, cuda:N, auto"));
}

bool HasVariableDim(const TensorSpec& t) {
  for (int64_t d : t.dims) {
    if (d == -1) return true;
  }
  return false;
}

// Resolves mask_of and follows, which name other tensors of the config.
absl::Status LinkRaggedTensors(const v1::ModelConfig& config, ModelSpec* spec) {
  const std::string& model = spec->name;
  auto input_index = [spec](const std::string& name) {
    for (size_t i = 0; i < spec->inputs.size(); ++i) {
      if (spec->inputs[i].name == name) return static_cast<int>(i);
    }
    return -1;
  };
  for (int i = 0; i < config.input_size(); ++i) {
    const std::string& of = config.input(i).mask_of();
    if (of.empty()) continue;
    const std::string field = absl::StrCat("input[", i, "] '", config.input(i).name(), "'.mask_of");
    const int target = input_index(of);
    if (target < 0 || target == i || !config.input(target).mask_of().empty()) {
      return FieldError(model, field, absl::StrCat("'", of, "' is not another ordinary input"));
    }
    if (!HasVariableDim(spec->inputs[target])) {
      return FieldError(model, field, absl::StrCat("input '", of, "' has no variable (-1) dimension to mask"));
    }
    if (!spec->batched()) return FieldError(model, field, "needs max_batch_size > 0");
    if (spec->inputs[i].dims != std::vector<int64_t>{-1}) {
      return FieldError(model, absl::StrCat("input[", i, "] '", config.input(i).name(), "'.dims"),
                        "a mask input must have dims [-1]");
    }
    spec->inputs[i].mask_of = target;
  }
  for (int o = 0; o < config.output_size(); ++o) {
    if (!config.output(o).has_follows()) continue;
    const auto& f = config.output(o).follows();
    const std::string field = absl::StrCat("output[", o, "] '", config.output(o).name(), "'.follows");
    if (!spec->batched()) return FieldError(model, field, "needs max_batch_size > 0");
    const int target = input_index(f.input());
    if (target < 0 || spec->inputs[target].generated()) {
      return FieldError(model, field, absl::StrCat("'", f.input(), "' is not an ordinary input"));
    }
    const TensorSpec& in = spec->inputs[target];
    if (f.input_dim() >= in.dims.size() || in.dims[f.input_dim()] != -1) {
      return FieldError(model, field, absl::StrCat("input_dim ", f.input_dim(), " is not a variable dim of '", f.input(), "'"));
    }
    TensorSpec& out = spec->outputs[o];
    if (f.output_dim() >= out.dims.size() || out.dims[f.output_dim()] != -1) {
      return FieldError(model, field, absl::StrCat("output_dim ", f.output_dim(), " is not a variable dim of this output"));
    }
    out.follows_input = target;
    out.follows_input_dim = static_cast<int>(f.input_dim());
    out.follows_output_dim = static_cast<int>(f.output_dim());
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<int64_t> ModelSpec::WireShape(const TensorSpec& spec) const {
  std::vector<int64_t> shape;
  if (batched()) shape.push_back(-1);
  shape.insert(shape.end(), spec.dims.begin(), spec.dims.end());
  return shape;
}

const TensorSpec* ModelSpec::FindInput(absl::string_view name) const {
  for (const TensorSpec& s : inputs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const TensorSpec* ModelSpec::FindOutput(absl::string_view name) const {
  for (const TensorSpec& s : outputs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

absl::StatusOr<v1::ModelConfig> ParseModelConfig(absl::string_view text, absl::string_view source) {
  v1::ModelConfig config;
  absl::Status own = ParseTextProto(text, source, &config);
  if (own.ok()) return config;
  // Not dytserve's own schema: perhaps Triton's (a repository written for
  // Triton's PyTorch backend). Its error, which names every field dytserve
  // does not serve, is the useful one when the text is Triton's; when it is
  // neither, both are.
  absl::StatusOr<v1::ModelConfig> triton = ParseTritonModelConfig(text, source);
  if (triton.ok()) return triton;
  return absl::InvalidArgumentError(absl::StrCat(own.message(), " (as dytserve's config); and as Triton's: ",
                                                 triton.status().message()));
}

absl::StatusOr<ModelSpec> BuildModelSpec(v1::ModelConfig config, absl::string_view dir_name) {
  if (config.name().empty()) config.set_name(std::string(dir_name));
  const std::string model = config.name();
  if (model != dir_name) {
    return FieldError(dir_name, "name",
                      absl::StrCat("'", model, "' does not match the directory name '", dir_name, "'"));
  }
  // Empty: each version's format is found from its file (model.pt or
  // model.pt2). "pytorch_libtorch" is Triton's name for TorchScript.
  if (config.platform() == "pytorch_libtorch") config.set_platform("torchscript");
  if (!config.platform().empty() && config.platform() != "torchscript" && config.platform() != "torch_aoti") {
    return FieldError(model, "platform",
                      absl::StrCat("'", config.platform(),
                                   "' is not served (torchscript, pytorch_libtorch or torch_aoti; empty: from the file)"));
  }
  if (config.max_batch_size() < 0 || config.max_batch_size() > kMaxBatchSizeLimit) {
    return FieldError(model, "max_batch_size",
                      absl::StrCat(config.max_batch_size(), " is outside [0, ", kMaxBatchSizeLimit, "]"));
  }

  ModelSpec spec;
  spec.name = model;
  spec.max_batch_size = config.max_batch_size();
  absl::StatusOr<std::vector<TensorSpec>> inputs = BuildTensors(config.input(), model, "input");
  if (!inputs.ok()) return inputs.status();
  spec.inputs = *std::move(inputs);
  absl::StatusOr<std::vector<TensorSpec>> outputs = BuildTensors(config.output(), model, "output");
  if (!outputs.ok()) return outputs.status();
  spec.outputs = *std::move(outputs);

  if (absl::Status s = LinkRaggedTensors(config, &spec); !s.ok()) return s;
  spec.ragged_batching = config.dynamic_batching().ragged_batching();
  spec.length_bucket = config.dynamic_batching().length_bucket();
  if (spec.ragged_batching && !spec.batched()) {
    return FieldError(model, "dynamic_batching.ragged_batching", "needs max_batch_size > 0");
  }

  for (int size : config.dynamic_batching().preferred_batch_sizes()) {
    if (size <= 0 || size > config.max_batch_size()) {
      return FieldError(model, "dynamic_batching.preferred_batch_sizes",
                        absl::StrCat(size, " is outside [1, max_batch_size=", config.max_batch_size(), "]"));
    }
  }

  v1::InstanceGroup* group = config.mutable_instance_group();
  if (group->count() == 0) group->set_count(1);
  if (group->count() > 64) {
    return FieldError(model, "instance_group.count", absl::StrCat(group->count(), " exceeds 64"));
  }
  if (group->device().empty()) group->set_device("cpu");
  if (absl::Status s = CheckDevice(model, group->device()); !s.ok()) return s;
  spec.instance_count = static_cast<int>(group->count());
  spec.device = group->device();

  v1::VersionPolicy* policy = config.mutable_version_policy();
  if (policy->policy_case() == v1::VersionPolicy::POLICY_NOT_SET) {
    policy->mutable_latest()->set_num_versions(1);
  }
  if (policy->has_latest() && policy->latest().num_versions() == 0) {
    return FieldError(model, "version_policy.latest.num_versions", "must be at least 1");
  }
  if (policy->has_specific()) {
    if (policy->specific().versions().empty()) {
      return FieldError(model, "version_policy.specific.versions", "must list at least one version");
    }
    for (int64_t v : policy->specific().versions()) {
      if (v <= 0) {
        return FieldError(model, "version_policy.specific.versions",
                          absl::StrCat("version ", v, " is not a positive integer"));
      }
    }
  }
  if (config.optimization().intra_op_threads() > 1024) {
    return FieldError(model, "optimization.intra_op_threads",
                      absl::StrCat(config.optimization().intra_op_threads(), " exceeds 1024"));
  }
  spec.config = std::move(config);
  return spec;
}

absl::StatusOr<ModelSpec> LoadModelSpec(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "config.pbtxt";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(text.str(), path.string());
  if (!config.ok()) return config.status();
  return BuildModelSpec(*std::move(config), model_dir.filename().string());
}

}  // namespace dytserve
