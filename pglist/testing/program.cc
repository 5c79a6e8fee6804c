// SPDX-License-Identifier: Apache-2.0
#include "pglist/testing/program.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pglist/testing/order_check.h"
#include "pglist/testing/reference_pool.h"

namespace physpool::pglist::testing {
namespace {

constexpr uint64_t kPage = 4096;

class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> b) : b_(b) {}
  bool done() const { return pos_ >= b_.size(); }
  uint8_t u8() { return pos_ < b_.size() ? b_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }

 private:
  absl::Span<const uint8_t> b_;
  size_t pos_ = 0;
};

SegmentSpec NextSegment(Reader& r, uint64_t* cursor) {
  SegmentSpec s;
  const uint8_t shape = r.u8();
  uint64_t base = *cursor + r.u8() % 8;        // gap 0: adjacent segments
  if (shape % 16 == 0 && base > 4) base -= 4;  // sometimes overlaps
  s.pages = PageCount(1 + r.u16() % 400);
  s.iova = base * kPage;
  s.freelist = r.u8() % 3;
  s.numa = shape % 2;
  if (shape % 8 == 1 && s.pages.value > 2) {
    s.avail_begin = r.u8() % (s.pages.value / 2);
    s.avail_end = s.pages.value - r.u8() % (s.pages.value / 2);
  }
  *cursor = std::max(*cursor, base + s.pages.value);
  return s;
}

Request NextRequest(Reader& r, uint64_t span, bool* reclaim) {
  Request q;
  const uint8_t flags = r.u8();
  const uint8_t v = r.u8();
  const uint64_t pages = v < 200 ? 1 + v % 16 : 1 + r.u16() % 512;
  q.bytes = pages * kPage - (flags & 1 ? r.u8() % kPage : 0);
  if (flags == 0xff) q.bytes = 0;  // invalid
  const uint8_t a = r.u8();
  if (a == 0xff) {
    q.alignment = 3 * kPage;  // invalid
  } else if (a % 3 != 0) {
    q.alignment = (uint64_t{1} << (a % 10)) * (a % 5 == 0 ? 8 : kPage);
  }
  const uint8_t b = r.u8();
  if (b == 0xff) {
    q.boundary = kPage;  // too small unless one page
  } else if (b % 4 == 0) {
    q.boundary = NextPow2(pages * kPage) << (b >> 6);
  }
  const uint8_t w = r.u8();
  if (w % 4 == 0) {
    q.low = (r.u16() % (span + 64)) * kPage + (w & 16 ? r.u8() : 0);
    q.high = q.low + (1 + r.u16() % 1024) * kPage;
  } else if (w % 4 == 1) {
    q.high = (r.u16() % (span + 64)) * kPage;
  }
  const uint8_t m = r.u8() % 8;
  q.max_segments = m == 0 || m == 6 ? 0
                   : m <= 3         ? 1
                   : m == 4         ? 2
                   : m == 5         ? 3
                                    : r.u8();
  q.preemptible = flags & 2;
  q.privileged = (flags & 12) == 12;
  *reclaim = flags & 16;
  return q;
}

}  // namespace

Program DecodeProgram(absl::Span<const uint8_t> bytes) {
  Reader r(bytes);
  Program p;
  p.options.page_size = kPage;
  const uint8_t options = r.u8();
  p.options.strategy = options & 1 ? Strategy::kBigFirst : Strategy::kAddress;
  p.options.placement = options & 2 ? Placement::kBestFit : Placement::kNextFit;
  const uint8_t reserve = r.u8();
  p.options.reserve_pages = PageCount((reserve & 3) == 0 ? reserve >> 3 : 0);
  uint64_t cursor = r.u8();  // bases not aligned to anything in particular
  const int segments = 1 + r.u8() % 4;
  for (int i = 0; i < segments; ++i)
    p.ops.push_back(AddSegmentOp{NextSegment(r, &cursor)});
  while (!r.done()) {
    const uint8_t kind = r.u8() % 32;
    if (kind < 17) {
      AllocOp op;
      op.req = NextRequest(r, cursor, &op.reclaim);
      p.ops.push_back(op);
    } else if (kind < 28) {
      p.ops.push_back(FreeOp{r.u16()});
    } else if (kind < 30) {
      p.ops.push_back(DrainOp{r.u8(), (kind & 1) == 0});
    } else if (kind == 30) {
      p.ops.push_back(AddSegmentOp{NextSegment(r, &cursor)});
    } else {
      p.ops.push_back(RemoveSegmentOp{r.u8()});
    }
  }
  return p;
}

