#include "server/core/tensor_codec.h"

#include <cstring>
#include <limits>
#include <set>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace dytserve {
namespace {

using inference::InferTensorContents;
using inference::ModelInferRequest;

// Far above any gRPC message this server accepts; it only guards the
// arithmetic, so that a shape of huge dims cannot overflow into a small size.
constexpr int64_t kMaxElements = int64_t{1} << 40;

absl::Status InputError(absl::string_view input, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("input '", input, "': ", what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Number of elements of `shape`, or an error for negative or overflowing dims.
absl::StatusOr<int64_t> ElementCount(absl::string_view input, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) return InputError(input, absl::StrCat("shape ", ShapeString(shape), " has a negative dimension"));
    if (d != 0 && count > kMaxElements / d) {
      return InputError(input, absl::StrCat("shape ", ShapeString(shape), " has too many elements"));
    }
    count *= d;
  }
  return count;
}

absl::Status CheckShape(absl::string_view input, const std::vector<int64_t>& shape,
                        const std::vector<int64_t>& expected, const ModelSpec& spec) {
  if (shape.size() != expected.size()) {
    return InputError(input, absl::StrCat("shape ", ShapeString(shape), " has rank ", shape.size(),
                                          ", the model expects rank ", expected.size(), " ",
                                          ShapeString(expected)));
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    if (expected[i] != -1 && shape[i] != expected[i]) {
      return InputError(input, absl::StrCat("shape ", ShapeString(shape), " does not match the model's ",
                                            ShapeString(expected), " at dimension ", i));
    }
  }
  for (size_t i = spec.batched() ? 1 : 0; i < shape.size(); ++i) {
    if (expected[i] == -1 && shape[i] == 0) {
      return InputError(input, absl::StrCat("shape ", ShapeString(shape), ": variable dimension ", i, " is 0"));
    }
  }
  if (spec.batched()) {
    if (shape[0] < 1) return InputError(input, "batch dimension is 0");
    if (shape[0] > spec.max_batch_size) {
      return InputError(input, absl::StrCat("batch size ", shape[0], " exceeds max_batch_size ",
                                            spec.max_batch_size));
    }
  }
  return absl::OkStatus();
}

int TypedFieldCount(const InferTensorContents& c) {
  return (c.bool_contents_size() > 0) + (c.int_contents_size() > 0) + (c.int64_contents_size() > 0) +
         (c.uint_contents_size() > 0) + (c.uint64_contents_size() > 0) + (c.fp32_contents_size() > 0) +
         (c.fp64_contents_size() > 0) + (c.bytes_contents_size() > 0);
}

// Values in the typed field a datatype uses; -1 for types with no typed field.
int64_t TypedValues(const InferTensorContents& c, DataType type) {
  switch (type) {
    case DataType::kBool: return c.bool_contents_size();
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32: return c.int_contents_size();
    case DataType::kInt64: return c.int64_contents_size();
    case DataType::kUint8: return c.uint_contents_size();
    case DataType::kFp32: return c.fp32_contents_size();
    case DataType::kFp64: return c.fp64_contents_size();
    case DataType::kFp16:
    case DataType::kBf16: return -1;
  }
  return -1;
}

bool HasTypedContents(const ModelInferRequest::InferInputTensor& t) {
  return t.has_contents() && TypedFieldCount(t.contents()) > 0;
}

// Copies a repeated field into `out`, checking the count and each value's range.
template <typename Wire, typename Elem>
absl::Status CopyTyped(absl::string_view input, const google::protobuf::RepeatedField<Wire>& values,
                       absl::string_view field, int64_t expected, int typed_fields, at::Tensor* out) {
  if (values.empty() && typed_fields > 0) {
    return InputError(input, absl::StrCat("contents are of the wrong kind; this datatype uses contents.", field));
  }
  if (values.size() != expected) {
    return InputError(input, absl::StrCat("contents.", field, " has ", values.size(),
                                          " values, the shape needs ", expected));
  }
  Elem* dst = out->data_ptr<Elem>();
  for (int i = 0; i < values.size(); ++i) {
    const Wire v = values[i];
    if constexpr (std::is_integral_v<Elem> && !std::is_same_v<Elem, bool> &&
                  (sizeof(Elem) < sizeof(Wire) || std::is_signed_v<Elem> != std::is_signed_v<Wire>)) {
      const int64_t wide = static_cast<int64_t>(v);
      if (wide < static_cast<int64_t>(std::numeric_limits<Elem>::min()) ||
          wide > static_cast<int64_t>(std::numeric_limits<Elem>::max())) {
        return InputError(input, absl::StrCat("contents.", field, "[", i, "] = ", v,
                                              " is out of range for the datatype"));
      }
    }
    dst[i] = static_cast<Elem>(v);
  }
  return absl::OkStatus();
}

absl::Status DecodeTyped(absl::string_view input, const InferTensorContents& c, DataType type,
                         int64_t count, at::Tensor* out) {
  const absl::string_view field = [&]() -> absl::string_view {
    switch (type) {
      case DataType::kBool: return "bool_contents";
      case DataType::kInt8:
      case DataType::kInt16:
      case DataType::kInt32: return "int_contents";
      case DataType::kInt64: return "int64_contents";
      case DataType::kUint8: return "uint_contents";
      case DataType::kFp32: return "fp32_contents";
      case DataType::kFp64: return "fp64_contents";
      case DataType::kFp16:
      case DataType::kBf16: return "";
    }
    return "";
  }();
  if (field.empty()) {
    return InputError(input, absl::StrCat(DataTypeName(type),
                                          " has no typed contents field; send it in raw_input_contents"));
  }
  const int typed = TypedFieldCount(c);
  if (typed > 1) {
    return InputError(input, absl::StrCat("contents sets more than one field; ", DataTypeName(type),
                                          " uses only ", field));
  }
  switch (type) {
    case DataType::kBool: return CopyTyped<bool, bool>(input, c.bool_contents(), field, count, typed, out);
    case DataType::kInt8: return CopyTyped<int32_t, int8_t>(input, c.int_contents(), field, count, typed, out);
    case DataType::kInt16: return CopyTyped<int32_t, int16_t>(input, c.int_contents(), field, count, typed, out);
    case DataType::kInt32: return CopyTyped<int32_t, int32_t>(input, c.int_contents(), field, count, typed, out);
    case DataType::kInt64: return CopyTyped<int64_t, int64_t>(input, c.int64_contents(), field, count, typed, out);
    case DataType::kUint8: return CopyTyped<uint32_t, uint8_t>(input, c.uint_contents(), field, count, typed, out);
    case DataType::kFp32: return CopyTyped<float, float>(input, c.fp32_contents(), field, count, typed, out);
    case DataType::kFp64: return CopyTyped<double, double>(input, c.fp64_contents(), field, count, typed, out);
    case DataType::kFp16:
    case DataType::kBf16: break;
  }
  return absl::InternalError("unreachable datatype");
}

}  // namespace

