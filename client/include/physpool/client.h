// SPDX-License-Identifier: Apache-2.0
// physpool-client: the library accelerator runtimes link to lease DMA
// memory from physpoold.
//
//   auto client = physpool::Client::Connect({});           // default socket
//   physpool::AllocateOptions o;
//   o.bytes = 1 << 20;
//   o.alignment = 1 << 16;
//   auto region = (*client)->Allocate(o);                   // mapped, renewed
//   for (const auto& run : (*region)->runs()) {
//     program_dma_descriptor(run.iova, run.bytes);          // device side
//     memset(run.cpu, 0, run.bytes);                         // CPU side
//   }
//   // ~Region releases the lease and unmaps the memory.
//
// Allocate is safe to retry: every logical Allocate carries a fresh
// request id and is retried with that id on UNAVAILABLE and (unless it
// waits) DEADLINE_EXCEEDED, so a lost answer or a daemon restart does not
// leave a second lease behind (see Client::Allocate, docs/client.md).
//
// The channel accepts answers up to 8 MiB (the daemon's are at most 4 MiB)
// and sends requests up to 1 MiB, and reconnects within a second once the
// daemon is back.
//
// Thread-safe: a Client and its Regions may be used from any thread.
#ifndef PHYSPOOL_CLIENT_H_
#define PHYSPOOL_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace physpool {

// What ClientOptions::on_allocate_retry is told.
struct AllocateRetry {
  int attempt = 0;     // the attempt that failed, from 1
  absl::Status error;  // its status (UNAVAILABLE or DEADLINE_EXCEEDED)
  std::chrono::milliseconds pause{0};  // before the next attempt
  std::string request_id;              // the same for every attempt
};

struct ClientOptions {
  // "unix:/path", "unix:///path" or "host:port". Empty: $PHYSPOOL_ENDPOINT,
  // else the daemon's default socket (/run/physpool/physpool.sock as root,
  // else $XDG_RUNTIME_DIR/physpool/physpool.sock or
  // /tmp/physpool-<uid>/physpool.sock).
  std::string endpoint;
  // Bearer token. Empty: the file `token_file`, else $PHYSPOOL_TOKEN, else
  // the file $PHYSPOOL_TOKEN_FILE, else none (embedded default daemons).
  std::string token;
  std::string token_file;
  // TCP with TLS: the CA that signed the server (PEM file); with cert and
  // key, a client certificate (mTLS).
  std::string tls_ca, tls_cert, tls_key;
  // Deadline of each call, and of each fd socket request (OpenDevice, the
  // backing of a memfd-backed Allocate: DEADLINE_EXCEEDED, the lease
  // released). An Allocate attempt that waits for memory gets
  // wait_timeout + timeout.
  std::chrono::milliseconds timeout{10000};
  // The daemon's fd socket (device and backing fds). Empty: the one the
  // daemon names in GetPoolInfo or, if that path is not there (the
  // daemon's directory mounted elsewhere), the endpoint's socket + ".fds".
  std::string fd_socket;

  // Retries of one logical Allocate (see Client::Allocate): at most
  // `allocate_attempts` attempts (clamped to 1..100); before attempt
  // n + 1 a pause of retry_backoff * 2^(n-1), capped at max_retry_backoff,
  // scaled by a random factor in [0.5, 1] (jitter).
  int allocate_attempts = 5;
  std::chrono::milliseconds retry_backoff{250};
  std::chrono::milliseconds max_retry_backoff{4000};
  // Called on the allocating thread after a failed attempt that will be
  // retried, before the pause (for logging; may block, which delays the
  // retry). Not called for the last attempt.
  std::function<void(const AllocateRetry&)> on_allocate_retry;
};

// An IOVA range the daemon's IOMMU translates, inclusive.
struct IovaRange {
  uint64_t first = 0, last = 0;
};

// A PCI device the daemon drives (vfio source).
struct DeviceInfo {
  std::string bdf;
  uint64_t dma_limit = 0;  // the device reaches IOVAs below this; 0 = all
};

// The default endpoint, as physpoold chooses its socket.
std::string DefaultEndpoint();

