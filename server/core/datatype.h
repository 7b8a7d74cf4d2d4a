// The tensor element types dytserve serves, and their spellings on the wire
// (Open Inference Protocol names) and in config.pbtxt (TYPE_* enum).
#ifndef DYTSERVE_SERVER_CORE_DATATYPE_H_
#define DYTSERVE_SERVER_CORE_DATATYPE_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "dytserve/v1/model_config.pb.h"

namespace dytserve {

enum class DataType {
  kBool,
  kUint8,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
};

// "FP32" -> kFp32. Types the protocol knows but dytserve does not serve
// (UINT16, BYTES, ...) are INVALID_ARGUMENT naming the type.
absl::StatusOr<DataType> ParseDataType(absl::string_view wire_name);
absl::string_view DataTypeName(DataType type);
std::size_t DataTypeSize(DataType type);

absl::StatusOr<DataType> FromConfigType(v1::DataType type);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_DATATYPE_H_
