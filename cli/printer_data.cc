// SPDX-License-Identifier: Apache-2.0
// The data formats: -o json prints each answer as protobuf's JSON mapping
// of the daemon's message (field names as in the .proto, every field, 64-bit
// integers as strings); -o yaml prints the same document as YAML. Streams
// (watch) print one compact JSON object a line, or one YAML document each.
#include <cctype>
#include <cstdio>
#include <string>

#include "cli/printer.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace physpool::cli {
namespace {

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  o.add_whitespace = pretty;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

// A string YAML would read as something else (a number, a bool, null) or
// that is empty is written quoted, so that the document reads back as the
// JSON one does.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const char* kWords[] = {"true", "false", "yes", "no", "on",
                                 "off",  "null",  "~",   "y",  "n"};
  std::string lower;
  for (char c : s) lower.push_back(static_cast<char>(std::tolower(c)));
  for (const char* w : kWords)
    if (lower == w) return true;
  const char c = s[0];
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.';
}

void Emit(const nlohmann::json& j, YAML::Emitter* out) {
  if (j.is_object()) {
    *out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      *out << YAML::Key << k << YAML::Value;
      Emit(v, out);
    }
    *out << YAML::EndMap;
  } else if (j.is_array()) {
    *out << YAML::BeginSeq;
    for (const auto& v : j) Emit(v, out);
    *out << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (NeedsQuotes(s)) *out << YAML::DoubleQuoted;
    *out << s;
  } else if (j.is_boolean()) {
    *out << j.get<bool>();
  } else if (j.is_null()) {
    *out << YAML::Null;
  } else {
    *out << j.dump();  // a number as JSON wrote it
  }
}

class DataPrinter final : public Printer {
 public:
  explicit DataPrinter(bool yaml) : yaml_(yaml) {}

  void PoolStatus(const v1::GetPoolInfoResponse& m) const override { Print(m); }
  void PoolMap(const MapView& m) const override { Print(*m.occupancy); }
  void Segments(const v1::ListSegmentsResponse& m) const override { Print(m); }
  void Segment(const v1::SegmentResponse& m) const override { Print(m); }
  void SegmentRemoved(uint32_t,
                      const v1::RemoveSegmentResponse& m) const override {
    Print(m);
  }
  void Leases(const v1::ListLeasesResponse& m) const override { Print(m); }
  void Lease(const v1::Lease& m, LeaseShown) const override { Print(m); }
  void Released(const std::string&,
                const v1::ReleaseResponse& m) const override {
    Print(m);
  }
  void Tenants(const v1::ListTenantsResponse& m) const override { Print(m); }
  void TenantLimits(const v1::SetTenantLimitsResponse& m) const override {
    Print(m);
  }
  void Health(const grpc::health::v1::HealthCheckResponse& m) const override {
    Print(m);
  }
  void EventsStart() const override {}
  void Event(const v1::LeaseEvent& e) const override {
    if (yaml_) {
      Write("---\n" + Yaml(ToJson(e, false)));
    } else {
      Write(ToJson(e, false) + "\n");
    }
  }

 private:
  static std::string Yaml(const std::string& json) {
    YAML::Emitter out;
    Emit(nlohmann::json::parse(json), &out);
    return std::string(out.c_str()) + "\n";
  }
  static void Write(const std::string& s) {
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
  }
  void Print(const google::protobuf::Message& m) const {
    const std::string json = ToJson(m, true);
    Write(yaml_ ? Yaml(json) : json);
  }

  bool yaml_;
};

}  // namespace

std::unique_ptr<Printer> NewJsonPrinter() {
  return std::make_unique<DataPrinter>(false);
}
std::unique_ptr<Printer> NewYamlPrinter() {
  return std::make_unique<DataPrinter>(true);
}

absl::StatusOr<std::unique_ptr<Printer>> NewPrinter(absl::string_view format) {
  if (format == "table") return NewTablePrinter();
  if (format == "json") return NewJsonPrinter();
  if (format == "yaml") return NewYamlPrinter();
  return absl::InvalidArgumentError("-o takes table, json or yaml, not \"" +
                                    std::string(format) + "\"");
}

}  // namespace physpool::cli