at::ScalarType ScalarTypeOf(DataType type) {
  switch (type) {
    case DataType::kBool: return at::kBool;
    case DataType::kUint8: return at::kByte;
    case DataType::kInt8: return at::kChar;
    case DataType::kInt16: return at::kShort;
    case DataType::kInt32: return at::kInt;
    case DataType::kInt64: return at::kLong;
    case DataType::kFp16: return at::kHalf;
    case DataType::kBf16: return at::kBFloat16;
    case DataType::kFp32: return at::kFloat;
    case DataType::kFp64: return at::kDouble;
  }
  return at::kFloat;
}

absl::StatusOr<DataType> DataTypeOf(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kBool: return DataType::kBool;
    case at::kByte: return DataType::kUint8;
    case at::kChar: return DataType::kInt8;
    case at::kShort: return DataType::kInt16;
    case at::kInt: return DataType::kInt32;
    case at::kLong: return DataType::kInt64;
    case at::kHalf: return DataType::kFp16;
    case at::kBFloat16: return DataType::kBf16;
    case at::kFloat: return DataType::kFp32;
    case at::kDouble: return DataType::kFp64;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor type ", c10::toString(tensor.scalar_type()), " has no protocol datatype"));
  }
}

std::string ToRawBytes(const at::Tensor& tensor) {
  const at::Tensor t = tensor.to(at::kCPU).contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
}

absl::StatusOr<at::Tensor> FromRawBytes(absl::string_view bytes, DataType type,
                                        const std::vector<int64_t>& shape) {
  absl::StatusOr<int64_t> count = ElementCount("raw", shape);
  if (!count.ok()) return count.status();
  const int64_t expected = *count * static_cast<int64_t>(DataTypeSize(type));
  if (static_cast<int64_t>(bytes.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("raw contents have ", bytes.size(), " bytes, shape ",
                                                   ShapeString(shape), " of ", DataTypeName(type),
                                                   " needs ", expected));
  }
  if (type == DataType::kBool) {
    // A bool byte other than 0 or 1 is undefined behaviour in every kernel
    // that reads it.
    for (size_t i = 0; i < bytes.size(); ++i) {
      const auto byte = static_cast<unsigned char>(bytes[i]);
      if (byte > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("raw BOOL contents byte ", i, " is ", static_cast<int>(byte), "; BOOL bytes must be 0 or 1"));
      }
    }
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(ScalarTypeOf(type)));
  if (expected > 0) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

