// SPDX-License-Identifier: Apache-2.0
#include "cli/simulate.h"

#include <cstdlib>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cli/flat_json.h"
#include "util/json_string.h"
#include "util/status_macros.h"

namespace physpool::cli {
namespace {

void AppendFailure(absl::string_view id, const absl::Status& s,
                   std::string* out) {
  out->append("{\"id\":");
  AppendJsonString(id, out);
  out->append(",\"ok\":false,\"code\":\"");
  out->append(absl::StatusCodeToString(s.code()));
  out->append("\",\"message\":");
  AppendJsonString(s.message(), out);
  out->append("}\n");
}

}  // namespace

absl::Status Simulator::EnsurePool() {
  if (pool_) return absl::OkStatus();
  ASSIGN_OR_RETURN(pool_, pglist::Pool::Create({}));
  return absl::OkStatus();
}

absl::Status Simulator::Apply(const TraceOp& op, std::string* out) {
  if (const auto* l = std::get_if<PoolLine>(&op)) {
    if (pool_) {
      return absl::InvalidArgumentError(
          "the pool line must come first, and only once");
    }
    auto p = pglist::Pool::Create(l->options);
    if (!p.ok()) return absl::InvalidArgumentError(p.status().message());
    pool_ = std::move(*p);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(EnsurePool());
  if (const auto* l = std::get_if<SegmentLine>(&op)) {
    auto id = pool_->AddSegment(l->spec);
    if (!id.ok()) return absl::InvalidArgumentError(id.status().message());
    return absl::OkStatus();
  }
  if (const auto* l = std::get_if<AllocLine>(&op)) return Alloc(*l, out);
  if (const auto* l = std::get_if<FreeLine>(&op)) return Free(*l, out);
  return Control(std::get<SegmentControlLine>(op));
}

absl::Status Simulator::Alloc(const AllocLine& l, std::string* out) {
  if (live_.contains(l.id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("alloc id \"", l.id, "\" is still live (free it first)"));
  }
  auto a = pool_->Allocate(l.req);
  std::vector<pglist::AllocationId> victims;
  if (!a.ok() && l.reclaim &&
      pglist::FailReasonOf(a.status()) == pglist::FailReason::kNoSpace) {
    auto plan = pool_->PlanReclaim(l.req);
    if (plan.ok()) {
      a = pool_->CommitReclaim(l.req, *plan);
      if (a.ok()) victims = plan->victims;
    } else {
      a = plan.status();
    }
  }
  ++results_[absl::StrCat("alloc ",
                          absl::StatusCodeToString(a.status().code()))];
  if (!a.ok()) {
    AppendFailure(l.id, a.status(), out);
    return absl::OkStatus();
  }
  ++results_[absl::StrCat("path ", pglist::PathName(a->path))];
  live_[l.id] = a->id;
  names_[a->id] = l.id;
  out->append("{\"id\":");
  AppendJsonString(l.id, out);
  out->append(",\"ok\":true,\"path\":\"");
  absl::StrAppend(out, pglist::PathName(a->path));
  out->append("\",\"runs\":[");
  for (size_t i = 0; i < a->runs.size(); ++i) {
    absl::StrAppend(out, i ? "," : "",
                    "{\"iova\":", pool_->ToIova(a->runs[i].start),
                    ",\"pages\":", a->runs[i].pages.value, "}");
  }
  out->append("],\"reclaimed\":[");
  for (size_t i = 0; i < victims.size(); ++i) {
    auto name = names_.find(victims[i]);
    if (i) out->push_back(',');
    AppendJsonString(name->second, out);
    reclaimed_.insert(name->second);
    live_.erase(name->second);
    names_.erase(name);
  }
  out->append("]}\n");
  reclaimed_.erase(l.id);
  return absl::OkStatus();
}

absl::Status Simulator::Free(const FreeLine& l, std::string* out) {
  auto it = live_.find(l.id);
  absl::Status s;
  if (it == live_.end()) {
    s = absl::NotFoundError(
        reclaimed_.contains(l.id)
            ? absl::StrCat("\"", l.id,
                           "\" was reclaimed by the aggressive path")
            : absl::StrCat("no live allocation \"", l.id, "\""));
  } else {
    s = pool_->Free(it->second);
    names_.erase(it->second);
    live_.erase(it);
  }
  ++results_[absl::StrCat("free ", absl::StatusCodeToString(s.code()))];
  if (!s.ok()) {
    AppendFailure(l.id, s, out);
    return absl::OkStatus();
  }
  out->append("{\"id\":");
  AppendJsonString(l.id, out);
  out->append(",\"ok\":true}\n");
  return absl::OkStatus();
}

absl::Status Simulator::Control(const SegmentControlLine& l) {
  for (const auto& seg : pool_->Segments()) {
    if (seg.spec.iova != l.iova) continue;
    absl::Status s;
    switch (l.action) {
      case SegmentControlLine::Action::kDrain:
        s = pool_->DrainSegment(seg.id);
        break;
      case SegmentControlLine::Action::kUndrain:
        s = pool_->UndrainSegment(seg.id);
        break;
      case SegmentControlLine::Action::kRemove:
        s = pool_->RemoveSegment(seg.id);
        break;
    }
    if (!s.ok()) return absl::InvalidArgumentError(s.message());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no segment starts at iova ", l.iova));
}

std::string Simulator::Summary() const {
  std::string s;
  std::vector<std::pair<std::string, uint64_t>> rows(results_.begin(),
                                                     results_.end());
  std::sort(rows.begin(), rows.end());
  for (const auto& [k, v] : rows) absl::StrAppend(&s, k, ": ", v, "\n");
  if (pool_) {
    const auto& st = pool_->stats();
    for (auto [from, to] :
         {std::pair{pglist::Path::kContig, pglist::Path::kMulti},
          std::pair{pglist::Path::kSimple, pglist::Path::kAggressive},
          std::pair{pglist::Path::kContig, pglist::Path::kAggressive},
          std::pair{pglist::Path::kMulti, pglist::Path::kAggressive}}) {
      absl::StrAppend(&s, "fallback ", pglist::PathName(from), "->",
                      pglist::PathName(to), ": ", st.fallback(from, to), "\n");
    }
    absl::StrAppend(&s, "pages: ", pool_->total_pages().value, " total, ",
                    pool_->free_pages().value, " free\n");
    for (const auto& seg : pool_->Segments()) {
      absl::StrAppend(&s, "segment iova=", seg.spec.iova,
                      " free=", seg.free_pages.value,
                      " used=", seg.used_pages.value,
                      " largest_free_run=", seg.largest_free_run.value,
                      seg.draining ? " draining" : "", "\n");
    }
  }
  return s;
}

absl::Status Simulate(std::FILE* in, std::FILE* out, Simulator* sim) {
  std::string buf;
  TraceParser parser;
  // getline's buffer, given room to spare so that most lines have the JSON
  // parser's padding after them and are parsed where they lie.
  size_t cap = 4096;
  char* line = static_cast<char*>(std::malloc(cap));
  uint64_t lineno = 0;
  absl::Status status;
  for (ssize_t n; (n = getline(&line, &cap, in)) >= 0;) {
    ++lineno;
    absl::string_view text(line, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
      text.remove_suffix(1);
    }
    if (text.find_first_not_of(" \t") == absl::string_view::npos) continue;
    auto op = parser.Parse(text, cap);
    status = op.ok() ? sim->Apply(*op, &buf) : op.status();
    if (!status.ok()) {
      status = absl::InvalidArgumentError(
          absl::StrCat("line ", lineno, ": ", status.message()));
      break;
    }
    if (buf.size() > (1 << 20)) {
      std::fwrite(buf.data(), 1, buf.size(), out);
      buf.clear();
    }
  }
  std::free(line);
  std::fwrite(buf.data(), 1, buf.size(), out);
  std::fflush(out);
  if (status.ok() && std::ferror(in))
    status = absl::DataLossError("error reading the trace");
  return status;
}

}  // namespace physpool::cli
