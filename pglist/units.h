// SPDX-License-Identifier: Apache-2.0
// Units of the allocation core: IOVAs (bytes the device sees), page frame
// numbers (IOVA / page size), page counts, and runs of pages.
//
// All segment IOVAs are multiples of the pool's page size, so the core works
// on absolute page frame numbers: IOVA alignment and boundary constraints
// become alignment and boundary on the frame number, whatever a segment's
// base. Nothing here allocates; everything is constexpr-friendly.
#ifndef PHYSPOOL_PGLIST_UNITS_H_
#define PHYSPOOL_PGLIST_UNITS_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>

namespace physpool::pglist {

// A count of pool pages.
struct PageCount {
  uint64_t value = 0;
  constexpr PageCount() = default;
  constexpr explicit PageCount(uint64_t v) : value(v) {}
  friend constexpr bool operator==(PageCount a, PageCount b) {
    return a.value == b.value;
  }
  friend constexpr bool operator!=(PageCount a, PageCount b) {
    return a.value != b.value;
  }
  friend constexpr bool operator<(PageCount a, PageCount b) {
    return a.value < b.value;
  }
  friend constexpr bool operator<=(PageCount a, PageCount b) {
    return a.value <= b.value;
  }
  friend constexpr bool operator>(PageCount a, PageCount b) {
    return a.value > b.value;
  }
  friend constexpr bool operator>=(PageCount a, PageCount b) {
    return a.value >= b.value;
  }
  friend constexpr PageCount operator+(PageCount a, PageCount b) {
    return PageCount(a.value + b.value);
  }
  // REQUIRES: a >= b.
  friend constexpr PageCount operator-(PageCount a, PageCount b) {
    return PageCount(a.value - b.value);
  }
  PageCount& operator+=(PageCount b) {
    value += b.value;
    return *this;
  }
  PageCount& operator-=(PageCount b) {
    value -= b.value;
    return *this;
  }
};

// A page frame number: IOVA / page size.
struct Pfn {
  uint64_t value = 0;
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t v) : value(v) {}
  friend constexpr bool operator==(Pfn a, Pfn b) { return a.value == b.value; }
  friend constexpr bool operator!=(Pfn a, Pfn b) { return a.value != b.value; }
  friend constexpr bool operator<(Pfn a, Pfn b) { return a.value < b.value; }
  friend constexpr bool operator<=(Pfn a, Pfn b) { return a.value <= b.value; }
  friend constexpr bool operator>(Pfn a, Pfn b) { return a.value > b.value; }
  friend constexpr bool operator>=(Pfn a, Pfn b) { return a.value >= b.value; }
  friend constexpr Pfn operator+(Pfn a, PageCount n) {
    return Pfn(a.value + n.value);
  }
  // REQUIRES: a >= b.
  friend constexpr PageCount operator-(Pfn a, Pfn b) {
    return PageCount(a.value - b.value);
  }
};

// An I/O virtual address in bytes.
using Iova = uint64_t;
inline constexpr Iova kMaxIova = std::numeric_limits<uint64_t>::max();

// A run of consecutive pages [start, start + pages).
struct PageRun {
  Pfn start;
  PageCount pages;

  constexpr Pfn end() const { return start + pages; }
  constexpr bool Contains(Pfn p) const { return start <= p && p < end(); }
  constexpr bool Overlaps(const PageRun& o) const {
    return start < o.end() && o.start < end();
  }
  friend constexpr bool operator==(const PageRun& a, const PageRun& b) {
    return a.start == b.start && a.pages == b.pages;
  }
  friend constexpr bool operator!=(const PageRun& a, const PageRun& b) {
    return !(a == b);
  }
};

inline std::ostream& operator<<(std::ostream& os, PageCount n) {
  return os << n.value << "p";
}
inline std::ostream& operator<<(std::ostream& os, Pfn p) {
  return os << "pfn:" << p.value;
}
inline std::ostream& operator<<(std::ostream& os, const PageRun& r) {
  return os << "[" << r.start.value << "+" << r.pages.value << ")";
}

// Arithmetic helpers on raw integers. Alignments are powers of two.
constexpr bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// The least power of two >= x (1 for x <= 1). REQUIRES: x <= 2^63.
constexpr uint64_t NextPow2(uint64_t x) {
  uint64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// Sum, or nullopt on overflow.
constexpr std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t r = a + b;
  if (r < a) return std::nullopt;
  return r;
}

// Product, or nullopt on overflow.
constexpr std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::nullopt;
  }
  return a * b;
}

// Smallest multiple of `align` >= x, or nullopt if that overflows.
// REQUIRES: IsPowerOfTwo(align).
constexpr std::optional<uint64_t> CheckedAlignUp(uint64_t x, uint64_t align) {
  auto r = CheckedAdd(x, align - 1);
  if (!r) return std::nullopt;
  return *r & ~(align - 1);
}

// Largest multiple of `align` <= x. REQUIRES: IsPowerOfTwo(align).
constexpr uint64_t AlignDown(uint64_t x, uint64_t align) {
  return x & ~(align - 1);
}

}  // namespace physpool::pglist

#endif  // PHYSPOOL_PGLIST_UNITS_H_
