// Where a model instance runs: instance_group.device resolved against this
// server's build and hardware.
#ifndef DYTSERVE_SERVER_CORE_DEVICE_H_
#define DYTSERVE_SERVER_CORE_DEVICE_H_

#include <optional>

#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "server/core/model_config.h"

namespace dytserve {

// A CUDA build with at least one CUDA device visible.
bool CudaAvailable();

// "cpu", "cuda", "cuda:N" or "auto" (CUDA device 0 when CudaAvailable(), else
// the CPU, with a logged notice). `compiled_for` is set for a model compiled
// for one device type (an AOTInductor package): "auto" then means that type,
// and any other request is an error naming instance_group.device.
absl::StatusOr<c10::Device> ResolveDevice(const ModelSpec& spec,
                                          std::optional<c10::DeviceType> compiled_for = std::nullopt);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_DEVICE_H_