std::string DescribeOp(const Op& op) {
  struct V {
    std::string operator()(const AddSegmentOp& o) {
      return absl::StrCat("segment iova=", o.spec.iova,
                          " pages=", o.spec.pages.value,
                          " freelist=", o.spec.freelist, " avail=[",
                          o.spec.avail_begin, ",", o.spec.avail_end, ")");
    }
    std::string operator()(const AllocOp& o) {
      const Request& q = o.req;
      return absl::StrCat(
          "alloc bytes=", q.bytes, " low=", q.low, " high=", q.high,
          " align=", q.alignment, " boundary=", q.boundary,
          " max_segments=", q.max_segments, " preemptible=", q.preemptible,
          " privileged=", q.privileged, " reclaim=", o.reclaim);
    }
    std::string operator()(const FreeOp& o) {
      return absl::StrCat("free pick=", o.pick);
    }
    std::string operator()(const DrainOp& o) {
      return absl::StrCat(o.drain ? "drain" : "undrain", " pick=", o.pick);
    }
    std::string operator()(const RemoveSegmentOp& o) {
      return absl::StrCat("remove pick=", o.pick);
    }
  };
  return std::visit(V{}, op);
}

namespace {

std::string Runs(const std::vector<PageRun>& runs) {
  return absl::StrJoin(runs, " ", [](std::string* out, const PageRun& r) {
    absl::StrAppend(out, "[", r.start.value, "+", r.pages.value, ")");
  });
}

std::string Outcome(const absl::StatusOr<Allocation>& a) {
  if (!a.ok()) {
    return absl::StrCat(absl::StatusCodeToString(a.status().code()), "/",
                        FailReasonName(FailReasonOf(a.status())));
  }
  return absl::StrCat("id=", a->id, " path=", PathName(a->path),
                      " runs=", Runs(a->runs));
}

bool Same(const absl::StatusOr<Allocation>& a,
          const absl::StatusOr<Allocation>& b) {
  if (a.status().code() != b.status().code()) return false;
  if (!a.ok()) return FailReasonOf(a.status()) == FailReasonOf(b.status());
  return a->id == b->id && a->path == b->path && a->runs == b->runs &&
         a->preemptible == b->preemptible;
}

// Every run honours the request: alignment, boundary, window; run count.
absl::Status CheckPlacement(const Allocation& a, const Request& req) {
  auto c = Normalize(req, kPage);
  if (!c.ok()) return absl::InternalError("allocated an invalid request");
  if (a.pages() != c->pages) return absl::InternalError("wrong page count");
  if (c->max_runs != 0 && a.runs.size() > c->max_runs) {
    return absl::InternalError("too many runs");
  }
  for (const PageRun& r : a.runs) {
    if (!c->Admits(r.start.value, r.pages.value)) {
      return absl::InternalError(absl::StrCat("run ", r.start.value, "+",
                                              r.pages.value,
                                              " breaks the constraints"));
    }
  }
  return absl::OkStatus();
}

void Add(const PoolStats& from, PoolStats* to) {
  for (int p = 0; p < kNumPaths; ++p) {
    to->paths[p].attempts += from.paths[p].attempts;
    to->paths[p].successes += from.paths[p].successes;
    for (int r = 0; r < kNumFailReasons; ++r) {
      to->paths[p].failures[r] += from.paths[p].failures[r];
    }
    for (int q = 0; q < kNumPaths; ++q)
      to->fallbacks[p][q] += from.fallbacks[p][q];
  }
}

// Multi answers that mix freelists, and those served below a freelist
// that held one run.
void Count(const Pool& pool, const Allocation& a, std::optional<size_t> first,
           RunTotals* totals) {
  const std::vector<SegmentInfo> segs = pool.Segments();
  auto list_of = [&](Pfn p) {
    for (const SegmentInfo& s : segs) {
      if (s.avail.start <= p && p < s.avail.end()) return s.spec.freelist;
    }
    return uint32_t{0};
  };
  uint32_t lo = ~uint32_t{0}, hi = 0;
  for (const PageRun& r : a.runs) {
    lo = std::min(lo, list_of(r.start));
    hi = std::max(hi, list_of(r.start));
  }
  if (lo != hi) ++totals->multi_mixed;
  if (first && segs[*first].spec.freelist > hi) ++totals->multi_below_one_run;
}

}  // namespace

