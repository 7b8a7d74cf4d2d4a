#include "server/http/json_infer.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace dytserve {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Bytes per element of the datatypes JSON can carry; 0 for unknown.
size_t ElementSize(absl::string_view type) {
  if (type == "BOOL" || type == "UINT8" || type == "INT8") return 1;
  if (type == "INT16" || type == "UINT16" || type == "FP16" || type == "BF16") return 2;
  if (type == "INT32" || type == "UINT32" || type == "FP32") return 4;
  if (type == "INT64" || type == "UINT64" || type == "FP64") return 8;
  return 0;
}

template <typename T>
void Append(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Appends `value` (one JSON element) as `type` to `raw`.
absl::Status EncodeElement(const json& value, absl::string_view type, const std::string& field, std::string* raw) {
  if (type == "BOOL") {
    if (!value.is_boolean()) return Bad(field, "BOOL data must be true or false");
    Append<uint8_t>(raw, value.get<bool>() ? 1 : 0);
    return absl::OkStatus();
  }
  if (type == "FP32" || type == "FP64") {
    if (!value.is_number()) return Bad(field, absl::StrCat(type, " data must be numbers"));
    const double v = value.get<double>();
    if (type == "FP32") {
      Append<float>(raw, static_cast<float>(v));
    } else {
      Append<double>(raw, v);
    }
    return absl::OkStatus();
  }
  if (type == "FP16" || type == "BF16") return Bad(field, absl::StrCat(type, " travels only as binary data"));
  // Integers: exact, and within the type's range. JSON's non-negative
  // integers parse as unsigned, negative ones as signed.
  if (!value.is_number_integer()) return Bad(field, absl::StrCat(type, " data must be integers"));
  const bool negative = !value.is_number_unsigned();
  const int64_t s = negative ? value.get<int64_t>() : 0;
  const uint64_t u = negative ? 0 : value.get<uint64_t>();
  auto in = [&](int64_t lo, uint64_t hi) { return negative ? s >= lo : u <= hi; };
  // The value as a signed integer, once it is known to fit the type.
  const int64_t v = negative ? s : static_cast<int64_t>(u);
  auto out_of_range = [&] { return Bad(field, absl::StrCat("a value is out of the range of ", type)); };
  if (type == "INT8") return in(INT8_MIN, INT8_MAX) ? (Append<int8_t>(raw, static_cast<int8_t>(v)), absl::OkStatus()) : out_of_range();
  if (type == "UINT8") return in(0, UINT8_MAX) ? (Append<uint8_t>(raw, static_cast<uint8_t>(u)), absl::OkStatus()) : out_of_range();
  if (type == "INT16") return in(INT16_MIN, INT16_MAX) ? (Append<int16_t>(raw, static_cast<int16_t>(v)), absl::OkStatus()) : out_of_range();
  if (type == "UINT16") return in(0, UINT16_MAX) ? (Append<uint16_t>(raw, static_cast<uint16_t>(u)), absl::OkStatus()) : out_of_range();
  if (type == "INT32") return in(INT32_MIN, INT32_MAX) ? (Append<int32_t>(raw, static_cast<int32_t>(v)), absl::OkStatus()) : out_of_range();
  if (type == "UINT32") return in(0, UINT32_MAX) ? (Append<uint32_t>(raw, static_cast<uint32_t>(u)), absl::OkStatus()) : out_of_range();
  if (type == "INT64") return in(INT64_MIN, INT64_MAX) ? (Append<int64_t>(raw, v), absl::OkStatus()) : out_of_range();
  if (type == "UINT64") return in(0, UINT64_MAX) ? (Append<uint64_t>(raw, u), absl::OkStatus()) : out_of_range();
  return Bad(field, absl::StrCat("datatype '", type, "' is not one of the protocol's"));
}

// Flattens nested arrays (row-major) into `raw`; counts the elements.
absl::Status EncodeData(const json& data, absl::string_view type, const std::string& field, std::string* raw,
                        int64_t* count, int depth = 0) {
  if (depth > 16) return Bad(field, "data is nested deeper than any tensor");
  if (!data.is_array()) {
    ++*count;
    return EncodeElement(data, type, field, raw);
  }
  for (const json& element : data) {
    if (absl::Status s = EncodeData(element, type, field, raw, count, depth + 1); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ToInferParameter(const json& value, const std::string& field, inference::InferParameter* out) {
  if (value.is_boolean()) {
    out->set_bool_param(value.get<bool>());
  } else if (value.is_number_integer()) {
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Bad(field, "out of the int64 range");
    }
    out->set_int64_param(value.get<int64_t>());
  } else if (value.is_string()) {
    out->set_string_param(value.get<std::string>());
  } else {
    return Bad(field, "must be a bool, an integer or a string");
  }
  return absl::OkStatus();
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T Read(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// One raw element as JSON.
json DecodeElement(absl::string_view type, const char* p) {
  if (type == "BOOL") return Read<uint8_t>(p) != 0;
  if (type == "UINT8") return Read<uint8_t>(p);
  if (type == "INT8") return Read<int8_t>(p);
  if (type == "INT16") return Read<int16_t>(p);
  if (type == "UINT16") return Read<uint16_t>(p);
  if (type == "INT32") return Read<int32_t>(p);
  if (type == "UINT32") return Read<uint32_t>(p);
  if (type == "INT64") return Read<int64_t>(p);
  if (type == "UINT64") return Read<uint64_t>(p);
  if (type == "FP16") return HalfToFloat(Read<uint16_t>(p));
  if (type == "BF16") {
    const uint32_t bits = static_cast<uint32_t>(Read<uint16_t>(p)) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (type == "FP64") return Read<double>(p);
  return Read<float>(p);
}

}  // namespace

absl::StatusOr<JsonInferRequest> ParseInferRequest(absl::string_view body, absl::string_view header_length,
                                                   const std::string& model, const std::string& version) {
  size_t json_length = body.size();
  if (!header_length.empty()) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(header_length, &n) || n > body.size()) {
      return Bad("Inference-Header-Content-Length",
                 absl::StrCat("'", header_length, "' is not a length within the body's ", body.size(), " bytes"));
    }
    json_length = n;
  }
  json doc;
  try {
    doc = json::parse(body.substr(0, json_length));
  } catch (const json::parse_error& e) {
    return Bad("body", absl::StrCat("not JSON: ", e.what()));
  }
  if (!doc.is_object()) return Bad("body", "must be a JSON object");

  JsonInferRequest out;
  inference::ModelInferRequest& req = out.request;
  req.set_model_name(model);
  req.set_model_version(version);
  if (auto it = doc.find("id"); it != doc.end()) {
    if (!it->is_string()) return Bad("id", "must be a string");
    req.set_id(it->get<std::string>());
  }
  if (auto it = doc.find("parameters"); it != doc.end()) {
    if (!it->is_object()) return Bad("parameters", "must be an object");
    for (const auto& [key, value] : it->items()) {
      if (key == "binary_data_output") {
        if (!value.is_boolean()) return Bad("parameters.binary_data_output", "must be true or false");
        out.all_binary = value.get<bool>();
        continue;
      }
      if (absl::Status s = ToInferParameter(value, absl::StrCat("parameters.", key), &(*req.mutable_parameters())[key]);
          !s.ok()) {
        return s;
      }
    }
  }

  auto inputs = doc.find("inputs");
  if (inputs == doc.end() || !inputs->is_array() || inputs->empty()) {
    return Bad("inputs", "must be a non-empty array");
  }
  size_t binary_offset = json_length;
  for (size_t i = 0; i < inputs->size(); ++i) {
    const json& in = (*inputs)[i];
    std::string field = absl::StrCat("inputs[", i, "]");
    if (!in.is_object()) return Bad(field, "must be an object");
    auto name = in.find("name");
    if (name == in.end() || !name->is_string()) return Bad(field + ".name", "must be a string");
    field = absl::StrCat(field, " '", name->get<std::string>(), "'");
    auto type = in.find("datatype");
    if (type == in.end() || !type->is_string()) return Bad(field + ".datatype", "must be a string");
    const std::string datatype = type->get<std::string>();
    const size_t element = ElementSize(datatype);
    if (element == 0) return Bad(field + ".datatype", absl::StrCat("'", datatype, "' is not served"));
    auto shape = in.find("shape");
    if (shape == in.end() || !shape->is_array()) return Bad(field + ".shape", "must be an array of integers");
    inference::ModelInferRequest::InferInputTensor* tensor = req.add_inputs();
    tensor->set_name(name->get<std::string>());
    tensor->set_datatype(datatype);
    int64_t elements = 1;
    for (const json& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return Bad(field + ".shape", "dimensions must be integers >= 0");
      }
      tensor->add_shape(d.get<int64_t>());
      // Bounded so that the product cannot overflow; the engine refuses
      // what is too large for the model anyway.
      elements = std::min<int64_t>(elements * std::min<int64_t>(d.get<int64_t>(), int64_t{1} << 31), int64_t{1} << 40);
    }
    std::string* raw = req.add_raw_input_contents();
    int64_t binary_size = -1;
    if (auto params = in.find("parameters"); params != in.end()) {
      if (!params->is_object()) return Bad(field + ".parameters", "must be an object");
      for (const auto& [key, value] : params->items()) {
        if (key == "binary_data_size") {
          if (!value.is_number_unsigned()) return Bad(field + ".parameters.binary_data_size", "must be an integer >= 0");
          binary_size = static_cast<int64_t>(value.get<uint64_t>());
          continue;
        }
        if (absl::Status s = ToInferParameter(value, absl::StrCat(field, ".parameters.", key),
                                              &(*tensor->mutable_parameters())[key]);
            !s.ok()) {
          return s;
        }
      }
    }
    auto data = in.find("data");
    if (binary_size >= 0) {
      if (data != in.end()) return Bad(field, "has both data and parameters.binary_data_size");
      if (static_cast<uint64_t>(binary_size) > body.size() - binary_offset) {
        return Bad(field + ".parameters.binary_data_size",
                   absl::StrCat(binary_size, " bytes, but only ", body.size() - binary_offset, " follow the JSON"));
      }
      raw->assign(body.data() + binary_offset, static_cast<size_t>(binary_size));
      binary_offset += static_cast<size_t>(binary_size);
    } else {
      if (data == in.end()) return Bad(field, "needs data or parameters.binary_data_size");
      if (elements > (int64_t{1} << 28)) return Bad(field + ".shape", "too many elements for JSON data");
      raw->reserve(static_cast<size_t>(elements) * element);
      int64_t count = 0;
      if (absl::Status s = EncodeData(*data, datatype, field + ".data", raw, &count); !s.ok()) return s;
      if (count != elements) {
        return Bad(field + ".data", absl::StrCat(count, " elements for a shape of ", elements));
      }
    }
  }
  if (binary_offset != body.size()) {
    return Bad("body", absl::StrCat(body.size() - binary_offset, " bytes after the JSON belong to no input"));
  }

  if (auto outputs = doc.find("outputs"); outputs != doc.end()) {
    if (!outputs->is_array()) return Bad("outputs", "must be an array");
    for (size_t i = 0; i < outputs->size(); ++i) {
      const json& o = (*outputs)[i];
      const std::string field = absl::StrCat("outputs[", i, "]");
      if (!o.is_object()) return Bad(field, "must be an object");
      auto name = o.find("name");
      if (name == o.end() || !name->is_string()) return Bad(field + ".name", "must be a string");
      req.add_outputs()->set_name(name->get<std::string>());
      if (auto params = o.find("parameters"); params != o.end()) {
        if (!params->is_object()) return Bad(field + ".parameters", "must be an object");
        for (const auto& [key, value] : params->items()) {
          if (key == "binary_data") {
            if (!value.is_boolean()) return Bad(field + ".parameters.binary_data", "must be true or false");
            if (value.get<bool>()) out.binary_outputs.insert(name->get<std::string>());
            continue;
          }
          return Bad(absl::StrCat(field, ".parameters.", key), "is not supported (binary_data is)");
        }
      }
    }
  }
  return out;
}

JsonInferResponse RenderInferResponse(const inference::ModelInferResponse& response, const JsonInferRequest& asked) {
  json doc = json::object();
  doc["model_name"] = response.model_name();
  doc["model_version"] = response.model_version();
  if (!response.id().empty()) doc["id"] = response.id();
  if (!response.parameters().empty()) {
    json params = json::object();
    for (const auto& [key, p] : response.parameters()) {
      switch (p.parameter_choice_case()) {
        case inference::InferParameter::kBoolParam:
          params[key] = p.bool_param();
          break;
        case inference::InferParameter::kInt64Param:
          params[key] = p.int64_param();
          break;
        default:
          params[key] = p.string_param();
      }
    }
    doc["parameters"] = params;
  }
  JsonInferResponse out;
  std::string tail;
  json outputs = json::array();
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& o = response.outputs(i);
    const std::string& raw = i < response.raw_output_contents_size() ? response.raw_output_contents(i) : std::string();
    json entry = {{"name", o.name()}, {"datatype", o.datatype()}, {"shape", json::array()}};
    for (int64_t d : o.shape()) entry["shape"].push_back(d);
    if (asked.all_binary || asked.binary_outputs.count(o.name()) > 0) {
      entry["parameters"] = {{"binary_data_size", raw.size()}};
      tail += raw;
      out.binary = true;
    } else {
      const size_t element = std::max<size_t>(ElementSize(o.datatype()), 1);
      json data = json::array();
      for (size_t at = 0; at + element <= raw.size(); at += element) data.push_back(DecodeElement(o.datatype(), raw.data() + at));
      entry["data"] = std::move(data);
    }
    outputs.push_back(std::move(entry));
  }
  doc["outputs"] = std::move(outputs);
  out.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  out.json_length = out.body.size();
  out.body += tail;
  return out;
}

}  // namespace dytserve
