#include "server/core/triton_config.h"

#include <algorithm>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "server/core/text_proto.h"

namespace dytserve {
namespace {

// The fields of Triton's config that dytserve serves, by full name. Any
// other field that is set is refused.
const std::set<std::string>& Served() {
  static const auto* const served = new std::set<std::string>{
      "inference.ModelConfig.name",
      "inference.ModelConfig.platform",
      "inference.ModelConfig.backend",
      "inference.ModelConfig.version_policy",
      "inference.ModelConfig.max_batch_size",
      "inference.ModelConfig.input",
      "inference.ModelConfig.output",
      "inference.ModelConfig.dynamic_batching",
      "inference.ModelConfig.instance_group",
      "inference.ModelConfig.default_model_filename",
      "inference.ModelConfig.parameters",
      "inference.ModelInput.name",
      "inference.ModelInput.data_type",
      "inference.ModelInput.dims",
      "inference.ModelOutput.name",
      "inference.ModelOutput.data_type",
      "inference.ModelOutput.dims",
      "inference.ModelInstanceGroup.name",
      "inference.ModelInstanceGroup.count",
      "inference.ModelInstanceGroup.kind",
      "inference.ModelInstanceGroup.gpus",
      "inference.ModelVersionPolicy.latest",
      "inference.ModelVersionPolicy.all",
      "inference.ModelVersionPolicy.specific",
      "inference.ModelVersionPolicy.Latest.num_versions",
      "inference.ModelVersionPolicy.Specific.versions",
      "inference.ModelDynamicBatching.preferred_batch_size",
      "inference.ModelDynamicBatching.max_queue_delay_microseconds",
      "inference.ModelDynamicBatching.default_queue_policy",
      "inference.ModelQueuePolicy.default_timeout_microseconds",
      "inference.ModelQueuePolicy.allow_timeout_override",
      "inference.ModelQueuePolicy.max_queue_size",
      // Values of the parameters map; its entries' keys are free-form.
      "inference.ModelConfig.ParametersEntry.key",
      "inference.ModelConfig.ParametersEntry.value",
      "inference.ModelParameter.string_value",
  };
  return *served;
}

// Appends the path of every set field of `m` (and of the messages below it)
// that is not served.
void ListUnserved(const google::protobuf::Message& m, const std::string& prefix, std::vector<std::string>* out) {
  const google::protobuf::Reflection* reflection = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(m, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    const std::string path = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (Served().count(f->full_name()) == 0) {
      out->push_back(path);
      continue;
    }
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_map()) {
      for (int i = 0; i < reflection->FieldSize(m, f); ++i) {
        const google::protobuf::Message& entry = reflection->GetRepeatedMessage(m, f, i);
        const google::protobuf::Message& value =
            entry.GetReflection()->GetMessage(entry, entry.GetDescriptor()->map_value());
        ListUnserved(value, absl::StrCat(path, "[\"", entry.GetReflection()->GetString(entry, entry.GetDescriptor()->map_key()), "\"]"), out);
      }
    } else if (f->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(m, f); ++i) {
        ListUnserved(reflection->GetRepeatedMessage(m, f, i), absl::StrCat(path, "[", i, "]"), out);
      }
    } else {
      ListUnserved(reflection->GetMessage(m, f), path, out);
    }
  }
}

// Triton's data type as dytserve's, by name (the two enums number them
// differently); TYPE_INVALID when dytserve has no such type.
v1::DataType ServedType(inference::DataType type) {
  v1::DataType out = v1::TYPE_INVALID;
  if (!v1::DataType_Parse(inference::DataType_Name(type), &out)) return v1::TYPE_INVALID;
  return out;
}

template <typename TritonTensor, typename Tensor>
void ConvertTensor(const TritonTensor& in, const std::string& path, Tensor* out, std::vector<std::string>* bad) {
  out->set_name(in.name());
  const v1::DataType type = ServedType(in.data_type());
  if (type == v1::TYPE_INVALID) {
    bad->push_back(absl::StrCat(path, ".data_type: ", inference::DataType_Name(in.data_type())));
  }
  out->set_data_type(type);
  for (int64_t d : in.dims()) out->add_dims(d);
}

}  // namespace

