// How an experiment picks an arm. Without a routing key: weighted random.
// With one: weighted rendezvous hashing, a consistent hash that needs no ring
// and moves only the keys a weight change must move: raising one arm's weight
// only takes keys from the others, lowering it only gives its own away.
//
// Hashes are fixed functions of the bytes (no per-process seed), so a key
// maps to the same arm on every replica and across restarts.
#ifndef DYTSERVE_SERVER_CORE_ROUTING_H_
#define DYTSERVE_SERVER_CORE_ROUTING_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace dytserve {

// 64-bit FNV-1a followed by a finalizer that spreads every input bit.
uint64_t StableHash(absl::string_view bytes);

struct WeightedArm {
  uint32_t weight = 0;
  uint64_t seed = 0;  // StableHash of the arm's name
};

// Index of the arm whose cumulative weight range holds `draw`, which must
// be uniform in [0, sum of weights). Requires a positive total weight.
size_t PickByDraw(const std::vector<WeightedArm>& arms, uint64_t draw);

// The arm with the highest score weight / -ln(u), u uniform in (0, 1) from
// the hash of (key, arm seed). Arms of weight 0 are never picked. Requires a
// positive total weight.
size_t PickByKey(const std::vector<WeightedArm>& arms, absl::string_view key);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_ROUTING_H_
