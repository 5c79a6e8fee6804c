// SPDX-License-Identifier: Apache-2.0
#include "cli/trace.h"

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "util/status_macros.h"

namespace physpool::cli {
namespace {

using Type = JsonField::Type;

// Reads the fields of one object by name, remembering which were used so
// that leftovers can be reported as unknown.
class Fields {
 public:
  explicit Fields(absl::Span<const JsonField> f) : f_(f), used_(f.size()) {}

  absl::Status Uint(absl::string_view key, bool required, uint64_t* out) {
    return Get(key, Type::kUint, required,
               [&](const JsonField& f) { *out = f.uint; });
  }
  absl::Status Bool(absl::string_view key, bool* out) {
    return Get(key, Type::kBool, false,
               [&](const JsonField& f) { *out = f.boolean; });
  }
  absl::Status String(absl::string_view key, bool required, std::string* out) {
    return Get(key, Type::kString, required, [&](const JsonField& f) {
      out->assign(f.str.data(), f.str.size());
    });
  }
  absl::Status NoneLeft(absl::string_view op) const {
    absl::InlinedVector<std::string, 4> unknown;
    for (size_t i = 0; i < f_.size(); ++i) {
      if (!used_[i]) unknown.push_back(absl::StrCat("\"", f_[i].key, "\""));
    }
    if (unknown.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("unknown field", unknown.size() > 1 ? "s " : " ",
                     absl::StrJoin(unknown, ", "), " for op \"", op, "\""));
  }

 private:
  template <typename F>
  absl::Status Get(absl::string_view key, Type type, bool required, F set) {
    for (size_t i = 0; i < f_.size(); ++i) {
      if (f_[i].key != key) continue;
      used_[i] = true;
      if (f_[i].type != type) {
        static constexpr const char* kNames[] = {
            "a string", "an unsigned integer", "true or false"};
        return absl::InvalidArgumentError(absl::StrCat(
            "field \"", key, "\" must be ", kNames[static_cast<int>(type)]));
      }
      set(f_[i]);
      return absl::OkStatus();
    }
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing field \"", key, "\""));
    }
    return absl::OkStatus();
  }

  absl::Span<const JsonField> f_;
  absl::InlinedVector<bool, 16> used_;
};

absl::StatusOr<TraceOp> Pool(Fields& f) {
  PoolLine l;
  uint64_t reserve = 0;
  std::string strategy = "address";
  std::string placement = "nextfit";
  RETURN_IF_ERROR(f.Uint("page_size", false, &l.options.page_size));
  RETURN_IF_ERROR(f.String("strategy", false, &strategy));
  RETURN_IF_ERROR(f.Uint("reserve_pages", false, &reserve));
  RETURN_IF_ERROR(f.String("placement", false, &placement));
  RETURN_IF_ERROR(f.NoneLeft("pool"));
  if (auto p = pglist::ParsePlacement(placement)) {
    l.options.placement = *p;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "field \"placement\" must be \"nextfit\" or \"bestfit\", not \"",
        placement, "\""));
  }
  if (strategy == "address") {
    l.options.strategy = pglist::Strategy::kAddress;
  } else if (strategy == "bigfirst") {
    l.options.strategy = pglist::Strategy::kBigFirst;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "field \"strategy\" must be \"address\" or \"bigfirst\", not \"",
        strategy, "\""));
  }
  l.options.reserve_pages = pglist::PageCount(reserve);
  return l;
}

absl::StatusOr<TraceOp> Segment(Fields& f) {
  SegmentLine l;
  uint64_t pages = 0, freelist = 0, numa = 0;
  RETURN_IF_ERROR(f.Uint("iova", true, &l.spec.iova));
  RETURN_IF_ERROR(f.Uint("pages", true, &pages));
  RETURN_IF_ERROR(f.Uint("freelist", false, &freelist));
  RETURN_IF_ERROR(f.Uint("numa", false, &numa));
  RETURN_IF_ERROR(f.NoneLeft("segment"));
  if (freelist > 255)
    return absl::InvalidArgumentError("field \"freelist\" must be <= 255");
  if (numa > 65535)
    return absl::InvalidArgumentError("field \"numa\" must be <= 65535");
  l.spec.pages = pglist::PageCount(pages);
  l.spec.freelist = static_cast<uint32_t>(freelist);
  l.spec.numa = static_cast<int32_t>(numa);
  return l;
}

absl::StatusOr<TraceOp> Alloc(Fields& f) {
  AllocLine l;
  uint64_t max_segments = 0;
  RETURN_IF_ERROR(f.String("id", true, &l.id));
  RETURN_IF_ERROR(f.Uint("bytes", true, &l.req.bytes));
  RETURN_IF_ERROR(f.Uint("low", false, &l.req.low));
  RETURN_IF_ERROR(f.Uint("high", false, &l.req.high));
  RETURN_IF_ERROR(f.Uint("alignment", false, &l.req.alignment));
  RETURN_IF_ERROR(f.Uint("boundary", false, &l.req.boundary));
  RETURN_IF_ERROR(f.Uint("max_segments", false, &max_segments));
  RETURN_IF_ERROR(f.Bool("preemptible", &l.req.preemptible));
  RETURN_IF_ERROR(f.Bool("reclaim", &l.reclaim));
  RETURN_IF_ERROR(f.Bool("privileged", &l.req.privileged));
  RETURN_IF_ERROR(f.NoneLeft("alloc"));
  if (max_segments > 0xffffffffu) {
    return absl::InvalidArgumentError("field \"max_segments\" must be < 2^32");
  }
  l.req.max_segments = static_cast<uint32_t>(max_segments);
  return l;
}

}  // namespace

absl::StatusOr<TraceOp> TraceParser::Parse(absl::string_view line,
                                           size_t readable) {
  auto parsed = json_.Parse(line, readable);
  if (!parsed.ok()) return parsed.status();
  Fields f(*parsed);
  std::string op;
  RETURN_IF_ERROR(f.String("op", true, &op));
  if (op == "pool") return Pool(f);
  if (op == "segment") return Segment(f);
  if (op == "alloc") return Alloc(f);
  if (op == "free") {
    FreeLine l;
    RETURN_IF_ERROR(f.String("id", true, &l.id));
    RETURN_IF_ERROR(f.NoneLeft("free"));
    return l;
  }
  using Action = SegmentControlLine::Action;
  for (auto [name, action] : {std::pair{"drain", Action::kDrain},
                              std::pair{"undrain", Action::kUndrain},
                              std::pair{"remove", Action::kRemove}}) {
    if (op != name) continue;
    SegmentControlLine l{action, 0};
    RETURN_IF_ERROR(f.Uint("iova", true, &l.iova));
    RETURN_IF_ERROR(f.NoneLeft(op));
    return l;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown op \"", op,
      "\" (expected pool, segment, alloc, free, drain, undrain or remove)"));
}

}  // namespace physpool::cli
