// A caching CPU allocator for LibTorch: large blocks (activations, outputs)
// are kept when freed and handed out again, instead of going back to the
// kernel and being faulted in page by page on the next forward pass.
//
// Why: glibc serves allocations above 32 MiB with a fresh mmap every time, so
// a model whose activations are that large zero-fills and page-faults every
// one of them on every request; on a [4, 2048, 4096] fp32 tensor that costs
// several times the arithmetic. Smaller blocks come from glibc's heap once
// one of their size has been freed (its mmap threshold rises to it), so they
// are left to glibc by default: caching them too would only hold memory that
// batches of varying sizes leave behind.
//
// Contract:
// - Install() makes one process-wide instance LibTorch's CPU allocator; it is
//   never destroyed (tensors may outlive anything). Blocks below
//   `min_block_bytes` go to the allocator that was there before.
// - A freed large block is cached while the cache stays within
//   `max_cached_bytes`; otherwise it is unmapped at once.
// - ReleaseIdle() unmaps the blocks not handed out since the previous call;
//   the server calls it with its periodic trim, so memory that a burst needed
//   goes back within two trim periods.
// - Allocations and frees are reported to c10's memory-reporting hook (as
//   LibTorch's own allocator does), whether a block is new or reused; as
//   changes only, with totals of 0 (see Report in the .cc).
// - Freeing never throws: a block that cannot be cached is unmapped.
// Thread-safe.
#ifndef DYTSERVE_SERVER_CORE_CPU_BLOCK_CACHE_H_
#define DYTSERVE_SERVER_CORE_CPU_BLOCK_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <map>

#include <c10/core/Allocator.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace dytserve {

class CpuBlockCache final : public c10::Allocator {
 public:
  struct Options {
    int64_t max_cached_bytes = int64_t{1} << 30;
    int64_t min_block_bytes = int64_t{32} << 20;  // glibc's largest mmap threshold
  };
  struct Stats {
    int64_t in_use_bytes = 0;   // large blocks handed out
    int64_t cached_bytes = 0;   // large blocks kept for reuse
    int64_t reused = 0;         // large allocations served from the cache
    int64_t mapped = 0;         // large allocations that had to map fresh memory
  };

  // Installs the process-wide instance (the first call) and returns it; later
  // calls return the same instance with its options unchanged.
  static absl::StatusOr<CpuBlockCache*> Install(Options options);
  // The installed instance, or null.
  static CpuBlockCache* Installed();

  c10::DataPtr allocate(size_t bytes) override;
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Unmaps cached blocks that were not handed out since the previous call;
  // returns the bytes unmapped.
  int64_t ReleaseIdle();
  Stats stats() const;

 private:
  struct Cached {
    void* ptr;
    uint64_t generation;  // of the ReleaseIdle period it was returned in
  };

  CpuBlockCache(Options options, c10::Allocator* small);
  static void Free(void* ptr);
  void Return(void* ptr, size_t bytes);
  void* Map(size_t bytes) const;

  const Options options_;
  c10::Allocator* const small_;               // LibTorch's allocator, for small blocks
  const c10::DeleterFnPtr small_deleter_;      // its raw deleter: every small free goes there

  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<void*, size_t> in_use_ ABSL_GUARDED_BY(mu_);
  mutable std::multimap<size_t, Cached> cached_ ABSL_GUARDED_BY(mu_);
  mutable Stats stats_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_CPU_BLOCK_CACHE_H_