absl::Status RunAgainstModel(const Program& program, RunTotals* totals) {
  auto created = Pool::Create(program.options);
  if (!created.ok()) return created.status();
  Pool pool = std::move(*created);
  ReferencePool model(program.options);
  std::vector<AllocationId> live, freed;
  std::vector<SegmentId> segments;

  for (size_t i = 0; i < program.ops.size(); ++i) {
    const Op& op = program.ops[i];
    std::string diff;
    auto differ = [&](std::string what) { diff = std::move(what); };
    if (auto* o = std::get_if<AddSegmentOp>(&op)) {
      auto a = pool.AddSegment(o->spec);
      auto b = model.AddSegment(o->spec);
      if (a.status().code() != b.status().code() || (a.ok() && *a != *b)) {
        differ(absl::StrCat("pool ", a.status().ToString(), " model ",
                            b.status().ToString()));
      } else if (a.ok()) {
        segments.push_back(*a);
      }
    } else if (auto* o = std::get_if<AllocOp>(&op)) {
      const auto c = Normalize(o->req, kPage);
      const OrderSnapshot before =
          c.ok() ? TakeOrderSnapshot(pool, *c) : OrderSnapshot{};
      const std::optional<size_t> first = before.first_feasible;
      auto a = pool.Allocate(o->req);
      auto b = model.Allocate(o->req);
      absl::Status order =
          c.ok() ? CheckOrder(pool, *c, before, a) : absl::OkStatus();
      if (a.ok() && a->path == Path::kContig) {
        ++totals->contig[static_cast<int>(program.options.placement)];
        if (first && *first > 0) ++totals->contig_past_first_segment;
      }
      if (a.ok() && a->path == Path::kMulti) Count(pool, *a, first, totals);
      if (!Same(a, b)) {
        differ(absl::StrCat("pool ", Outcome(a), " model ", Outcome(b)));
      } else if (!order.ok()) {
        differ(absl::StrCat("order: ", order.message()));
      } else if (a.ok()) {
        if (auto s = CheckPlacement(*a, o->req); !s.ok())
          differ(std::string(s.message()));
        live.push_back(a->id);
      } else if (o->reclaim &&
                 FailReasonOf(a.status()) == FailReason::kNoSpace) {
        auto pa = pool.PlanReclaim(o->req);
        auto pb = model.PlanReclaim(o->req);
        if (pa.status().code() != pb.status().code() ||
            FailReasonOf(pa.status()) != FailReasonOf(pb.status()) ||
            (pa.ok() &&
             (pa->window != pb->window || pa->victims != pb->victims ||
              pa->reclaim_pages != pb->reclaim_pages))) {
          differ(absl::StrCat("plan: pool ", pa.status().ToString(), " ",
                              pa.ok() ? Runs({pa->window}) : "", " model ",
                              pb.status().ToString(), " ",
                              pb.ok() ? Runs({pb->window}) : ""));
        } else if (pa.ok()) {
          auto ca = pool.CommitReclaim(o->req, *pa);
          auto cb = model.CommitReclaim(o->req, *pb);
          if (!Same(ca, cb)) {
            differ(absl::StrCat("commit: pool ", Outcome(ca), " model ",
                                Outcome(cb)));
          } else if (ca.ok()) {
            if (auto s = CheckPlacement(*ca, o->req); !s.ok()) {
              differ(std::string(s.message()));
            }
            for (AllocationId v : pa->victims) {
              live.erase(std::find(live.begin(), live.end(), v));
              freed.push_back(v);
            }
            live.push_back(ca->id);
          }
        }
      }
    } else if (auto* o = std::get_if<FreeOp>(&op)) {
      AllocationId id = AllocationId{1} << 40;
      if (!live.empty() && o->pick % 16 != 0) {
        const size_t k = o->pick % live.size();
        id = live[k];
        live.erase(live.begin() + k);
        freed.push_back(id);
      } else if (!freed.empty()) {
        id = freed[o->pick % freed.size()];  // double free
      }
      auto a = pool.Free(id);
      auto b = model.Free(id);
      if (a.code() != b.code()) {
        differ(absl::StrCat("free ", id, ": pool ", a.ToString(), " model ",
                            b.ToString()));
      }
    } else if (auto* o = std::get_if<DrainOp>(&op)) {
      if (!segments.empty()) {
        const SegmentId id = segments[o->pick % segments.size()];
        auto a = o->drain ? pool.DrainSegment(id) : pool.UndrainSegment(id);
        auto b = model.DrainSegment(id, o->drain);
        if (a.code() != b.code()) differ("drain");
      }
    } else if (auto* o = std::get_if<RemoveSegmentOp>(&op)) {
      if (!segments.empty()) {
        const size_t k = o->pick % segments.size();
        auto a = pool.RemoveSegment(segments[k]);
        auto b = model.RemoveSegment(segments[k]);
        if (a.code() != b.code()) {
          differ(absl::StrCat("remove: pool ", a.ToString(), " model ",
                              b.ToString()));
        } else if (a.ok()) {
          segments.erase(segments.begin() + k);
        }
      }
    }
    if (diff.empty()) {
      if (auto s = pool.Verify(); !s.ok()) diff = std::string(s.message());
    }
    if (diff.empty() &&
        (pool.free_pages().value != model.free_pages() ||
         pool.total_pages().value != model.total_pages() ||
         pool.allocations().size() != model.allocations().size())) {
      diff = absl::StrCat("free pages: pool ", pool.free_pages().value,
                          " model ", model.free_pages(), "; allocations: pool ",
                          pool.allocations().size(), " model ",
                          model.allocations().size());
    }
    if (diff.empty()) {
      const std::map<SegmentId, uint64_t> hints = model.Hints();
      for (const SegmentInfo& seg : pool.Segments()) {
        auto it = hints.find(seg.id);
        if (it == hints.end() || it->second != seg.hint.value) {
          diff = absl::StrCat("hint of segment ", seg.id, ": pool ",
                              seg.hint.value, " model ",
                              it == hints.end() ? 0 : it->second);
          break;
        }
      }
    }
    if (!diff.empty()) {
      return absl::InternalError(
          absl::StrCat("op ", i, " (", DescribeOp(op), "): ", diff));
    }
    ++totals->ops;
  }
  Add(pool.stats(), &totals->stats);
  return absl::OkStatus();
}

}  // namespace physpool::pglist::testing
