#include "server/core/device.h"

#include <torch/cuda.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/backend.h"
#include "server/core/log.h"

namespace dytserve {

bool CudaAvailable() {
#ifdef DYTSERVE_WITH_CUDA
  return torch::cuda::is_available();
#else
  return false;
#endif
}

absl::StatusOr<c10::Device> ResolveDevice(const ModelSpec& spec, std::optional<c10::DeviceType> compiled_for) {
  const std::string& wanted = spec.device;
  const bool cuda = CudaAvailable();
  const char* why_no_cuda =
#ifdef DYTSERVE_WITH_CUDA
      "CUDA is not available (no CUDA device is visible to this server)";
#else
      "CUDA is not available (this server is a CPU build; -DDYTSERVE_WITH_CUDA=ON builds for CUDA)";
#endif
  if (compiled_for == c10::DeviceType::CUDA) {
    if (!cuda) {
      return ModelError(spec, "instance_group.device",
                        absl::StrCat("the package was compiled for CUDA, and ", why_no_cuda));
    }
    if (wanted == "cpu") {
      return ModelError(spec, "instance_group.device",
                        "'cpu', but the package was compiled for CUDA (export it again for the CPU)");
    }
  } else if (compiled_for == c10::DeviceType::CPU) {
    if (wanted != "cpu" && wanted != "auto") {
      return ModelError(spec, "instance_group.device",
                        absl::StrCat("'", wanted, "', but the package was compiled for the CPU"));
    }
    return c10::Device(c10::kCPU);
  }
  if (wanted == "cpu") return c10::Device(c10::kCPU);
  if (wanted == "auto") {
    if (cuda) return c10::Device(c10::kCUDA, 0);
    LogInfo(absl::StrCat("model '", spec.name, "': device auto: ", why_no_cuda, ", serving on CPU"));
    return c10::Device(c10::kCPU);
  }
  if (!cuda) {
    return ModelError(spec, "instance_group.device", absl::StrCat("'", wanted, "' requested but ", why_no_cuda));
  }
  int index = 0;
  if (wanted != "cuda" && !absl::SimpleAtoi(absl::string_view(wanted).substr(5), &index)) {
    return ModelError(spec, "instance_group.device", absl::StrCat("'", wanted, "' is not cpu, cuda, cuda:N or auto"));
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index < 0 || index >= count) {
    return ModelError(spec, "instance_group.device",
                      absl::StrCat("'", wanted, "' but only ", count, " CUDA device(s) exist"));
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace dytserve