absl::StatusOr<DecodedRequest> DecodeRequest(const ModelInferRequest& request, const ModelSpec& spec) {
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && request.raw_input_contents_size() != request.inputs_size()) {
    return absl::InvalidArgumentError(absl::StrCat("raw_input_contents has ", request.raw_input_contents_size(),
                                                   " entries for ", request.inputs_size(), " inputs"));
  }
  DecodedRequest decoded;
  decoded.inputs.resize(spec.inputs.size());
  std::vector<bool> seen(spec.inputs.size(), false);
  int64_t rows = -1;
  std::string rows_from;
  for (int i = 0; i < request.inputs_size(); ++i) {
    const ModelInferRequest::InferInputTensor& in = request.inputs(i);
    const TensorSpec* ts = spec.FindInput(in.name());
    if (ts == nullptr) {
      std::vector<std::string> names;
      for (const TensorSpec& s : spec.inputs) {
        if (!s.generated()) names.push_back(s.name);
      }
      return absl::InvalidArgumentError(absl::StrCat("unexpected input '", in.name(), "'; model '", spec.name,
                                                     "' takes: ", absl::StrJoin(names, ", ")));
    }
    const size_t index = static_cast<size_t>(ts - spec.inputs.data());
    if (ts->generated()) {
      return InputError(in.name(), absl::StrCat("is generated by the server (mask of '", spec.inputs[ts->mask_of].name,
                                                "'); do not send it"));
    }
    if (seen[index]) return InputError(in.name(), "given more than once");
    seen[index] = true;

    absl::StatusOr<DataType> type = ParseDataType(in.datatype());
    if (!type.ok()) return InputError(in.name(), type.status().message());
    if (*type != ts->type) {
      return InputError(in.name(), absl::StrCat("datatype ", in.datatype(), " does not match the model's ",
                                                DataTypeName(ts->type)));
    }
    const std::vector<int64_t> shape(in.shape().begin(), in.shape().end());
    absl::StatusOr<int64_t> count = ElementCount(in.name(), shape);
    if (!count.ok()) return count.status();
    if (absl::Status s = CheckShape(in.name(), shape, spec.WireShape(*ts), spec); !s.ok()) return s;
    if (spec.batched()) {
      if (rows == -1) {
        rows = shape[0];
        rows_from = in.name();
      } else if (shape[0] != rows) {
        return InputError(in.name(), absl::StrCat("batch size ", shape[0], " differs from input '", rows_from,
                                                  "' (", rows, ")"));
      }
    }

    if (raw) {
      if (HasTypedContents(in)) {
        return InputError(in.name(), "has typed contents while raw_input_contents is used; use one or the other");
      }
      absl::StatusOr<at::Tensor> t = FromRawBytes(request.raw_input_contents(i), *type, shape);
      if (!t.ok()) return InputError(in.name(), t.status().message());
      decoded.inputs[index] = *std::move(t);
    } else {
      // Allocate only what the request really carries: a shape alone may
      // promise far more elements than were sent, and DecodeTyped reports
      // the mismatch before it writes anything.
      const bool counts_match = TypedValues(in.contents(), *type) == *count;
      at::Tensor t = at::empty(counts_match ? shape : std::vector<int64_t>{0},
                               at::TensorOptions().dtype(ScalarTypeOf(*type)));
      if (absl::Status s = DecodeTyped(in.name(), in.contents(), *type, *count, &t); !s.ok()) return s;
      decoded.inputs[index] = std::move(t);
    }
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    if (!seen[i] && !spec.inputs[i].generated()) return InputError(spec.inputs[i].name, "is missing");
  }
  decoded.rows = spec.batched() ? rows : 1;

  if (request.outputs_size() == 0) {
    for (size_t i = 0; i < spec.outputs.size(); ++i) decoded.outputs.push_back(static_cast<int>(i));
  } else {
    std::set<std::string> requested;
    for (const auto& out : request.outputs()) {
      const TensorSpec* ts = spec.FindOutput(out.name());
      if (ts == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("requested output '", out.name(), "' is not an output of model '", spec.name, "'"));
      }
      if (!requested.insert(out.name()).second) {
        return absl::InvalidArgumentError(absl::StrCat("output '", out.name(), "' is requested more than once"));
      }
      decoded.outputs.push_back(static_cast<int>(ts - spec.outputs.data()));
    }
  }
  return decoded;
}

absl::Status AppendRawOutput(absl::string_view name, const at::Tensor& tensor,
                             inference::ModelInferResponse* response) {
  absl::StatusOr<DataType> type = DataTypeOf(tensor);
  if (!type.ok()) return absl::InternalError(absl::StrCat("output '", name, "': ", type.status().message()));
  auto* out = response->add_outputs();
  out->set_name(std::string(name));
  out->set_datatype(std::string(DataTypeName(*type)));
  for (int64_t d : tensor.sizes()) out->add_shape(d);
  response->add_raw_output_contents(ToRawBytes(tensor));
  return absl::OkStatus();
}

}  // namespace dytserve
