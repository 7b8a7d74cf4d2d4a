#include "server/core/cpu_block_cache.h"

#include <sys/mman.h>

#include <atomic>
#include <utility>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

namespace dytserve {
namespace {

// Large blocks start on a 2 MiB boundary: transparent huge pages can back
// them, and a pointer off that boundary is known to be small without a lookup.
constexpr size_t kAlign = size_t{2} << 20;

std::atomic<CpuBlockCache*> g_instance{nullptr};

// Sizes a cached block can serve: rounding lets requests that differ a
// little (ragged batches) share blocks.
size_t RoundUp(size_t bytes) {
  const size_t step = bytes >= (size_t{8} << 20) ? kAlign : size_t{64} << 10;
  return (bytes + step - 1) / step * step;
}

// Only the change is reported, with totals of 0: the small blocks LibTorch's
// own allocator reports carry its totals, which know nothing of these, so
// any total given here would disagree with the next one it gives.
void Report(void* ptr, int64_t delta) {
  if (!c10::memoryProfilingEnabled()) return;
  c10::reportMemoryUsageToProfiler(ptr, delta, 0, 0, c10::Device(c10::DeviceType::CPU));
}

// Beyond this a request cannot be rounded up and aligned without overflow;
// no machine has that much memory anyway.
constexpr size_t kLargestBlock = size_t{1} << 56;

}  // namespace

absl::StatusOr<CpuBlockCache*> CpuBlockCache::Install(Options options) {
  static absl::Mutex install_mu(absl::kConstInit);
  absl::MutexLock lock(&install_mu);
  if (CpuBlockCache* installed = g_instance.load()) return installed;
  if (options.max_cached_bytes < 0 || options.min_block_bytes < 1) {
    return absl::InvalidArgumentError("CPU block cache: max_cached_bytes must be >= 0 and min_block_bytes >= 1");
  }
  // Small blocks are handed back through the current allocator's raw
  // deleter, so it must have one (LibTorch's default does).
  c10::Allocator* current = c10::GetCPUAllocator();
  if (current->raw_deleter() == nullptr) {
    return absl::FailedPreconditionError("CPU block cache: the current CPU allocator has no raw deleter");
  }
  auto* cache = new CpuBlockCache(options, current);  // never freed: tensors may outlive main
  c10::SetCPUAllocator(cache, /*priority=*/1);
  g_instance.store(cache);
  return cache;
}

CpuBlockCache* CpuBlockCache::Installed() { return g_instance.load(); }

CpuBlockCache::CpuBlockCache(Options options, c10::Allocator* small)
    : options_(options), small_(small), small_deleter_(small->raw_deleter()) {}

void* CpuBlockCache::Map(size_t bytes) const {
  // Over-map by the alignment and cut off both ends.
  void* raw = mmap(nullptr, bytes + kAlign, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kAlign - 1) / kAlign * kAlign;
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = kAlign - (aligned - start);  // in (0, kAlign]
  munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  void* block = reinterpret_cast<void*>(aligned);
  if (bytes >= kAlign) madvise(block, bytes, MADV_HUGEPAGE);  // a hint; fine if refused
  return block;
}

c10::DataPtr CpuBlockCache::allocate(size_t bytes) {
  if (static_cast<int64_t>(bytes) < options_.min_block_bytes) {
    c10::DataPtr small = small_->allocate(bytes);
    // Freed through small_'s raw deleter, which takes the data pointer.
    TORCH_CHECK(small.get() == small.get_context(), "CPU block cache: the previous allocator's context is not its data");
    void* ptr = small.release_context();
    return {ptr, ptr, &Free, c10::Device(c10::DeviceType::CPU)};
  }
  TORCH_CHECK_WITH(OutOfMemoryError, bytes <= kLargestBlock, "CPU out of memory: ", bytes, " bytes requested");
  const size_t wanted = RoundUp(bytes);
  void* ptr = nullptr;
  size_t size = wanted;
  {
    absl::MutexLock lock(&mu_);
    // The smallest cached block that fits, unless it would waste over 1/8.
    auto it = cached_.lower_bound(wanted);
    if (it != cached_.end() && it->first <= wanted + wanted / 8) {
      size = it->first;
      ptr = it->second.ptr;
      cached_.erase(it);
      stats_.cached_bytes -= static_cast<int64_t>(size);
      ++stats_.reused;
      in_use_.emplace(ptr, size);
      stats_.in_use_bytes += static_cast<int64_t>(size);
    }
  }
  if (ptr == nullptr) {
    ptr = Map(size);
    if (ptr == nullptr) {
      // Whatever is cached goes first; then one more try.
      std::vector<std::pair<void*, size_t>> release;
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [bytes_cached, block] : cached_) release.emplace_back(block.ptr, bytes_cached);
        cached_.clear();
        stats_.cached_bytes = 0;
      }
      for (const auto& [p, n] : release) munmap(p, n);
      ptr = Map(size);
    }
    TORCH_CHECK_WITH(OutOfMemoryError, ptr != nullptr, "CPU out of memory: could not map ", size, " bytes");
    try {
      absl::MutexLock lock(&mu_);
      in_use_.emplace(ptr, size);
      ++stats_.mapped;
      stats_.in_use_bytes += static_cast<int64_t>(size);
    } catch (const std::bad_alloc&) {
      munmap(ptr, size);
      TORCH_CHECK_WITH(OutOfMemoryError, false, "CPU out of memory: no room to track a block of ", size, " bytes");
    }
  }
  Report(ptr, static_cast<int64_t>(size));
  return {ptr, ptr, &Free, c10::Device(c10::DeviceType::CPU)};
}

void CpuBlockCache::Free(void* ptr) {
  if (ptr == nullptr) return;
  CpuBlockCache* self = g_instance.load();
  if (reinterpret_cast<uintptr_t>(ptr) % kAlign == 0) {
    size_t size = 0;
    {
      absl::MutexLock lock(&self->mu_);
      auto it = self->in_use_.find(ptr);
      if (it != self->in_use_.end()) {
        size = it->second;
        self->in_use_.erase(it);
      }
    }
    if (size > 0) return self->Return(ptr, size);
  }
  self->small_deleter_(ptr);
}

void CpuBlockCache::Return(void* ptr, size_t bytes) {
  // Runs inside a DataPtr's deleter, which must not throw: a block that
  // cannot be filed in the cache is unmapped instead.
  bool keep = false;
  {
    absl::MutexLock lock(&mu_);
    stats_.in_use_bytes -= static_cast<int64_t>(bytes);
    if (stats_.cached_bytes + static_cast<int64_t>(bytes) <= options_.max_cached_bytes) {
      try {
        cached_.emplace(bytes, Cached{ptr, generation_});
        stats_.cached_bytes += static_cast<int64_t>(bytes);
        keep = true;
      } catch (const std::bad_alloc&) {
      }
    }
  }
  Report(ptr, -static_cast<int64_t>(bytes));
  if (!keep) munmap(ptr, bytes);
}

int64_t CpuBlockCache::ReleaseIdle() {
  std::vector<std::pair<void*, size_t>> release;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = cached_.begin(); it != cached_.end();) {
      if (it->second.generation < generation_) {
        release.emplace_back(it->second.ptr, it->first);
        stats_.cached_bytes -= static_cast<int64_t>(it->first);
        it = cached_.erase(it);
      } else {
        ++it;
      }
    }
    ++generation_;
  }
  int64_t released = 0;
  for (const auto& [ptr, bytes] : release) {
    munmap(ptr, bytes);
    released += static_cast<int64_t>(bytes);
  }
  return released;
}

CpuBlockCache::Stats CpuBlockCache::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace dytserve
