// SPDX-License-Identifier: Apache-2.0
// The fd socket's protocol (fd_server.h): what a request line asks for and
// the answer line and descriptors it gets. No socket here.
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/rpc/fd_server.h"

namespace physpool::server {
namespace {

constexpr int kMaxFds = 250;  // below the kernel's SCM_MAX_FD (253)

}  // namespace

std::string FdServer::ErrorLine(const absl::Status& s) {
  std::string msg(s.message());
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  return absl::StrCat("error ", absl::StatusCodeToString(s.code()), " ", msg,
                      "\n");
}

std::string FdServer::Answer(const std::string& line, std::vector<int>* fds,
                             std::vector<std::shared_ptr<void>>* pins,
                             pid_t /*peer*/) {
  const std::vector<std::string> words =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (words.size() < 2 || words.size() > 3 ||
      (words[0] != "device" && words[0] != "backing")) {
    return ErrorLine(absl::InvalidArgumentError(
        "expected \"device <bdf> [<token>]\" or \"backing <lease> "
        "[<token>]\""));
  }
  absl::StatusOr<Tenant> tenant =
      auth_->IdentifyToken(words.size() == 3 ? words[2] : "");
  if (!tenant.ok()) return ErrorLine(tenant.status());
  if (words[0] == "device") return AnswerDevice(*tenant, words[1], fds);
  return AnswerBacking(*tenant, words[1], fds, pins);
}

std::string FdServer::AnswerDevice(const Tenant& tenant, const std::string& bdf,
                                   std::vector<int>* fds) {
  if (!tenant.lease_scope.empty()) {
    return ErrorLine(absl::PermissionDeniedError(
        "a lease access token reaches only its leases' views, not devices"));
  }
  // A tenant's own device reaches only its leases (its own IOMMU
  // domain); a pool-wide one reaches every lease: privileged only.
  std::string owner;
  for (const vfio::VfioDevice& d : source_->devices())
    if (d.bdf == bdf) owner = d.tenant;
  if (!owner.empty() && owner != tenant.name) {
    return ErrorLine(absl::PermissionDeniedError(
        absl::StrCat("device ", bdf, " belongs to tenant \"", owner,
                     "\": its fd goes to that tenant only")));
  }
  if (owner.empty() && !tenant.Has(kRolePrivileged)) {
    return ErrorLine(absl::PermissionDeniedError(
        "device fds of pool-wide devices need the privileged role: the "
        "device can DMA to any lease of the pool, not only the tenant's "
        "(assign the device to the tenant in source.vfio.devices[].tenant)"));
  }
  absl::StatusOr<int> fd = source_->DeviceFd(bdf);
  if (!fd.ok()) return ErrorLine(fd.status());
  fds->push_back(*fd);
  return "ok 1\n";
}

std::string FdServer::AnswerBacking(const Tenant& tenant,
                                    const std::string& lease_id,
                                    std::vector<int>* fds,
                                    std::vector<std::shared_ptr<void>>* pins) {
  if (!tenant.Has(kRoleTenant)) {
    return ErrorLine(absl::PermissionDeniedError(absl::StrCat(
        "tenant \"", tenant.name, "\" does not have the tenant role")));
  }
  if (manager_->views_enabled()) {
    // The lease's own view: one descriptor, the runs back to back.
    absl::StatusOr<PoolManager::ViewHandout> view =
        manager_->HandOutView(tenant, lease_id);
    if (!view.ok()) return ErrorLine(view.status());
    fds->push_back(view->fd);
    if (pins != nullptr) pins->push_back(view->pin);
    std::string runs;
    for (uint64_t off : view->offsets) absl::StrAppend(&runs, " 0:", off);
    return absl::StrCat("ok 1", runs, "\n");
  }
  // isolation: off: the backing of every segment the runs lie in, which
  // reaches other leases too: never for a lease access token.
  if (!tenant.lease_scope.empty()) {
    return ErrorLine(absl::PermissionDeniedError(
        "a lease access token gets its lease's own view only, and per-lease "
        "views are off (isolation: off)"));
  }
  absl::StatusOr<LeaseInfo> lease = manager_->Get(tenant, lease_id);
  if (!lease.ok()) return ErrorLine(lease.status());
  if (lease->quarantine) {
    return ErrorLine(
        absl::NotFoundError(absl::StrCat("lease ", lease_id, " has ended")));
  }
  // On an error no descriptor is sent: close those gathered so far.
  auto fail = [fds](const absl::Status& s) {
    for (int fd : *fds) close(fd);
    fds->clear();
    return ErrorLine(s);
  };
  std::map<uint32_t, int> index_of_segment;
  std::string runs;
  for (const LeaseRun& run : lease->runs) {
    auto it = index_of_segment.find(run.segment_id);
    if (it == index_of_segment.end()) {
      if (fds->size() == kMaxFds) {
        return fail(absl::ResourceExhaustedError(
            absl::StrCat("the lease spans more than ", kMaxFds, " segments")));
      }
      absl::StatusOr<int> fd = source_->BackingFd(run.iova);
      if (!fd.ok()) return fail(fd.status());
      it = index_of_segment.emplace(run.segment_id, fds->size()).first;
      fds->push_back(*fd);
    }
    absl::StrAppend(&runs, " ", it->second, ":", run.backing_offset);
  }
  return absl::StrCat("ok ", fds->size(), runs, "\n");
}

}  // namespace physpool::server
