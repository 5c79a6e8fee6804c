// SPDX-License-Identifier: Apache-2.0
// segment list, drain, undrain, add, remove (admin).
#include <memory>

#include "cli/commands.h"
#include "cli/format.h"

namespace physpool::cli {
namespace {

int SegmentList(const Ctx& c, int32_t page_size) {
  v1::ListSegmentsResponse resp;
  auto admin = c.Admin();
  if (auto s = ListAll(
          c, page_size, v1::ListSegmentsRequest(),
          [&](grpc::ClientContext* ctx, const v1::ListSegmentsRequest& r,
              v1::ListSegmentsResponse* page) {
            return admin->ListSegments(ctx, r, page);
          },
          &resp);
      !s.ok()) {
    return Fail(s);
  }
  c.out->Segments(resp);
  return 0;
}

enum class Change { kDrain, kUndrain, kRemove };

int SegmentChange(const Ctx& c, Change what, uint32_t id) {
  v1::SegmentRequest req;
  req.set_segment_id(id);
  auto ctx = c.Call();
  if (what == Change::kRemove) {
    v1::RemoveSegmentResponse resp;
    if (auto s = c.Admin()->RemoveSegment(ctx.get(), req, &resp); !s.ok())
      return Fail(s);
    c.out->SegmentRemoved(id, resp);
    return 0;
  }
  v1::SegmentResponse resp;
  const grpc::Status s = what == Change::kDrain
                             ? c.Admin()->DrainSegment(ctx.get(), req, &resp)
                             : c.Admin()->UndrainSegment(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  c.out->Segment(resp);
  return 0;
}

struct AddFlags {
  std::string bytes;
  uint32_t freelist = 0;
  int32_t numa = 0;
};

int SegmentAdd(const Ctx& c, const AddFlags& f) {
  v1::AddSegmentRequest req;
  req.set_bytes(*ParseBytes(f.bytes));  // checked by SizeCheck
  req.set_freelist(f.freelist);
  req.set_numa_node(f.numa);
  v1::SegmentResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Admin()->AddSegment(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  c.out->Segment(resp);
  return 0;
}

void AddChange(CLI::App* segment, Commands* out, Change what,
               const std::string& verb, const std::string& details,
               const std::string& example) {
  auto id = std::make_shared<uint32_t>(0);
  CLI::App* leaf =
      Leaf(segment, verb, "physpoolctl segment " + verb + " ID   (admin)",
           details, example);
  leaf->add_option("ID", *id, "the segment's id (segment list)")->required();
  out->push_back(
      {leaf, [what, id](const Ctx& c) { return SegmentChange(c, what, *id); }});
}

}  // namespace

void AddSegmentCommands(CLI::App* root, Commands* out) {
  CLI::App* segment = Noun(root, "segment", "the pool's segments (admin)");
  auto page_size = std::make_shared<int32_t>(0);
  CLI::App* list = Leaf(
      segment, "list", "physpoolctl segment list [--page-size N]   (admin)",
      "Every segment (all pages).", "physpoolctl segment list -o json");
  AddPageSize(list, page_size.get(), "segments");
  out->push_back(
      {list, [page_size](const Ctx& c) { return SegmentList(c, *page_size); }});

  AddChange(segment, out, Change::kDrain, "drain",
            "No new allocations in the segment; frees still work.",
            "physpoolctl segment drain 2");
  AddChange(segment, out, Change::kUndrain, "undrain",
            "Allocations may use the segment again.",
            "physpoolctl segment undrain 2");

  auto f = std::make_shared<AddFlags>();
  CLI::App* add =
      Leaf(segment, "add",
           "physpoolctl segment add --bytes SIZE [--freelist N] [--numa N]   "
           "(admin)",
           "Adds a segment of the sim source's memory.",
           "physpoolctl segment add --bytes 256MiB --freelist 1");
  add->add_option("--bytes", f->bytes, "its size")
      ->required()
      ->check(SizeCheck());
  add->add_option("--freelist", f->freelist, "its freelist (default 0)");
  add->add_option("--numa", f->numa, "its NUMA node (default 0)");
  out->push_back({add, [f](const Ctx& c) { return SegmentAdd(c, *f); }});

  AddChange(segment, out, Change::kRemove, "remove",
            "Only when no page of it is allocated (drain it first).",
            "physpoolctl segment remove 4");
}

}  // namespace physpool::cli