struct AllocateOptions {
  uint64_t bytes = 0;
  uint64_t alignment = 0;      // power of two; 0 = page size
  uint64_t boundary = 0;       // 0 or a power of two >= bytes
  uint32_t max_segments = 0;   // 0 = any number of runs
  uint64_t low = 0, high = 0;  // IOVA window; high 0 = unbounded
  std::optional<int32_t> numa_node;
  bool numa_strict = false;
  bool preemptible = false;
  bool may_reclaim = false;
  // > 0: wait up to this long for memory to free up.
  std::chrono::milliseconds wait_timeout{0};
  std::chrono::seconds ttl{0};  // 0 = the daemon's default
  std::string label;
  // The device (PCI address, see Client::devices()) that will DMA to the
  // region: the daemon clips the window to its DMA limit.
  std::string device;
};

// Called once when the daemon takes a region back: `kind` "revoked" (by an
// admin), "preempted" (by a reclaim), "expired", or "lost" (a renewal, or
// the lease list after a Watch gap, found the lease gone; the reason says
// which). `deadline_unix_ms` (preemption) is
// when the device must have stopped using the memory; 0 otherwise. Runs on
// the client's event thread: do not destroy the Region from inside it.
using RevokedCallback =
    std::function<void(const std::string& lease_id, const std::string& kind,
                       const std::string& reason, int64_t deadline_unix_ms)>;

class Client;
namespace client_internal {
class ArenaShared;
}

// A leased, mapped region: the lease's own view (docs/vfio.md), one
// mapping per run. Destroying it stops renewal, unmaps the memory and
// releases the lease.
class Region {
 public:
  struct Run {
    uint64_t iova = 0;  // what the device uses
    uint64_t bytes = 0;
    void* cpu = nullptr;  // the same memory in this process
  };

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const std::string& lease_id() const { return lease_id_; }
  const std::vector<Run>& runs() const { return runs_; }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }  // allocation path
  // The request id the lease was allocated with (32 hex digits; the
  // daemon's Lease.request_id).
  const std::string& request_id() const { return request_id_; }
  // True once the daemon has taken it back (the callback has run).
  bool revoked() const;
  // Unmaps (runs() is empty after) and releases now (idempotent; a Region
  // from Client::Attach is only unmapped).
  // Unmapping first matters: memory of an ended lease that is still
  // mapped stays quarantined, out of the pool, until it is unmapped.
  absl::Status Release();
  // Lets go of the lease without ending it: unmaps (runs() is empty after),
  // stops renewing it and forgets it, so that neither Release nor the
  // destructor releases it and its revocation callback no longer runs. The
  // lease lives until its TTL runs out, unless renewed or released by id
  // (`physpoolctl alloc` without --hold, as `etcdctl lease grant`).
  void Detach();

 private:
  void Unmap();
  friend class Client;
  friend class client_internal::ArenaShared;
  struct Shared;
  Region(std::shared_ptr<Shared> shared, std::string lease_id,
         std::vector<Run> runs, uint64_t bytes, std::string path,
         std::string request_id);

  std::shared_ptr<Shared> shared_;
  std::string lease_id_;
  std::vector<Run> runs_;
  uint64_t bytes_ = 0;
  std::string path_;
  std::string request_id_;
};

// --- Arenas (docs/client.md, "Arenas") -------------------------------------
// An Arena leases a region once and places many small buffers in it inside
// this process, with the daemon's own allocator core (pglist), so that a
// buffer costs no RPC: alignment and boundary hold in IOVA space, as the
// daemon's.

// A buffer's request. Sizes are rounded up to whole pages of the daemon's
// page size (Client::page_size()).
struct BufferOptions {
  uint64_t bytes = 0;
  uint64_t alignment = 0;     // power of two, of each run's IOVA; 0 = a page
  uint64_t boundary = 0;      // 0, or a power of two >= the rounded size:
                              // no run crosses a multiple of it (IOVA)
  uint32_t max_segments = 1;  // most runs; 0 = any number
};

// Memory placed by an Arena. Move-only; the destructor frees it (Free).
// Free buffers before destroying their Arena (see Arena::~Arena).
class Buffer {
 public:
  struct Run {
    uint64_t iova = 0;  // what the device uses
    uint64_t bytes = 0;
    void* cpu = nullptr;  // the same memory in this process
  };

