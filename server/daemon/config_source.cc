// SPDX-License-Identifier: Apache-2.0
// The source section of physpoold's configuration (config.h): the sim
// source's segments, the vfio source's devices and pool.
#include <string>

#include "absl/strings/str_cat.h"
#include "server/daemon/config_reader.h"
#include "util/status_macros.h"

namespace physpool::server::config_internal {
namespace {

// `key` under `parent`, a multiple of the page size `ps` (positive unless
// `zero_ok`), into *value; left alone where the key is absent.
absl::Status PageMultiple(const ConfigReader& r, const YAML::Node& parent,
                          const std::string& key, const std::string& where,
                          uint64_t ps, uint64_t* value, bool zero_ok) {
  RETURN_IF_ERROR(r.Get(parent, key, where, value));
  if (parent[key] && ((*value == 0 && !zero_ok) || *value % ps != 0)) {
    return r.Error(parent[key], where + "." + key,
                   absl::StrCat("must be a ", zero_ok ? "" : "positive ",
                                "multiple of the page size ", ps));
  }
  return absl::OkStatus();
}

// source.vfio.devices: each {bdf, dma_limit, tenant}, a bdf listed once.
absl::Status ParseVfioDevices(const ConfigReader& r, const YAML::Node& v,
                              const std::string& w, vfio::VfioConfig* out) {
  vfio::LayoutConfig& l = out->layout;
  const uint64_t ps = l.page_size;
  const YAML::Node devs = v["devices"];
  if (!devs || !devs.IsSequence() || devs.size() == 0) {
    return r.Error(devs ? devs : v, w + ".devices",
                   "must be a non-empty list of {bdf, dma_limit}");
  }
  out->devices.clear();
  l.dma_limits.clear();
  for (size_t i = 0; i < devs.size(); ++i) {
    const std::string where = absl::StrCat(w, ".devices[", i, "]");
    RETURN_IF_ERROR(r.Keys(devs[i], where, {"bdf", "dma_limit", "tenant"}));
    vfio::VfioDevice d;
    RETURN_IF_ERROR(r.Get(devs[i], "bdf", where, &d.bdf));
    RETURN_IF_ERROR(r.Get(devs[i], "tenant", where, &d.tenant));
    if (devs[i]["tenant"] && d.tenant.empty()) {
      return r.Error(devs[i]["tenant"], where + ".tenant",
                     "must name a tenant (leave it out for a pool-wide "
                     "device)");
    }
    for (const vfio::VfioDevice& other : out->devices) {
      if (other.bdf == d.bdf) {
        return r.Error(devs[i]["bdf"], where + ".bdf",
                       "device " + d.bdf + " is listed twice");
      }
    }
    if (d.bdf.empty() || d.bdf.find('/') != std::string::npos) {
      return r.Error(devs[i], where + ".bdf",
                     "must be a PCI address like 0000:00:01.0");
    }
    RETURN_IF_ERROR(
        PageMultiple(r, devs[i], "dma_limit", where, ps, &d.dma_limit, true));
    if (d.dma_limit) l.dma_limits.push_back(d.dma_limit);
    out->devices.push_back(d);
  }
  return absl::OkStatus();
}

// source.vfio.pool: each {numa, bytes, low_bytes}; low memory needs a
// device with a dma_limit.
absl::Status ParseVfioPool(const ConfigReader& r, const YAML::Node& v,
                           const std::string& w, vfio::VfioConfig* out) {
  vfio::LayoutConfig& l = out->layout;
  const uint64_t ps = l.page_size;
  const YAML::Node pool = v["pool"];
  if (!pool || !pool.IsSequence() || pool.size() == 0) {
    return r.Error(pool ? pool : v, w + ".pool",
                   "must be a non-empty list of {numa, bytes, low_bytes}");
  }
  l.pool.clear();
  for (size_t i = 0; i < pool.size(); ++i) {
    const std::string where = absl::StrCat(w, ".pool[", i, "]");
    RETURN_IF_ERROR(r.Keys(pool[i], where, {"numa", "bytes", "low_bytes"}));
    vfio::PoolShare share;
    RETURN_IF_ERROR(r.Get(pool[i], "numa", where, &share.numa));
    if (share.numa < 0 || share.numa >= 128) {
      return r.Error(pool[i]["numa"], where + ".numa", "must be 0 to 127");
    }
    if (!pool[i]["bytes"]) {
      return r.Error(pool[i], where + ".bytes", "is required");
    }
    RETURN_IF_ERROR(
        PageMultiple(r, pool[i], "bytes", where, ps, &share.bytes, false));
    if (pool[i]["low_bytes"]) {
      uint64_t low = 0;
      RETURN_IF_ERROR(
          PageMultiple(r, pool[i], "low_bytes", where, ps, &low, true));
      if (low > share.bytes) {
        return r.Error(pool[i]["low_bytes"], where + ".low_bytes",
                       "must not exceed bytes");
      }
      if (low > 0 && l.dma_limits.empty()) {
        return r.Error(pool[i]["low_bytes"], where + ".low_bytes",
                       "needs a device with a dma_limit");
      }
      share.low_bytes = low;
    }
    l.pool.push_back(share);
  }
  return absl::OkStatus();
}

absl::Status ParseVfio(const ConfigReader& r, const YAML::Node& v,
                       vfio::VfioConfig* out) {
  const std::string w = "source.vfio";
  RETURN_IF_ERROR(r.Keys(
      v, w,
      {"devices", "page_size", "backing", "dir", "pool", "max_segment_bytes",
       "iova_base", "group_busy_timeout_ms", "keeper"}));
  vfio::LayoutConfig& l = out->layout;
  RETURN_IF_ERROR(r.Get(v, "page_size", w, &l.page_size));
  if (l.page_size != 4096 && l.page_size != (2 << 20) &&
      l.page_size != (1 << 30)) {
    return r.Error(v["page_size"], w + ".page_size",
                   "must be 4096, 2097152 (2 MiB) or 1073741824 (1 GiB)");
  }
  const uint64_t ps = l.page_size;
  std::string backing = "file";
  RETURN_IF_ERROR(r.Get(v, "backing", w, &backing));
  if (backing == "file") {
    out->backing = vfio::BackingKind::kFile;
  } else if (backing == "memfd") {
    out->backing = vfio::BackingKind::kMemfd;
  } else {
    return r.Error(v["backing"], w + ".backing", "must be file or memfd");
  }
  RETURN_IF_ERROR(r.Get(v, "dir", w, &out->dir));
  RETURN_IF_ERROR(r.Get(v, "keeper", w, &out->keeper));
  if (!out->keeper.empty() && out->backing != vfio::BackingKind::kMemfd) {
    return r.Error(v["keeper"], w + ".keeper",
                   "needs backing: memfd (file backing survives a restart by "
                   "itself)");
  }
  if (!out->keeper.empty() && out->keeper[0] != '/') {
    return r.Error(v["keeper"], w + ".keeper", "must be an absolute path");
  }
  RETURN_IF_ERROR(PageMultiple(r, v, "max_segment_bytes", w, ps,
                               &l.max_segment_bytes, false));
  RETURN_IF_ERROR(PageMultiple(r, v, "iova_base", w, ps, &l.iova_base, true));
  RETURN_IF_ERROR(ParseSeconds(r, v, "group_busy_timeout_ms", w,
                               absl::Milliseconds(1),
                               &out->group_busy_timeout));
  RETURN_IF_ERROR(ParseVfioDevices(r, v, w, out));
  return ParseVfioPool(r, v, w, out);
}

}  // namespace

// source: sim or vfio.
absl::Status ParseSource(const ConfigReader& r, const YAML::Node& s,
                         ServerConfig* c) {
  RETURN_IF_ERROR(r.Keys(s, "source", {"type", "sim", "vfio"}));
  RETURN_IF_ERROR(r.Get(s, "type", "source", &c->source));
  if (c->source != "sim" && c->source != "vfio") {
    return r.Error(s["type"], "source.type",
                   absl::StrCat("\"", c->source,
                                "\" is not available (expected sim or vfio)"));
  }
  if (c->source == "vfio" && !s["vfio"]) {
    return r.Error(s, "source.vfio", "is required with type vfio");
  }
  if (const YAML::Node v = s["vfio"])
    RETURN_IF_ERROR(ParseVfio(r, v, &c->vfio));
  if (const YAML::Node sim = s["sim"]) {
    RETURN_IF_ERROR(r.Keys(sim, "source.sim",
                           {"dir", "page_size", "base_iova", "segments"}));
    RETURN_IF_ERROR(r.Get(sim, "dir", "source.sim", &c->sim.dir));
    RETURN_IF_ERROR(r.Get(sim, "page_size", "source.sim", &c->sim.page_size));
    RETURN_IF_ERROR(r.Get(sim, "base_iova", "source.sim", &c->sim.base_iova));
    const uint64_t ps = c->sim.page_size;
    if (ps < 4096 || (ps & (ps - 1)) != 0 || ps > (uint64_t{1} << 30)) {
      return r.Error(sim["page_size"], "source.sim.page_size",
                     "must be a power of two from 4096 to 1073741824");
    }
    if (const YAML::Node segs = sim["segments"]) {
      if (!segs.IsSequence() || segs.size() == 0) {
        return r.Error(segs, "source.sim.segments", "must be a non-empty list");
      }
      c->sim.segments.clear();
      for (size_t i = 0; i < segs.size(); ++i) {
        const std::string where = absl::StrCat("source.sim.segments[", i, "]");
        RETURN_IF_ERROR(r.Keys(segs[i], where, {"bytes", "freelist", "numa"}));
        vfio::SimSegmentConfig seg;
        RETURN_IF_ERROR(r.Get(segs[i], "bytes", where, &seg.bytes));
        RETURN_IF_ERROR(r.Get(segs[i], "freelist", where, &seg.freelist));
        RETURN_IF_ERROR(r.Get(segs[i], "numa", where, &seg.numa));
        if (seg.bytes == 0 || seg.bytes % ps != 0) {
          return r.Error(
              segs[i], where + ".bytes",
              absl::StrCat("must be a positive multiple of the page size ",
                           ps));
        }
        c->sim.segments.push_back(seg);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace physpool::server::config_internal
