// Each test installs the process-wide cache (the first Install wins; CTest
// runs every test in a process of its own) and reasons in deltas of stats().
#include "server/core/cpu_block_cache.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace dytserve {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

CpuBlockCache* Cache() {
  CpuBlockCache::Options options;
  options.max_cached_bytes = 64 * kMiB;
  options.min_block_bytes = kMiB;
  absl::StatusOr<CpuBlockCache*> cache = CpuBlockCache::Install(options);
  EXPECT_TRUE(cache.ok()) << cache.status();
  return cache.ok() ? *cache : nullptr;
}

at::Tensor Floats(int64_t mib) { return at::empty({mib * kMiB / 4}, at::kFloat); }

TEST(CpuBlockCache, InstallsOnceAndBecomesLibTorchsCpuAllocator) {
  CpuBlockCache* cache = Cache();
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(CpuBlockCache::Installed(), cache);
  EXPECT_EQ(c10::GetCPUAllocator(), cache);
  CpuBlockCache::Options other;
  other.max_cached_bytes = 1;
  EXPECT_EQ(*CpuBlockCache::Install(other), cache);
}

TEST(CpuBlockCache, AFreedLargeBlockIsHandedOutAgain) {
  CpuBlockCache* cache = Cache();
  const CpuBlockCache::Stats before = cache->stats();
  void* first = nullptr;
  {
    at::Tensor t = Floats(8);
    first = t.data_ptr();
    t.fill_(1);
    EXPECT_EQ(cache->stats().in_use_bytes - before.in_use_bytes, 8 * kMiB);
  }
  EXPECT_EQ(cache->stats().cached_bytes - before.cached_bytes, 8 * kMiB);
  at::Tensor again = Floats(8);
  EXPECT_EQ(again.data_ptr(), first);
  EXPECT_EQ(cache->stats().reused - before.reused, 1);
  EXPECT_EQ(cache->stats().mapped - before.mapped, 1);
  // A slightly smaller request shares the block (ragged batches); a much
  // smaller one does not take it.
  again.reset();
  at::Tensor smaller = at::empty({8 * kMiB / 4 - 1000}, at::kFloat);
  EXPECT_EQ(smaller.data_ptr(), first);
  smaller.reset();
  at::Tensor much_smaller = Floats(2);
  EXPECT_NE(much_smaller.data_ptr(), first);
}

TEST(CpuBlockCache, SmallBlocksGoToLibTorchsAllocator) {
  CpuBlockCache* cache = Cache();
  const CpuBlockCache::Stats before = cache->stats();
  std::vector<at::Tensor> small;
  for (int i = 0; i < 100; ++i) small.push_back(at::ones({1000}));
  EXPECT_EQ(cache->stats().in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(cache->stats().mapped, before.mapped);
  EXPECT_EQ(small[99].sum().item<float>(), 1000);
}

TEST(CpuBlockCache, BlocksUnusedForAWholePeriodAreReleased) {
  CpuBlockCache* cache = Cache();
  { at::Tensor t = Floats(4); }
  const int64_t cached = cache->stats().cached_bytes;
  ASSERT_GE(cached, 4 * kMiB);
  cache->ReleaseIdle();  // the block was returned in this period: kept
  EXPECT_EQ(cache->stats().cached_bytes, cached);
  EXPECT_EQ(cache->ReleaseIdle(), cached);  // not used since: released
  EXPECT_EQ(cache->stats().cached_bytes, 0);
  // A block in use across periods is not touched, and is cached when freed.
  at::Tensor held = Floats(4);
  cache->ReleaseIdle();
  cache->ReleaseIdle();
  held.fill_(2);
  EXPECT_EQ(held.sum().item<float>(), 2.0f * kMiB);
  held.reset();
  EXPECT_EQ(cache->stats().cached_bytes, 4 * kMiB);
}

TEST(CpuBlockCache, CachesNoMoreThanItsCap) {
  CpuBlockCache* cache = Cache();  // 64 MiB
  cache->ReleaseIdle();
  cache->ReleaseIdle();
  {
    std::vector<at::Tensor> many;
    for (int i = 0; i < 10; ++i) many.push_back(Floats(16));
  }
  EXPECT_EQ(cache->stats().cached_bytes, 64 * kMiB);
  EXPECT_EQ(cache->stats().in_use_bytes, 0);
}

// What Model::last_peak_bytes() relies on: reused blocks are reported too.
class Tracker final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t bytes, size_t, size_t, c10::Device) override { total += bytes; peak = std::max(peak, total); }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t total = 0;
  int64_t peak = 0;
};

TEST(CpuBlockCache, ReportsReusedBlocksToTheMemoryHook) {
  Cache();
  { at::Tensor warm = Floats(8); }  // now cached
  auto tracker = std::make_shared<Tracker>();
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, tracker);
    at::Tensor t = Floats(8);
    EXPECT_EQ(tracker->total, 8 * kMiB);
  }
  EXPECT_EQ(tracker->total, 0);
  EXPECT_EQ(tracker->peak, 8 * kMiB);
}

TEST(CpuBlockCache, RawAllocateAndDeallocateWork) {
  // oneDNN's scratch memory comes through raw_allocate / raw_deallocate.
  CpuBlockCache* cache = Cache();
  for (size_t bytes : {size_t{100}, size_t{3} << 20}) {
    void* p = cache->raw_allocate(bytes);
    ASSERT_NE(p, nullptr);
    std::memset(p, 7, bytes);
    cache->raw_deallocate(p);
  }
}

TEST(CpuBlockCache, ConcurrentAllocationsKeepTheBooksStraight) {
  CpuBlockCache* cache = Cache();
  const int64_t in_use = cache->stats().in_use_bytes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        at::Tensor a = Floats(1 + (i + t) % 3);
        at::Tensor b = at::empty({1000});
        a.fill_(static_cast<float>(t));
        EXPECT_EQ(a[0].item<float>(), static_cast<float>(t));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(cache->stats().in_use_bytes, in_use);
  EXPECT_LE(cache->stats().cached_bytes, 64 * kMiB);
}

}  // namespace
}  // namespace dytserve