  Buffer() = default;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Free(); }

  // Ascending IOVAs; one run unless BufferOptions::max_segments allowed more.
  absl::Span<const Run> runs() const { return runs_; }
  uint64_t bytes() const { return bytes_; }  // whole pages
  // Unique within its arena; ArenaLoss::buffers names buffers by it.
  uint64_t id() const { return id_; }
  // Placed and not yet freed (a buffer whose lease was taken back stays
  // valid until freed, but its memory is gone: see lost()).
  bool valid() const { return arena_ != nullptr; }
  // True once the lease under it was taken back (ArenaOptions::on_lost ran
  // for it): its memory is unmapped here and no longer the device's.
  bool lost() const;
  // Returns the memory to the arena (idempotent; an invalid buffer: no-op).
  void Free();

 private:
  friend class client_internal::ArenaShared;
  client_internal::ArenaShared* arena_ = nullptr;
  uint64_t id_ = 0;
  uint64_t bytes_ = 0;
  absl::InlinedVector<Run, 1> runs_;
};

// What ArenaOptions::on_lost is told when one of the arena's leases is
// taken back.
struct ArenaLoss {
  std::string lease_id;
  std::string kind;  // as RevokedCallback: "revoked", "preempted", ...
  std::string reason;
  int64_t deadline_unix_ms = 0;   // preemption: stop DMA by then
  std::vector<uint64_t> buffers;  // ids of the live buffers it hit
};

// The AllocateOptions part is each lease the arena takes: bytes (> 0; of
// the first lease), alignment, max_segments, window, NUMA node, label, TTL,
// preemptible, ...
struct ArenaOptions : AllocateOptions {
  // Growth: while the arena's leases total less than this, an allocation
  // that does not fit leases another region (like the first, or shaped like
  // the buffer if that is larger than `bytes`). 0: `bytes` (no growth).
  uint64_t max_bytes = 0;
  // A region leased for growth that has held no buffer this long is
  // released (the first region is kept for the arena's life).
  std::chrono::milliseconds idle_release{5000};
  // Placement in the arena: pglist's bounded best fit (true; fewer failures
  // under churn) or next fit (false; a cheaper search).
  bool best_fit = true;
  // Called when one of the arena's leases is taken back, with the live
  // buffers it hit, on the client's event thread. Their memory is unmapped
  // right after it returns: stop the device and the CPU using it first.
  // Do not destroy the Arena from inside it.
  std::function<void(const ArenaLoss&)> on_lost;
};

// Buffers from leased regions, placed in this process. Thread-safe: any
// number of threads may Allocate and Free at once.
class Arena {
 public:
  // Releases the arena's leases and unmaps them. Destroying an Arena that
  // still has live buffers is an error: it is reported on stderr and the
  // leases are then kept (renewed, mapped) until the last buffer is freed,
  // so that no live buffer's memory goes back to the pool under it.
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Places a buffer. INVALID_ARGUMENT for a malformed request;
  // RESOURCE_EXHAUSTED when it does not fit and the arena may not grow (or
  // never could hold it); UNAVAILABLE when it does not fit because a lease
  // was taken back and the arena may not grow to replace it; a growth
  // lease's error (the daemon's: RESOURCE_EXHAUSTED for quota, ...).
  absl::StatusOr<Buffer> Allocate(const BufferOptions& options);

  uint64_t page_size() const;
  uint64_t leased_bytes() const;  // of the live leases
  uint64_t used_bytes() const;    // of the live buffers
  size_t live_buffers() const;
  std::vector<std::string> lease_ids() const;  // the live leases

 private:
  friend class Client;
  explicit Arena(std::shared_ptr<client_internal::ArenaShared> shared);
  std::shared_ptr<client_internal::ArenaShared> shared_;
};

class Client {
 public:
  // Connects and checks the daemon answers (GetPoolInfo). UNAVAILABLE if
  // not, UNAUTHENTICATED for bad credentials.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();

