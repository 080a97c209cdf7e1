#pragma once
// Stable 64-bit string hashing for hash buckets and crosses. Must never change:
// saved models rely on the same value mapping to the same bucket forever.
#include <cstdint>
#include <cstring>
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

// A 64-bit checksum of a byte stream: word-wise multiply-xorshift, at memory
// speed, to detect corrupt files (not cryptographic). The same bytes give the
// same value however they are split into add() calls (little-endian words).
class ByteHasher {
 public:
  void add(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (; n > 0 && fill_ != 0; ++p, --n) push(*p);  // finish a partial word
    for (; n >= 8; p += 8, n -= 8) {
      std::memcpy(&word_, p, 8);
      flush();
    }
    for (; n > 0; ++p, --n) push(*p);
  }
  std::uint64_t value() {
    if (fill_) flush();
    return mix64(h_);
  }

 private:
  void push(unsigned char byte) {
    word_ |= static_cast<std::uint64_t>(byte) << (8 * fill_);
    if (++fill_ == 8) flush();
  }
  void flush() {
    h_ = (h_ ^ word_) * 0x9e3779b97f4a7c15ULL;
    h_ ^= h_ >> 29;
    word_ = 0;
    fill_ = 0;
  }
  std::uint64_t h_ = 0x6d7472616e6b2121ULL, word_ = 0;
  int fill_ = 0;
};

inline std::uint64_t hash_bytes(std::string_view bytes) {
  ByteHasher h;
  h.add(bytes.data(), bytes.size());
  return h.value();
}

}  // namespace mtrank::data
