#include "dytserve/tensor.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

constexpr std::pair<const char*, size_t> kSizes[] = {
    {"BOOL", 1}, {"UINT8", 1}, {"INT8", 1}, {"INT16", 2}, {"INT32", 4}, {"INT64", 8},
    {"FP16", 2}, {"BF16", 2},  {"FP32", 4}, {"FP64", 8},  {"UINT16", 2}, {"UINT32", 4}, {"UINT64", 8},
};

double HalfToDouble(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

double Bf16ToDouble(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename T>
void Widen(const std::string& data, std::vector<double>* out) {
  const size_t n = data.size() / sizeof(T);
  out->resize(n);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
    (*out)[i] = static_cast<double>(v);
  }
}

}  // namespace

size_t DatatypeSize(absl::string_view datatype) {
  for (const auto& [name, size] : kSizes) {
    if (datatype == name) return size;
  }
  return 0;
}

int64_t Tensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::Status Tensor::Check(absl::string_view want, size_t elem_size) const {
  if (datatype != want) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", datatype, ", not ", want));
  }
  if (static_cast<int64_t>(data.size()) != num_elements() * static_cast<int64_t>(elem_size)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' holds ", data.size(),
                                                   " bytes, its shape needs ", num_elements() * elem_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> Tensor::AsDoubles() const {
  const size_t size = DatatypeSize(datatype);
  if (size == 0) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': unknown datatype ", datatype));
  if (absl::Status s = Check(datatype, size); !s.ok()) return s;
  std::vector<double> out;
  if (datatype == "BOOL" || datatype == "UINT8") Widen<uint8_t>(data, &out);
  else if (datatype == "INT8") Widen<int8_t>(data, &out);
  else if (datatype == "INT16") Widen<int16_t>(data, &out);
  else if (datatype == "INT32") Widen<int32_t>(data, &out);
  else if (datatype == "INT64") Widen<int64_t>(data, &out);
  else if (datatype == "UINT16") Widen<uint16_t>(data, &out);
  else if (datatype == "UINT32") Widen<uint32_t>(data, &out);
  else if (datatype == "UINT64") Widen<uint64_t>(data, &out);
  else if (datatype == "FP32") Widen<float>(data, &out);
  else if (datatype == "FP64") Widen<double>(data, &out);
  else {
    std::vector<double> halves;
    Widen<uint16_t>(data, &halves);
    out.reserve(halves.size());
    for (double h : halves) {
      const auto bits = static_cast<uint16_t>(h);
      out.push_back(datatype == "FP16" ? HalfToDouble(bits) : Bf16ToDouble(bits));
    }
  }
  return out;
}

}  // namespace dytserve