absl::StatusOr<v1::ModelConfig> ParseTritonModelConfig(absl::string_view text, absl::string_view source) {
  inference::ModelConfig triton;
  std::vector<std::string> unknown;
  if (absl::Status s = ParseTextProtoListingUnknown(text, source, &triton, &unknown); !s.ok()) return s;

  std::vector<std::string> unserved;
  ListUnserved(triton, "", &unserved);
  // Fields unknown even to Triton's schema (a typo, or a field of a feature
  // whose message is declared without its fields) are refused as well.
  // Inside a message declared without its fields, the field holding it has
  // been named already.
  for (const std::string& u : unknown) {
    const google::protobuf::Descriptor* type =
        google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(u.substr(0, u.rfind('.')));
    if (type != nullptr && type->field_count() == 0) continue;
    unserved.push_back(absl::StrCat("unknown field ", u));
  }
  std::vector<std::string> bad;  // served fields with values dytserve cannot honour

  v1::ModelConfig out;
  out.set_name(triton.name());
  if (triton.platform() == "pytorch_libtorch") {
    out.set_platform("torchscript");
  } else if (triton.platform() == "torch_aoti") {
    out.set_platform("torch_aoti");
  } else if (!triton.platform().empty()) {
    bad.push_back(absl::StrCat("platform: \"", triton.platform(), "\" (pytorch_libtorch or torch_aoti)"));
  }
  if (!triton.backend().empty() && triton.backend() != "pytorch") {
    bad.push_back(absl::StrCat("backend: \"", triton.backend(), "\" (pytorch)"));
  }
  const std::string& file = triton.default_model_filename();
  if (!file.empty() && file != "model.pt" && file != "model.pt2") {
    bad.push_back(absl::StrCat("default_model_filename: \"", file, "\" (model.pt or model.pt2)"));
  }
  out.set_max_batch_size(triton.max_batch_size());
  for (int i = 0; i < triton.input_size(); ++i) {
    ConvertTensor(triton.input(i), absl::StrCat("input[", i, "]"), out.add_input(), &bad);
  }
  for (int i = 0; i < triton.output_size(); ++i) {
    ConvertTensor(triton.output(i), absl::StrCat("output[", i, "]"), out.add_output(), &bad);
  }

  const inference::ModelVersionPolicy& policy = triton.version_policy();
  if (policy.has_latest()) out.mutable_version_policy()->mutable_latest()->set_num_versions(policy.latest().num_versions());
  if (policy.has_all()) out.mutable_version_policy()->mutable_all();
  if (policy.has_specific()) {
    for (int64_t v : policy.specific().versions()) out.mutable_version_policy()->mutable_specific()->add_versions(v);
  }

  if (triton.has_dynamic_batching()) {
    const inference::ModelDynamicBatching& in = triton.dynamic_batching();
    v1::DynamicBatching* batching = out.mutable_dynamic_batching();
    for (int size : in.preferred_batch_size()) batching->add_preferred_batch_sizes(size);
    batching->set_max_queue_delay_us(in.max_queue_delay_microseconds());
    batching->set_max_queue_size(in.default_queue_policy().max_queue_size());
    batching->set_default_timeout_us(in.default_queue_policy().default_timeout_microseconds());
  }

  if (triton.instance_group_size() > 1) {
    bad.push_back(absl::StrCat("instance_group: ", triton.instance_group_size(), " groups (dytserve serves one)"));
  }
  if (triton.instance_group_size() == 1) {
    const inference::ModelInstanceGroup& group = triton.instance_group(0);
    if (group.count() < 0) bad.push_back(absl::StrCat("instance_group[0].count: ", group.count()));
    out.mutable_instance_group()->set_count(static_cast<uint32_t>(std::max(group.count(), 0)));
    switch (group.kind()) {
      case inference::ModelInstanceGroup::KIND_CPU:
        if (group.gpus_size() > 0) bad.push_back("instance_group[0].gpus: set with KIND_CPU");
        out.mutable_instance_group()->set_device("cpu");
        break;
      case inference::ModelInstanceGroup::KIND_GPU:
      case inference::ModelInstanceGroup::KIND_AUTO:
        if (group.gpus_size() > 1) {
          bad.push_back(absl::StrCat("instance_group[0].gpus: ", group.gpus_size(), " GPUs (dytserve places a group on one)"));
        } else if (group.gpus_size() == 1) {
          out.mutable_instance_group()->set_device(absl::StrCat("cuda:", group.gpus(0)));
        } else {
          out.mutable_instance_group()->set_device(group.kind() == inference::ModelInstanceGroup::KIND_GPU ? "cuda" : "auto");
        }
        break;
      default:
        bad.push_back(absl::StrCat("instance_group[0].kind: ", inference::ModelInstanceGroup::Kind_Name(group.kind())));
    }
  }
  for (const auto& [key, value] : triton.parameters()) (*out.mutable_parameters())[key] = value.string_value();

  if (!unserved.empty() || !bad.empty()) {
    std::vector<std::string> parts;
    if (!unserved.empty()) parts.push_back(absl::StrCat("fields dytserve does not serve: ", absl::StrJoin(unserved, ", ")));
    if (!bad.empty()) parts.push_back(absl::StrCat("values dytserve cannot serve: ", absl::StrJoin(bad, "; ")));
    return absl::InvalidArgumentError(absl::StrCat(source, ": a Triton config with ", absl::StrJoin(parts, "; and ")));
  }
  return out;
}

