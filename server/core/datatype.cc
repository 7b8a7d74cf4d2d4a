#include "server/core/datatype.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

struct TypeInfo {
  DataType type;
  absl::string_view name;
  std::size_t size;
  v1::DataType config_type;
};

constexpr std::array<TypeInfo, 10> kTypes = {{
    {DataType::kBool, "BOOL", 1, v1::TYPE_BOOL},
    {DataType::kUint8, "UINT8", 1, v1::TYPE_UINT8},
    {DataType::kInt8, "INT8", 1, v1::TYPE_INT8},
    {DataType::kInt16, "INT16", 2, v1::TYPE_INT16},
    {DataType::kInt32, "INT32", 4, v1::TYPE_INT32},
    {DataType::kInt64, "INT64", 8, v1::TYPE_INT64},
    {DataType::kFp16, "FP16", 2, v1::TYPE_FP16},
    {DataType::kBf16, "BF16", 2, v1::TYPE_BF16},
    {DataType::kFp32, "FP32", 4, v1::TYPE_FP32},
    {DataType::kFp64, "FP64", 8, v1::TYPE_FP64},
}};

const TypeInfo& Info(DataType type) { return kTypes[static_cast<std::size_t>(type)]; }

}  // namespace

absl::StatusOr<DataType> ParseDataType(absl::string_view wire_name) {
  for (const TypeInfo& info : kTypes) {
    if (info.name == wire_name) return info.type;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported datatype '", wire_name,
      "' (served: BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64)"));
}

absl::string_view DataTypeName(DataType type) { return Info(type).name; }

std::size_t DataTypeSize(DataType type) { return Info(type).size; }

absl::StatusOr<DataType> FromConfigType(v1::DataType type) {
  for (const TypeInfo& info : kTypes) {
    if (info.config_type == type) return info.type;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("data_type ", v1::DataType_Name(type), " is not a servable type"));
}

}  // namespace dytserve
