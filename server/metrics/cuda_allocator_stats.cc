// Built only when CMake found a CUDA LibTorch (DYTSERVE_WITH_CUDA).
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>

#include <string>

#include "server/metrics/device_memory_collector.h"

namespace dytserve {

std::vector<prometheus::MetricFamily> CollectCudaAllocatorStats() {
  const int devices = static_cast<int>(c10::cuda::device_count());
  if (devices == 0) return {};
  auto family = [](const char* name, const char* help) {
    prometheus::MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = prometheus::MetricType::Gauge;
    return f;
  };
  auto allocated = family("dytserve_cuda_allocated_bytes", "Bytes LibTorch's CUDA caching allocator has handed out.");
  auto reserved = family("dytserve_cuda_reserved_bytes", "Bytes LibTorch's CUDA caching allocator holds from the driver.");
  auto peak = family("dytserve_cuda_peak_allocated_bytes", "Most bytes the CUDA caching allocator had handed out at once.");
  for (int d = 0; d < devices; ++d) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d);
    const auto add = [d](prometheus::MetricFamily* f, int64_t value) {
      prometheus::ClientMetric m;
      m.label.push_back({"device", "cuda:" + std::to_string(d)});
      m.gauge.value = static_cast<double>(value);
      f->metric.push_back(m);
    };
    constexpr size_t kAggregate = 0;  // StatType::AGGREGATE
    add(&allocated, stats.allocated_bytes[kAggregate].current);
    add(&reserved, stats.reserved_bytes[kAggregate].current);
    add(&peak, stats.allocated_bytes[kAggregate].peak);
  }
  return {allocated, reserved, peak};
}

}  // namespace dytserve
