#include "server/core/routing.h"

#include <cmath>
#include <limits>

namespace dytserve {
namespace {

// splitmix64's finalizer: FNV-1a alone leaves the high bits of short keys
// poorly mixed, and u is taken from the high bits.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t StableHash(absl::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

size_t PickByDraw(const std::vector<WeightedArm>& arms, uint64_t draw) {
  for (size_t i = 0; i < arms.size(); ++i) {
    if (draw < arms[i].weight) return i;
    draw -= arms[i].weight;
  }
  // Unreachable for a draw below the total; the last positive arm otherwise.
  for (size_t i = arms.size(); i-- > 0;) {
    if (arms[i].weight > 0) return i;
  }
  return 0;
}

size_t PickByKey(const std::vector<WeightedArm>& arms, absl::string_view key) {
  const uint64_t key_hash = StableHash(key);
  size_t best = 0;
  double best_score = -1;
  for (size_t i = 0; i < arms.size(); ++i) {
    if (arms[i].weight == 0) continue;
    // 53 high bits, offset by half a step: u in (0, 1), never 0 or 1.
    const uint64_t h = Mix(key_hash ^ arms[i].seed);
    const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
    const double score = static_cast<double>(arms[i].weight) / -std::log(u);
    if (score > best_score) {
      best_score = score;
      best = i;
    }
  }
  return best;
}

}  // namespace dytserve
