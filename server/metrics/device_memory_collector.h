// GPU memory for /metrics, from two sources, each optional at run time:
// - NVML (the NVIDIA driver's library, dlopen'ed so that a CPU build neither
//   links nor needs it): used and total bytes per GPU;
// - LibTorch's CUDA caching allocator: allocated, reserved and peak bytes per
//   device, compiled in only when CMake found a CUDA LibTorch.
// On a machine without either, the collector exports nothing.
#ifndef DYTSERVE_SERVER_METRICS_DEVICE_MEMORY_COLLECTOR_H_
#define DYTSERVE_SERVER_METRICS_DEVICE_MEMORY_COLLECTOR_H_

#include <memory>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace dytserve {

class DeviceMemoryCollector : public prometheus::Collectable {
 public:
  // `nvml_library`: where to find NVML; the default is the driver's soname.
  explicit DeviceMemoryCollector(const char* nvml_library = "libnvidia-ml.so.1");
  ~DeviceMemoryCollector() override;

  std::vector<prometheus::MetricFamily> Collect() const override;
  bool nvml_available() const { return nvml_ != nullptr; }

 private:
  struct Nvml;
  std::unique_ptr<Nvml> nvml_;
};

// CUDA caching allocator figures; defined in cuda_allocator_stats.cc when
// built with CUDA, else returns nothing.
std::vector<prometheus::MetricFamily> CollectCudaAllocatorStats();

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_DEVICE_MEMORY_COLLECTOR_H_
