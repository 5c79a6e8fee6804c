// SPDX-License-Identifier: Apache-2.0
#include "bench/arena/rpc_pair.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "bench/churn.h"

namespace physpool::bench {
namespace {

// One Allocate + Release of `req` (tenant alice); timed into *f unless null.
bool RpcPair(v1::Pool::Stub* pool, const v1::AllocateRequest& req,
             RpcFigures* f, std::string* error) {
  v1::AllocateResponse resp;
  auto actx = testing::Ctx(testing::kAlice);
  const double t0 = NowNs();
  grpc::Status s = pool->Allocate(actx.get(), req, &resp);
  const double t1 = NowNs();
  if (!s.ok()) {
    *error = absl::StrCat("Allocate ", req.bytes(), ": ", s.error_message());
    return false;
  }
  v1::ReleaseRequest rel;
  rel.set_lease_id(resp.lease().id());
  v1::ReleaseResponse rresp;
  auto rctx = testing::Ctx(testing::kAlice);
  const double t2 = NowNs();
  s = pool->Release(rctx.get(), rel, &rresp);
  const double t3 = NowNs();
  if (!s.ok()) {
    *error = absl::StrCat("Release: ", s.error_message());
    return false;
  }
  if (f != nullptr) {
    f->allocate_ns.push_back(t1 - t0);
    f->release_ns.push_back(t3 - t2);
    f->pair_ns.push_back(t3 - t0);
  }
  return true;
}

}  // namespace

RpcFigures RunRpcPairs(const testing::Daemon& d, uint64_t seed, uint64_t n,
                       uint64_t cap) {
  RpcFigures f;
  auto pool = v1::Pool::NewStub(d.UnixChannel());
  std::string error;
  v1::AllocateRequest warm;
  warm.set_bytes(64 << 10);
  warm.set_max_segments(1);
  for (int i = 0; i < 100; ++i)
    (void)RpcPair(pool.get(), warm, nullptr, &error);
  ChurnStream stream = StepStream(seed);
  for (uint64_t i = 0; i < n; ++i) {
    const ChurnRequest r = stream.Next();
    v1::AllocateRequest req;
    req.set_bytes(std::min(r.bytes, cap));
    req.set_alignment(r.alignment);
    req.set_boundary(r.boundary);
    req.set_max_segments(1);
    if (!RpcPair(pool.get(), req, &f, &error) && f.failed++ == 0) {
      f.first_error = error;
    }
  }
  return f;
}

}  // namespace physpool::bench
