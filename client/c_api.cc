#include <string>

#include "physpool/client.h"
#include "physpool/physpool.h"

struct physpool_client {
  std::unique_ptr<physpool::Client> client;
};
struct physpool_region {
  std::unique_ptr<physpool::Region> region;
};

namespace {

thread_local std::string last_error;

int Fail(const absl::Status& s) {
  last_error = std::string(s.message());
  return static_cast<int>(s.code());
}

}  // namespace

extern "C" {

int physpool_connect(const char* endpoint, const char* token,
                     physpool_client** out) {
  physpool::ClientOptions o;
  if (endpoint != nullptr) o.endpoint = endpoint;
  if (token != nullptr) o.token = token;
  auto c = physpool::Client::Connect(o);
  if (!c.ok()) return Fail(c.status());
  *out = new physpool_client{*std::move(c)};
  return 0;
}

void physpool_disconnect(physpool_client* client) { delete client; }

int physpool_alloc(physpool_client* client,
                   const physpool_alloc_options* options,
                   physpool_revoked_fn on_revoked, void* user,
                   physpool_region** out) {
  physpool::AllocateOptions o;
  o.bytes = options->bytes;
  o.alignment = options->alignment;
  o.boundary = options->boundary;
  o.max_segments = options->max_segments;
  o.low = options->low;
  o.high = options->high;
  if (options->numa_node >= 0) o.numa_node = options->numa_node;
  o.preemptible = options->preemptible != 0;
  o.may_reclaim = options->may_reclaim != 0;
  o.wait_timeout = std::chrono::milliseconds(options->wait_timeout_ms);
  o.ttl = std::chrono::seconds(options->ttl_seconds);
  if (options->label != nullptr) o.label = options->label;
  physpool::RevokedCallback cb;
  if (on_revoked != nullptr) {
    cb = [on_revoked, user](const std::string& id, const std::string& kind,
                            const std::string& reason, int64_t deadline) {
      on_revoked(id.c_str(), kind.c_str(), reason.c_str(), deadline, user);
    };
  }
  auto r = client->client->Allocate(o, std::move(cb));
  if (!r.ok()) return Fail(r.status());
  *out = new physpool_region{*std::move(r)};
  return 0;
}

size_t physpool_region_run_count(const physpool_region* region) {
  return region->region->runs().size();
}

physpool_run physpool_region_run(const physpool_region* region, size_t i) {
  const auto& r = region->region->runs().at(i);
  return {r.iova, r.bytes, r.cpu};
}

const char* physpool_region_lease_id(const physpool_region* region) {
  return region->region->lease_id().c_str();
}

int physpool_region_revoked(const physpool_region* region) {
  return region->region->revoked() ? 1 : 0;
}

void physpool_region_free(physpool_region* region) { delete region; }

const char* physpool_last_error(void) { return last_error.c_str(); }

}  // extern "C"