  // Leases and maps a region. The lease is renewed in the background at a
  // third of its TTL until the Region is destroyed or taken back; then
  // `on_revoked` runs (if given). Errors are the daemon's status codes.
  //
  // Retries: the request carries a request id, 128 random bits from the
  // kernel (getrandom) as 32 hex digits, new for each call of Allocate.
  // The daemon answers a request id it has seen from this tenant with the
  // same lease (or the same error), so the call is retried with the same
  // id when an attempt fails with UNAVAILABLE (the daemon was unreachable
  // or went away: restart, crash) or DEADLINE_EXCEEDED (the answer did not
  // arrive): at most options.allocate_attempts attempts, with exponential
  // backoff and jitter between them (ClientOptions). Each attempt has its
  // own deadline: `timeout`, or wait_timeout + timeout for a request that
  // waits. The whole call is bounded: by allocate_attempts * timeout plus
  // the pauses; a waiting request by wait_timeout + timeout plus the
  // pauses, and its DEADLINE_EXCEEDED (the wait ran out) is final, so a
  // wait is never started over. Other errors are returned at once. An
  // error after a retry keeps the last attempt's code, and its message
  // ends with the request id and the number of attempts, e.g.
  // "... (Allocate request_id 0f3a...: 5 attempts in 3.1s)".
  absl::StatusOr<std::unique_ptr<Region>> Allocate(
      const AllocateOptions& options, RevokedCallback on_revoked = nullptr);

  // Maps a lease that exists already, e.g. one the DRA driver allocated for
  // this pod's ResourceClaim (docs/kubernetes.md): `lease_id`, or
  // $PHYSPOOL_LEASE if empty. The credentials are the usual ones ($PHYSPOOL_
  // TOKEN_FILE names the claim's access token there). The Region does not
  // renew or release the lease (its owner does): destroying it, or
  // Release(), only unmaps. Its revocation callback never runs; runs()
  // stays mapped until then. Errors: NOT_FOUND (ended), PERMISSION_DENIED
  // (another tenant's, or a lease the access token does not reach),
  // INVALID_ARGUMENT (no id).
  absl::StatusOr<std::unique_ptr<Region>> Attach(
      const std::string& lease_id = "");

  // Leases `options` (its AllocateOptions) and returns an arena over it
  // (see Arena). Errors: INVALID_ARGUMENT (bytes 0, max_bytes below it),
  // the Allocate's.
  // The arena keeps what it needs of the Client: it may outlive it, but its
  // leases are then no longer renewed.
  absl::StatusOr<std::unique_ptr<Arena>> CreateArena(ArenaOptions options);

  // The VFIO device fd of `bdf` from the daemon (over its fd socket, with
  // SCM_RIGHTS): for BAR registers, config space and interrupts. The caller
  // owns it and closes it. PERMISSION_DENIED without the privileged role,
  // NOT_FOUND for a device the daemon does not drive, FAILED_PRECONDITION
  // if the daemon has no fd socket. Keeping it across a daemon restart
  // keeps the device's IOMMU group busy: close it when the daemon goes
  // away (docs/vfio.md).
  absl::StatusOr<int> OpenDevice(const std::string& bdf);

  const std::string& tenant() const;
  uint64_t page_size() const;
  // What the daemon said at Connect: "sim" or "vfio", the IOMMU's IOVA
  // ranges and the devices it drives (vfio).
  const std::string& source() const;
  const std::vector<IovaRange>& iova_ranges() const;
  const std::vector<DeviceInfo>& devices() const;

  // The runs (IOVA, bytes) the daemon holds now for one of this tenant's
  // leases, e.g. to check a lease survived a daemon restart. NOT_FOUND if
  // it ended.
  absl::StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> LeaseRuns(
      const std::string& lease_id);

 private:
  friend class Region;
  friend class client_internal::ArenaShared;
  struct Impl;
  explicit Client(std::shared_ptr<Impl> impl);
  // Allocate through `impl` (an Arena grows this way, even after its
  // Client is gone).
  static absl::StatusOr<std::unique_ptr<Region>> AllocateWith(
      const std::shared_ptr<Impl>& impl, const AllocateOptions& options,
      RevokedCallback on_revoked);
  std::shared_ptr<Impl> impl_;
};

}  // namespace physpool

#endif  // PHYSPOOL_CLIENT_H_
