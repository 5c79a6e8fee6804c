// SPDX-License-Identifier: Apache-2.0
// How physpoolctl prints what the daemon answered: one Printer per output
// format (-o table|json|yaml), chosen once before a command runs, with one
// method per kind of answer (as etcdctl's printer.go). Commands never test
// the format; they hand the answer to the printer.
//
// State: none beyond the format. Thread safety: const methods, one thread
// (they write to stdout). I/O: each method writes to stdout and flushes.
// REQUIRES: nothing.
#ifndef PHYSPOOL_CLI_PRINTER_H_
#define PHYSPOOL_CLI_PRINTER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpc/health/v1/health.pb.h"
#include "physpool/v1/physpool.pb.h"

namespace physpool::cli {

// What `pool map` draws: the occupancy, merged across pages, and how.
struct MapView {
  const v1::OccupancyResponse* occupancy;
  uint64_t page_size;
  int width;   // cells per line
  bool ascii;  // '#' and '.' instead of block characters
};

// Why a lease is printed (the table says it differently).
enum class LeaseShown { kGot, kRenewed, kRevoked, kGranted, kHeld };

class Printer {
 public:
  virtual ~Printer() = default;
  virtual void PoolStatus(const v1::GetPoolInfoResponse& info) const = 0;
  virtual void PoolMap(const MapView& map) const = 0;
  virtual void Segments(const v1::ListSegmentsResponse& list) const = 0;
  virtual void Segment(const v1::SegmentResponse& one) const = 0;
  virtual void SegmentRemoved(uint32_t id,
                              const v1::RemoveSegmentResponse& r) const = 0;
  virtual void Leases(const v1::ListLeasesResponse& list) const = 0;
  virtual void Lease(const v1::Lease& lease, LeaseShown why) const = 0;
  virtual void Released(const std::string& id,
                        const v1::ReleaseResponse& r) const = 0;
  virtual void Tenants(const v1::ListTenantsResponse& list) const = 0;
  virtual void TenantLimits(const v1::SetTenantLimitsResponse& r) const = 0;
  virtual void Health(const grpc::health::v1::HealthCheckResponse& r) const = 0;
  // A stream of events: the start (a table's header), then one each.
  virtual void EventsStart() const = 0;
  virtual void Event(const v1::LeaseEvent& e) const = 0;
};

// The output formats -o takes, for --help and the flag's check.
inline constexpr const char* kOutputFormats[] = {"table", "json", "yaml"};

// The printer of `format` (one of kOutputFormats); INVALID_ARGUMENT
// otherwise.
absl::StatusOr<std::unique_ptr<Printer>> NewPrinter(absl::string_view format);

// The printers of each format (printer_table.cc, printer_data.cc).
std::unique_ptr<Printer> NewTablePrinter();
std::unique_ptr<Printer> NewJsonPrinter();
std::unique_ptr<Printer> NewYamlPrinter();

}  // namespace physpool::cli

#endif  // PHYSPOOL_CLI_PRINTER_H_
