// SPDX-License-Identifier: Apache-2.0
// lease list, get, renew, revoke; release.
#include <memory>

#include "cli/commands.h"
#include "cli/format.h"

namespace physpool::cli {
namespace {

struct ListFlags {
  bool all = false;
  std::string tenant;
  int32_t page_size = 0;
};

int LeaseList(const Ctx& c, const ListFlags& f) {
  v1::ListLeasesResponse resp;
  grpc::Status s;
  if (f.all || !f.tenant.empty()) {
    v1::AdminListLeasesRequest req;
    req.set_tenant(f.tenant);
    auto admin = c.Admin();
    s = ListAll(
        c, f.page_size, req,
        [&](grpc::ClientContext* ctx, const v1::AdminListLeasesRequest& r,
            v1::ListLeasesResponse* page) {
          return admin->ListLeases(ctx, r, page);
        },
        &resp);
  } else {
    auto pool = c.Pool();
    s = ListAll(
        c, f.page_size, v1::ListLeasesRequest(),
        [&](grpc::ClientContext* ctx, const v1::ListLeasesRequest& r,
            v1::ListLeasesResponse* page) {
          return pool->ListLeases(ctx, r, page);
        },
        &resp);
  }
  if (!s.ok()) return Fail(s);
  c.out->Leases(resp);
  return 0;
}

int LeaseGet(const Ctx& c, const std::string& id) {
  v1::GetLeaseRequest req;
  req.set_lease_id(id);
  v1::GetLeaseResponse resp;
  auto ctx = c.Call();
  grpc::Status s = c.Pool()->GetLease(ctx.get(), req, &resp);
  if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      s.error_code() == grpc::StatusCode::NOT_FOUND) {
    // An admin sees any lease, live or quarantined, with its backing.
    auto admin_ctx = c.Call();
    v1::GetLeaseResponse admin;
    if (c.Admin()->GetLease(admin_ctx.get(), req, &admin).ok()) {
      s = grpc::Status::OK;
      resp = admin;
    }
  }
  if (!s.ok()) return Fail(s);
  c.out->Lease(resp.lease(), LeaseShown::kGot);
  return 0;
}

int LeaseRenew(const Ctx& c, const std::string& id, const std::string& ttl) {
  v1::RenewRequest req;
  req.set_lease_id(id);
  if (!ttl.empty())  // checked by DurationCheck
    req.set_ttl_seconds(static_cast<uint32_t>(*ParseMillis(ttl) / 1000));
  v1::RenewResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Pool()->Renew(ctx.get(), req, &resp); !s.ok()) return Fail(s);
  c.out->Lease(resp.lease(), LeaseShown::kRenewed);
  return 0;
}

int LeaseRevoke(const Ctx& c, const std::string& id,
                const std::string& reason) {
  v1::RevokeLeaseRequest req;
  req.set_lease_id(id);
  req.set_reason(reason);
  v1::RevokeLeaseResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Admin()->RevokeLease(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  c.out->Lease(resp.lease(), LeaseShown::kRevoked);
  return 0;
}

int Release(const Ctx& c, const std::string& id) {
  v1::ReleaseRequest req;
  req.set_lease_id(id);
  v1::ReleaseResponse resp;
  auto ctx = c.Call();
  if (auto s = c.Pool()->Release(ctx.get(), req, &resp); !s.ok())
    return Fail(s);
  c.out->Released(id, resp);
  return 0;
}

// A leaf's lease id (required) and the value of its one flag, if any.
struct OneLease {
  std::string id, value;
};
std::shared_ptr<OneLease> LeaseLeaf(CLI::App* leaf) {
  auto a = std::make_shared<OneLease>();
  leaf->add_option("ID", a->id, "the lease's id (l-...)")->required();
  return a;
}

}  // namespace

void AddLeaseCommands(CLI::App* root, Commands* out) {
  CLI::App* lease = Noun(root, "lease", "leases: yours, or anyone's (admin)");
  auto lf = std::make_shared<ListFlags>();
  CLI::App* list =
      Leaf(lease, "list",
           "physpoolctl lease list [--all | --tenant NAME] [--page-size N]",
           "Your leases; --all or --tenant (admin) for everyone's or one "
           "tenant's. Reads every page.",
           "physpoolctl lease list --tenant trainer -o json");
  CLI::Option* all = list->add_flag("--all", lf->all, "every tenant's (admin)");
  list->add_option("--tenant", lf->tenant, "one tenant's (admin)")
      ->excludes(all);
  AddPageSize(list, &lf->page_size, "leases");
  out->push_back({list, [lf](const Ctx& c) { return LeaseList(c, *lf); }});

  CLI::App* get = Leaf(
      lease, "get", "physpoolctl lease get ID",
      "One of your leases with its runs (each one's offset in the lease's "
      "view), or, ended, its quarantine and who still maps it. An admin sees "
      "any tenant's lease and the segment files behind it.",
      "physpoolctl lease get l-2989f08544ac69d2 -o json");
  auto g = LeaseLeaf(get);
  out->push_back({get, [g](const Ctx& c) { return LeaseGet(c, g->id); }});

  CLI::App* renew =
      Leaf(lease, "renew", "physpoolctl lease renew ID [--ttl 60s]",
           "Renews one of your leases: its TTL starts again.",
           "physpoolctl lease renew l-2989f08544ac69d2 --ttl 5m");
  auto r = LeaseLeaf(renew);
  renew->add_option("--ttl", r->value, "the new TTL (default: the lease's)")
      ->check(DurationCheck());
  out->push_back(
      {renew, [r](const Ctx& c) { return LeaseRenew(c, r->id, r->value); }});

  CLI::App* revoke = Leaf(
      lease, "revoke", "physpoolctl lease revoke ID [--reason TEXT]   (admin)",
      "Ends the lease; its owner gets a REVOKED event; the memory is zeroed.",
      "physpoolctl lease revoke l-2989f08544ac69d2 --reason \"device reset\"");
  auto v = LeaseLeaf(revoke);
  revoke->add_option("--reason", v->value, "told to the lease's owner");
  out->push_back(
      {revoke, [v](const Ctx& c) { return LeaseRevoke(c, v->id, v->value); }});

  CLI::App* release = Leaf(root, "release", "physpoolctl release ID",
                           "Releases one of your leases (idempotent).",
                           "physpoolctl release l-2989f08544ac69d2");
  auto e = LeaseLeaf(release);
  out->push_back({release, [e](const Ctx& c) { return Release(c, e->id); }});
}

}  // namespace physpool::cli
