#include "dytserve/inputs.h"

#include <cmath>
#include <limits>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

template <typename T>
Tensor Fill(const TensorInfo& info, const std::vector<int64_t>& shape, int64_t count,
            const GenerateOptions& options, std::mt19937_64* rng) {
  std::vector<T> values(static_cast<size_t>(count), T{});
  if (options.fill == GenerateOptions::Fill::kRandom) {
    // Indexing, not references: std::vector<bool> has no bool&.
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        values[i] = std::uniform_real_distribution<T>(0, 1)(*rng);
      } else if constexpr (std::is_same_v<T, bool>) {
        values[i] = ((*rng)() & 1) != 0;
      } else {
        const int64_t high = std::min<int64_t>(options.int_high, std::numeric_limits<T>::max());
        values[i] = static_cast<T>(std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(high - 1, 0))(*rng));
      }
    }
  }
  return Tensor::From<T>(info.name, shape, values);
}

// Writes `value` into `out` as a `T`, checking it is representable.
template <typename T>
absl::Status Append(const google::protobuf::Value& value, std::string* out) {
  T v{};
  if constexpr (std::is_same_v<T, bool>) {
    if (value.kind_case() != google::protobuf::Value::kBoolValue) return absl::InvalidArgumentError("expected a boolean");
    v = value.bool_value();
  } else {
    if (value.kind_case() != google::protobuf::Value::kNumberValue) return absl::InvalidArgumentError("expected a number");
    const double d = value.number_value();
    if constexpr (std::is_integral_v<T>) {
      if (d != std::floor(d) || d < static_cast<double>(std::numeric_limits<T>::min()) ||
          d > static_cast<double>(std::numeric_limits<T>::max())) {
        return absl::InvalidArgumentError(absl::StrCat(d, " is not representable"));
      }
    }
    v = static_cast<T>(d);
  }
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  return absl::OkStatus();
}

void Flatten(const google::protobuf::Value& value, std::vector<const google::protobuf::Value*>* out) {
  if (value.kind_case() == google::protobuf::Value::kListValue) {
    for (const auto& v : value.list_value().values()) Flatten(v, out);
  } else {
    out->push_back(&value);
  }
}

}  // namespace

absl::StatusOr<std::vector<Tensor>> GenerateInputs(const ModelMetadata& metadata, const GenerateOptions& options,
                                                   std::mt19937_64* rng) {
  if (options.rows < 1 || options.seq_len < 1) {
    return absl::InvalidArgumentError("rows and seq_len must be at least 1");
  }
  std::vector<Tensor> out;
  for (const TensorInfo& info : metadata.inputs) {
    std::vector<int64_t> shape = info.shape;
    int64_t count = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) shape[i] = i == 0 ? options.rows : options.seq_len;
      count *= shape[i];
    }
    const std::string& dt = info.datatype;
    if (dt == "FP32") out.push_back(Fill<float>(info, shape, count, options, rng));
    else if (dt == "FP64") out.push_back(Fill<double>(info, shape, count, options, rng));
    else if (dt == "INT64") out.push_back(Fill<int64_t>(info, shape, count, options, rng));
    else if (dt == "INT32") out.push_back(Fill<int32_t>(info, shape, count, options, rng));
    else if (dt == "INT16") out.push_back(Fill<int16_t>(info, shape, count, options, rng));
    else if (dt == "INT8") out.push_back(Fill<int8_t>(info, shape, count, options, rng));
    else if (dt == "UINT8") out.push_back(Fill<uint8_t>(info, shape, count, options, rng));
    else if (dt == "BOOL") out.push_back(Fill<bool>(info, shape, count, options, rng));
    else return absl::UnimplementedError(absl::StrCat("input '", info.name, "': cannot generate ", dt, " values"));
  }
  return out;
}

absl::StatusOr<std::vector<Tensor>> ParseInputsJson(const std::string& json, const std::string& source) {
  google::protobuf::Struct root;
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, &root);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", parsed.ToString()));
  auto it = root.fields().find("inputs");
  if (it == root.fields().end() || it->second.kind_case() != google::protobuf::Value::kListValue) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": needs an \"inputs\" list"));
  }
  std::vector<Tensor> out;
  int index = 0;
  for (const auto& entry : it->second.list_value().values()) {
    const std::string where = absl::StrCat(source, ": inputs[", index++, "]");
    if (entry.kind_case() != google::protobuf::Value::kStructValue) {
      return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
    }
    const auto& f = entry.struct_value().fields();
    auto name = f.find("name"), datatype = f.find("datatype"), shape = f.find("shape"), data = f.find("data");
    if (name == f.end() || datatype == f.end() || shape == f.end() || data == f.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " needs name, datatype, shape and data"));
    }
    Tensor t;
    t.name = name->second.string_value();
    t.datatype = datatype->second.string_value();
    for (const auto& d : shape->second.list_value().values()) {
      if (d.number_value() < 0 || d.number_value() != std::floor(d.number_value())) {
        return absl::InvalidArgumentError(absl::StrCat(where, " '", t.name, "': shape has a non-integer or negative dim"));
      }
      t.shape.push_back(static_cast<int64_t>(d.number_value()));
    }
    std::vector<const google::protobuf::Value*> values;
    Flatten(data->second, &values);
    if (static_cast<int64_t>(values.size()) != t.num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " '", t.name, "': data has ", values.size(),
                                                     " values, the shape needs ", t.num_elements()));
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const google::protobuf::Value& v = *values[i];
      absl::Status s;
      const std::string& dt = t.datatype;
      if (dt == "FP32") s = Append<float>(v, &t.data);
      else if (dt == "FP64") s = Append<double>(v, &t.data);
      else if (dt == "INT64") s = Append<int64_t>(v, &t.data);
      else if (dt == "INT32") s = Append<int32_t>(v, &t.data);
      else if (dt == "INT16") s = Append<int16_t>(v, &t.data);
      else if (dt == "INT8") s = Append<int8_t>(v, &t.data);
      else if (dt == "UINT8") s = Append<uint8_t>(v, &t.data);
      else if (dt == "BOOL") s = Append<bool>(v, &t.data);
      else return absl::InvalidArgumentError(absl::StrCat(where, " '", t.name, "': datatype '", dt, "' cannot come from JSON"));
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(where, " '", t.name, "': data[", i, "]: ", s.message()));
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace dytserve
