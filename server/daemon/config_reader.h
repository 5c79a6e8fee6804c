// SPDX-License-Identifier: Apache-2.0
// Reading physpoold's YAML configuration (config.h): a reader whose errors
// carry the file, the line and the key path, and the parsers of the
// sections that have files of their own. Internal to server/daemon/config*.
//
// State: ConfigReader's file name only. Thread safety: const, any thread.
// I/O: none (it reads YAML already parsed).
// REQUIRES: nothing; yaml-cpp may throw on shapes a read does not expect
// (ParseConfig turns that into INVALID_ARGUMENT).
#ifndef PHYSPOOL_SERVER_DAEMON_CONFIG_READER_H_
#define PHYSPOOL_SERVER_DAEMON_CONFIG_READER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/daemon/config.h"
#include "yaml-cpp/yaml.h"

namespace physpool::server::config_internal {

// Errors carry the file, the line and the key path (see the top of this
// file for its state and what may throw).
class ConfigReader {
 public:
  explicit ConfigReader(absl::string_view name) : name_(name) {}

  absl::Status Error(const YAML::Node& n, absl::string_view key,
                     absl::string_view why) const {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ":", n.Mark().line + 1, ": ", key, ": ", why));
  }

  // `n` must be a map whose keys are all in `allowed`.
  absl::Status Keys(const YAML::Node& n, absl::string_view where,
                    const std::set<std::string>& allowed) const {
    if (!n.IsMap()) return Error(n, where, "must be a mapping");
    for (const auto& kv : n) {
      const std::string key = kv.first.as<std::string>();
      if (!allowed.count(key)) {
        return Error(kv.first,
                     absl::StrCat(where, where.empty() ? "" : ".", key),
                     absl::StrCat("unknown key (expected one of: ",
                                  absl::StrJoin(allowed, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const YAML::Node& parent, const std::string& key,
                   absl::string_view where, T* out) const {
    const YAML::Node n = parent[key];
    if (!n) return absl::OkStatus();
    const std::string path = absl::StrCat(where, where.empty() ? "" : ".", key);
    if (!n.IsScalar()) return Error(n, path, "must be a single value");
    try {
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      return Error(n, path, absl::StrCat("bad value \"", n.Scalar(), "\""));
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
};

// `key` under `parent`, a non-negative count of `unit`s, into *out; left
// alone where the key is absent.
absl::Status ParseSeconds(const ConfigReader& r, const YAML::Node& parent,
                          const std::string& key, absl::string_view where,
                          absl::Duration unit, absl::Duration* out);

// A list of ids (uids or gids).
template <typename T>
absl::Status ParseIds(const ConfigReader& r, const YAML::Node& parent,
                      const std::string& key, absl::string_view where,
                      std::vector<T>* out) {
  const YAML::Node n = parent[key];
  if (!n) return absl::OkStatus();
  const std::string path = absl::StrCat(where, ".", key);
  if (!n.IsSequence()) return r.Error(n, path, "must be a list of numbers");
  out->clear();
  for (const YAML::Node& id : n) {
    int64_t v = -1;
    try {
      v = id.as<int64_t>();
    } catch (const YAML::Exception&) {
    }
    if (v < 0 || v > 0xfffffffe) {
      return r.Error(id, path,
                     absl::StrCat("bad id \"", id.Scalar(),
                                  "\" (numeric uids/gids only)"));
    }
    out->push_back(static_cast<T>(v));
  }
  return absl::OkStatus();
}

// source: (sim or vfio), into c->source, c->sim, c->vfio (config_source.cc).
absl::Status ParseSource(const ConfigReader& r, const YAML::Node& s,
                         ServerConfig* c);

// tenants: the list, each token hash and certificate name given once
// (config_tenants.cc).
absl::Status ParseTenants(const ConfigReader& r, const YAML::Node& ts,
                          ServerConfig* c);

}  // namespace physpool::server::config_internal

#endif  // PHYSPOOL_SERVER_DAEMON_CONFIG_READER_H_
