// A named tensor as the client library sees it: Open Inference Protocol
// datatype, shape and raw row-major little-endian bytes. No LibTorch needed.
#ifndef DYTSERVE_CLIENT_TENSOR_H_
#define DYTSERVE_CLIENT_TENSOR_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dytserve {

// Bytes per element of a protocol datatype ("FP32" -> 4); 0 when unknown.
size_t DatatypeSize(absl::string_view datatype);

// The protocol datatype of a C++ element type.
template <typename T>
constexpr const char* DatatypeOf() {
  if constexpr (std::is_same_v<T, bool>) return "BOOL";
  else if constexpr (std::is_same_v<T, uint8_t>) return "UINT8";
  else if constexpr (std::is_same_v<T, int8_t>) return "INT8";
  else if constexpr (std::is_same_v<T, int16_t>) return "INT16";
  else if constexpr (std::is_same_v<T, int32_t>) return "INT32";
  else if constexpr (std::is_same_v<T, int64_t>) return "INT64";
  else if constexpr (std::is_same_v<T, float>) return "FP32";
  else if constexpr (std::is_same_v<T, double>) return "FP64";
  else static_assert(sizeof(T) == 0, "no protocol datatype for this C++ type (FP16/BF16: use FromRaw)");
}

struct Tensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::string data;  // raw bytes

  int64_t num_elements() const;

  template <typename T>
  static Tensor From(std::string name, std::vector<int64_t> shape, const std::vector<T>& values) {
    Tensor t{std::move(name), DatatypeOf<T>(), std::move(shape), {}};
    t.data.resize(values.size() * sizeof(T));
    if constexpr (std::is_same_v<T, bool>) {
      for (size_t i = 0; i < values.size(); ++i) t.data[i] = values[i] ? 1 : 0;
    } else if (!values.empty()) {
      std::memcpy(t.data.data(), values.data(), t.data.size());
    }
    return t;
  }

  // The elements as T; INVALID_ARGUMENT when T does not match the datatype
  // or the byte count does not match the shape.
  template <typename T>
  absl::StatusOr<std::vector<T>> As() const {
    if (absl::Status s = Check(DatatypeOf<T>(), sizeof(T)); !s.ok()) return s;
    std::vector<T> out(data.size() / sizeof(T));
    if constexpr (std::is_same_v<T, bool>) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = data[i] != 0;
    } else if (!out.empty()) {
      std::memcpy(out.data(), data.data(), data.size());
    }
    return out;
  }

  // Any numeric datatype (FP16 and BF16 included) widened to double.
  absl::StatusOr<std::vector<double>> AsDoubles() const;

 private:
  absl::Status Check(absl::string_view want, size_t elem_size) const;
};

}  // namespace dytserve

#endif  // DYTSERVE_CLIENT_TENSOR_H_
