#pragma once
// Stable 64-bit string hashing for hash buckets and crosses. Must never change:
// saved models rely on the same value mapping to the same bucket forever.
#include <cstdint>
#include <string_view>

namespace mtrank::data {

// splitmix64 finalizer: a well-mixed 64-bit permutation.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a over the bytes, seeded, then mixed. Values are short, so byte-wise is fast enough.
inline std::uint64_t hash_string(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ mix64(seed);
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

// Combines hashes for cross features: order matters (a x b != b x a is fine: columns are fixed).
inline std::uint64_t hash_combine(std::uint64_t a, std::uint64_t b) { return mix64(a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2))); }

}  // namespace mtrank::data
