// SPDX-License-Identifier: Apache-2.0
// tenant list, set-limits (admin).
#include <memory>

#include "cli/commands.h"
#include "cli/format.h"

namespace physpool::cli {
namespace {

int TenantList(const Ctx& c, int32_t page_size) {
  v1::ListTenantsResponse resp;
  auto admin = c.Admin();
  if (auto s = ListAll(
          c, page_size, v1::ListTenantsRequest(),
          [&](grpc::ClientContext* ctx, const v1::ListTenantsRequest& r,
              v1::ListTenantsResponse* page) {
            return admin->ListTenants(ctx, r, page);
          },
          &resp);
      !s.ok()) {
    return Fail(s);
  }
  c.out->Tenants(resp);
  return 0;
}

struct LimitFlags {
  std::string name, max_bytes;
  uint32_t max_leases = 0;
};

int TenantSetLimits(const Ctx& c, const LimitFlags& f) {
  v1::SetTenantLimitsRequest req;
  req.set_tenant(f.name);
  // Checked by SizeCheck; absent: unlimited.
  if (!f.max_bytes.empty())
    req.mutable_limits()->set_max_bytes(*ParseBytes(f.max_bytes));
  req.mutable_limits()->set_max_leases(f.max_leases);
  v1::SetTenantLimitsResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Admin()->SetTenantLimits(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  c.out->TenantLimits(resp);
  return 0;
}

}  // namespace

void AddTenantCommands(CLI::App* root, Commands* out) {
  CLI::App* tenant = Noun(root, "tenant", "tenants and their limits (admin)");
  auto page_size = std::make_shared<int32_t>(0);
  CLI::App* list =
      Leaf(tenant, "list", "physpoolctl tenant list [--page-size N]   (admin)",
           "Every tenant (all pages).", "physpoolctl tenant list -o json");
  AddPageSize(list, page_size.get(), "tenants");
  out->push_back(
      {list, [page_size](const Ctx& c) { return TenantList(c, *page_size); }});

  auto f = std::make_shared<LimitFlags>();
  CLI::App* set = Leaf(
      tenant, "set-limits",
      "physpoolctl tenant set-limits NAME [--max-bytes SIZE] [--max-leases N]"
      "   (admin)",
      "0 or absent means unlimited.",
      "physpoolctl tenant set-limits trainer --max-bytes 8GiB");
  set->add_option("NAME", f->name, "the tenant")->required();
  set->add_option("--max-bytes", f->max_bytes, "bytes it may lease at once")
      ->check(SizeCheck());
  set->add_option("--max-leases", f->max_leases, "leases it may hold at once");
  out->push_back({set, [f](const Ctx& c) { return TenantSetLimits(c, *f); }});
}

}  // namespace physpool::cli
