// SPDX-License-Identifier: Apache-2.0
#include "dra/slice_publisher.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "dra/quantity.h"

namespace physpool::dra {
namespace {

using nlohmann::json;

constexpr char kSlices[] = "/apis/resource.k8s.io/v1/resourceslices";

}  // namespace

json SliceDevices(const PoolFacts& facts, bool serving) {
  json devices = json::array();
  const std::string page = absl::StrCat(facts.page_size);
  for (const auto& [name, d] : facts.devices) {
    const bool schedulable = serving && !d.draining;
    const uint64_t capacity = schedulable ? d.capacity : 0;
    json attrs = {{"pageSize", {{"int", facts.page_size}}},
                  {"freeBytes", {{"int", serving ? d.free : 0}}},
                  {"largestFreeRun", {{"int", serving ? d.largest : 0}}},
                  {"dmaLimit", {{"int", facts.dma_limit}}},
                  {"schedulable", {{"bool", schedulable}}},
                  {"state",
                   {{"string", !serving     ? "NotServing"
                               : d.draining ? "Draining"
                                            : "Serving"}}}};
    if (d.numa >= 0) {
      attrs["numaNode"] = {{"int", d.numa}};
      attrs[kStandardNumaAttribute] = {{"int", d.numa}};
    }
    devices.push_back(
        {{"name", name},
         {"allowMultipleAllocations", true},
         {"attributes", attrs},
         {"capacity",
          {{"memory",
            {{"value", FormatQuantity(capacity)},
             {"requestPolicy",
              {{"default", page},
               {"validRange", {{"min", page}, {"step", page}}}}}}}}}});
  }
  return devices;
}

SlicePublisher::SlicePublisher(std::string driver_name, std::string node_name,
                               const KubeClient* kube)
    : driver_name_(std::move(driver_name)),
      node_name_(std::move(node_name)),
      kube_(kube) {}

std::string SlicePublisher::SliceName() const {
  std::string n = absl::StrCat(node_name_, "-", driver_name_);
  for (char& c : n) {
    if (c == '.' || c == '_') c = '-';
  }
  return n;
}

absl::Status SlicePublisher::AdoptOrDeleteExisting() {
  // The slices an earlier run published: adopt ours, delete the rest.
  absl::StatusOr<KubeResponse> list = kube_->Do(
      "GET", absl::StrCat(kSlices, "?fieldSelector=spec.nodeName%3D",
                          node_name_, "%2Cspec.driver%3D", driver_name_));
  if (!list.ok()) return list.status();
  if (absl::Status s = KubeClient::Check(*list, "listing ResourceSlices");
      !s.ok()) {
    return s;
  }
  for (const json& item : list->body.value("items", json::array())) {
    const std::string n =
        item.value("/metadata/name"_json_pointer, std::string());
    if (n == SliceName()) {
      slice_version_ =
          item.value("/metadata/resourceVersion"_json_pointer, std::string());
      generation_ = std::max<int64_t>(
          generation_,
          item.value("/spec/pool/generation"_json_pointer, int64_t{0}));
      continue;
    }
    absl::StatusOr<KubeResponse> del =
        kube_->Do("DELETE", absl::StrCat(kSlices, "/", n));
    if (del.ok() && del->code != 404) {
      if (absl::Status s = KubeClient::Check(*del, "deleting slice " + n);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

void SlicePublisher::LearnNodeUid() {
  absl::StatusOr<KubeResponse> node =
      kube_->Do("GET", absl::StrCat("/api/v1/nodes/", node_name_));
  if (node.ok() && node->code == 200) {
    node_uid_ = node->body.value("/metadata/uid"_json_pointer, std::string());
    return;
  }
  const std::string why = node.ok() ? absl::StrCat("HTTP ", node->code)
                                    : std::string(node.status().message());
  fprintf(stderr,
          "physpool-dra: node %s: %s; the slice has no owner (it stays if "
          "the node object is deleted)\n",
          node_name_.c_str(), why.c_str());
}

absl::Status SlicePublisher::Publish(const json& devices, bool force) {
  if (!force && devices == published_) return absl::OkStatus();
  if (slice_version_.empty()) {
    if (absl::Status s = AdoptOrDeleteExisting(); !s.ok()) return s;
  }
  if (node_uid_.empty()) LearnNodeUid();
  // A new generation when what it says changed (not for a forced rewrite).
  if (devices != published_ || generation_ == 0) ++generation_;
  json slice = {{"apiVersion", "resource.k8s.io/v1"},
                {"kind", "ResourceSlice"},
                {"metadata", {{"name", SliceName()}}},
                {"spec",
                 {{"driver", driver_name_},
                  {"nodeName", node_name_},
                  {"pool",
                   {{"name", node_name_},
                    {"generation", generation_},
                    {"resourceSliceCount", 1}}},
                  {"devices", devices}}}};
  if (!node_uid_.empty()) {
    slice["metadata"]["ownerReferences"] =
        json::array({{{"apiVersion", "v1"},
                      {"kind", "Node"},
                      {"name", node_name_},
                      {"uid", node_uid_},
                      {"controller", true}}});
  }
  absl::StatusOr<KubeResponse> r;
  if (!slice_version_.empty()) {
    slice["metadata"]["resourceVersion"] = slice_version_;
    r = kube_->Do("PUT", absl::StrCat(kSlices, "/", SliceName()), &slice);
    if (r.ok() && (r->code == 404 || r->code == 409)) {
      // Deleted, or changed by someone else: start over from a list, at
      // the next tick.
      slice_version_.clear();
      published_ = json();
      return absl::AbortedError(absl::StrCat("ResourceSlice ", SliceName(),
                                             ": HTTP ", r->code,
                                             "; published again next time"));
    }
  } else {
    r = kube_->Do("POST", kSlices, &slice);
  }
  if (!r.ok()) return r.status();
  if (absl::Status s =
          KubeClient::Check(*r, "writing ResourceSlice " + SliceName());
      !s.ok()) {
    return s;
  }
  slice_version_ =
      r->body.value("/metadata/resourceVersion"_json_pointer, std::string());
  published_ = devices;
  return absl::OkStatus();
}

}  // namespace physpool::dra