inference::ModelConfig ToTritonModelConfig(const ModelSpec& spec, ModelFormat format, absl::string_view device) {
  const v1::ModelConfig& config = spec.config;
  inference::ModelConfig out;
  out.set_name(spec.name);
  out.set_platform(format == ModelFormat::kAotInductor ? "torch_aoti" : "pytorch_libtorch");
  out.set_backend("pytorch");
  out.set_default_model_filename(format == ModelFormat::kAotInductor ? "model.pt2" : "model.pt");
  out.set_max_batch_size(spec.max_batch_size);
  auto type = [](DataType t) {
    inference::DataType triton = inference::TYPE_INVALID;
    inference::DataType_Parse(std::string("TYPE_") + std::string(DataTypeName(t)), &triton);
    return triton;
  };
  for (const TensorSpec& t : spec.inputs) {
    if (t.generated()) continue;
    inference::ModelInput* in = out.add_input();
    in->set_name(t.name);
    in->set_data_type(type(t.type));
    for (int64_t d : t.dims) in->add_dims(d);
  }
  for (const TensorSpec& t : spec.outputs) {
    inference::ModelOutput* o = out.add_output();
    o->set_name(t.name);
    o->set_data_type(type(t.type));
    for (int64_t d : t.dims) o->add_dims(d);
  }
  const v1::VersionPolicy& policy = config.version_policy();
  if (policy.has_latest()) out.mutable_version_policy()->mutable_latest()->set_num_versions(policy.latest().num_versions());
  if (policy.has_all()) out.mutable_version_policy()->mutable_all();
  if (policy.has_specific()) {
    for (int64_t v : policy.specific().versions()) out.mutable_version_policy()->mutable_specific()->add_versions(v);
  }
  if (spec.batched()) {
    // dytserve batches every batched model; the knobs are its own.
    inference::ModelDynamicBatching* batching = out.mutable_dynamic_batching();
    for (int size : config.dynamic_batching().preferred_batch_sizes()) batching->add_preferred_batch_size(size);
    batching->set_max_queue_delay_microseconds(config.dynamic_batching().max_queue_delay_us());
    batching->mutable_default_queue_policy()->set_max_queue_size(config.dynamic_batching().max_queue_size());
    batching->mutable_default_queue_policy()->set_default_timeout_microseconds(
        config.dynamic_batching().default_timeout_us());
    batching->mutable_default_queue_policy()->set_allow_timeout_override(true);
  }
  inference::ModelInstanceGroup* group = out.add_instance_group();
  group->set_name(absl::StrCat(spec.name, "_0"));
  group->set_count(spec.instance_count);
  int gpu = 0;
  if (absl::ConsumePrefix(&device, "cuda")) {
    group->set_kind(inference::ModelInstanceGroup::KIND_GPU);
    if (absl::ConsumePrefix(&device, ":") && absl::SimpleAtoi(device, &gpu)) group->add_gpus(gpu);
  } else {
    group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  }
  for (const auto& [key, value] : config.parameters()) (*out.mutable_parameters())[key].set_string_value(value);
  return out;
}

}  // namespace dytserve
