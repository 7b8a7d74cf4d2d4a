#include "server/metrics/device_memory_collector.h"

#include <dlfcn.h>

#include <string>

namespace dytserve {
namespace {

// The few NVML declarations used, restated so that no NVML header is needed.
using NvmlReturn = int;  // NVML_SUCCESS == 0
using NvmlDevice = struct NvmlDeviceOpaque*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

prometheus::MetricFamily GaugeFamily(const char* name, const char* help) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddGauge(prometheus::MetricFamily* family, const std::string& gpu, double value) {
  prometheus::ClientMetric metric;
  metric.label.push_back({"gpu", gpu});
  metric.gauge.value = value;
  family->metric.push_back(metric);
}

}  // namespace

struct DeviceMemoryCollector::Nvml {
  void* handle = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*count)(unsigned int*) = nullptr;
  NvmlReturn (*by_index)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
};

DeviceMemoryCollector::DeviceMemoryCollector(const char* nvml_library) {
  void* handle = dlopen(nvml_library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return;
  auto nvml = std::make_unique<Nvml>();
  nvml->handle = handle;
  auto init = reinterpret_cast<NvmlReturn (*)()>(dlsym(handle, "nvmlInit_v2"));
  nvml->shutdown = reinterpret_cast<NvmlReturn (*)()>(dlsym(handle, "nvmlShutdown"));
  nvml->count = reinterpret_cast<NvmlReturn (*)(unsigned int*)>(dlsym(handle, "nvmlDeviceGetCount_v2"));
  nvml->by_index =
      reinterpret_cast<NvmlReturn (*)(unsigned int, NvmlDevice*)>(dlsym(handle, "nvmlDeviceGetHandleByIndex_v2"));
  nvml->memory = reinterpret_cast<NvmlReturn (*)(NvmlDevice, NvmlMemory*)>(dlsym(handle, "nvmlDeviceGetMemoryInfo"));
  if (init == nullptr || nvml->shutdown == nullptr || nvml->count == nullptr || nvml->by_index == nullptr ||
      nvml->memory == nullptr || init() != 0) {
    dlclose(handle);
    return;
  }
  nvml_ = std::move(nvml);
}

DeviceMemoryCollector::~DeviceMemoryCollector() {
  if (nvml_ != nullptr) {
    nvml_->shutdown();
    dlclose(nvml_->handle);
  }
}

std::vector<prometheus::MetricFamily> DeviceMemoryCollector::Collect() const {
  std::vector<prometheus::MetricFamily> families = CollectCudaAllocatorStats();
  if (nvml_ == nullptr) return families;
  unsigned int count = 0;
  if (nvml_->count(&count) != 0) return families;
  auto used = GaugeFamily("dytserve_gpu_memory_used_bytes", "GPU memory in use, all processes, as NVML reports it.");
  auto total = GaugeFamily("dytserve_gpu_memory_total_bytes", "GPU memory installed, as NVML reports it.");
  for (unsigned int i = 0; i < count; ++i) {
    NvmlDevice device = nullptr;
    NvmlMemory memory{};
    if (nvml_->by_index(i, &device) != 0 || nvml_->memory(device, &memory) != 0) continue;
    AddGauge(&used, std::to_string(i), static_cast<double>(memory.used));
    AddGauge(&total, std::to_string(i), static_cast<double>(memory.total));
  }
  families.push_back(std::move(used));
  families.push_back(std::move(total));
  return families;
}

}  // namespace dytserve
