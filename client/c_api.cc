// SPDX-License-Identifier: Apache-2.0
// The C API (physpool/physpool.h) over the C++ client. No exception leaves
// an extern "C" function: each body runs inside Guarded(), which turns one
// into INTERNAL (or the function's documented "nothing" value).
#include <string>

#include "absl/strings/str_cat.h"
#include "client/c_api_util.h"
#include "physpool/client.h"
#include "physpool/physpool.h"

namespace physpool::c_api {

thread_local std::string last_error;

AllocateOptions FromC(const physpool_alloc_options& c) {
  AllocateOptions o;
  o.bytes = c.bytes;
  o.alignment = c.alignment;
  o.boundary = c.boundary;
  o.max_segments = c.max_segments;
  o.low = c.low;
  o.high = c.high;
  if (c.use_numa_node != 0) o.numa_node = c.numa_node;
  o.numa_strict = c.numa_strict != 0;
  o.preemptible = c.preemptible != 0;
  o.may_reclaim = c.may_reclaim != 0;
  o.wait_timeout = std::chrono::milliseconds(c.wait_timeout_ms);
  o.ttl = std::chrono::seconds(c.ttl_seconds);
  if (c.label != nullptr) o.label = c.label;
  return o;
}

}  // namespace physpool::c_api

using namespace physpool::c_api;  // NOLINT: the helpers of this file

extern "C" {

int physpool_connect(const char* endpoint, const char* token,
                     physpool_client** out) {
  return Guarded("physpool_connect", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_connect", "out");
    *out = nullptr;
    physpool::ClientOptions o;
    if (endpoint != nullptr) o.endpoint = endpoint;
    if (token != nullptr) o.token = token;
    auto c = physpool::Client::Connect(o);
    if (!c.ok()) return Fail(c.status());
    *out = new physpool_client{*std::move(c)};
    return 0;
  });
}

int physpool_connect_with(const physpool_connect_options* options,
                          physpool_client** out) {
  return Guarded("physpool_connect_with", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_connect_with", "out");
    *out = nullptr;
    if (options == nullptr) {
      return NullArgument("physpool_connect_with", "options");
    }
    physpool::ClientOptions o;
    auto set = [](std::string* to, const char* from) {
      if (from != nullptr) *to = from;
    };
    set(&o.endpoint, options->endpoint);
    set(&o.token, options->token);
    set(&o.token_file, options->token_file);
    set(&o.tls_ca, options->tls_ca);
    set(&o.tls_cert, options->tls_cert);
    set(&o.tls_key, options->tls_key);
    set(&o.fd_socket, options->fd_socket);
    if (options->timeout_ms != 0) {
      o.timeout = std::chrono::milliseconds(options->timeout_ms);
    }
    if (options->allocate_attempts != 0) {
      o.allocate_attempts = static_cast<int>(options->allocate_attempts);
    }
    auto c = physpool::Client::Connect(o);
    if (!c.ok()) return Fail(c.status());
    *out = new physpool_client{*std::move(c)};
    return 0;
  });
}

const char* physpool_client_tenant(const physpool_client* client) {
  return Guarded("physpool_client_tenant", "", [&] {
    if (client == nullptr) {
      NullArgument("physpool_client_tenant", "client");
      return "";
    }
    return client->client->tenant().c_str();
  });
}

uint64_t physpool_client_page_size(const physpool_client* client) {
  return Guarded("physpool_client_page_size", uint64_t{0}, [&] {
    if (client == nullptr) {
      NullArgument("physpool_client_page_size", "client");
      return uint64_t{0};
    }
    return client->client->page_size();
  });
}

void physpool_disconnect(physpool_client* client) {
  Guarded("physpool_disconnect", 0, [&] {
    delete client;
    return 0;
  });
}

int physpool_alloc(physpool_client* client,
                   const physpool_alloc_options* options,
                   physpool_revoked_fn on_revoked, void* user,
                   physpool_region** out) {
  return Guarded("physpool_alloc", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_alloc", "out");
    *out = nullptr;
    if (client == nullptr) return NullArgument("physpool_alloc", "client");
    if (options == nullptr) return NullArgument("physpool_alloc", "options");
    const physpool::AllocateOptions o = FromC(*options);
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
  });
}

int physpool_attach(physpool_client* client, const char* lease_id,
                    physpool_region** out) {
  return Guarded("physpool_attach", kInternal, [&] {
    if (out == nullptr) return NullArgument("physpool_attach", "out");
    *out = nullptr;
    if (client == nullptr) return NullArgument("physpool_attach", "client");
    auto r = client->client->Attach(lease_id == nullptr ? "" : lease_id);
    if (!r.ok()) return Fail(r.status());
    *out = new physpool_region{*std::move(r)};
    return 0;
  });
}

size_t physpool_region_run_count(const physpool_region* region) {
  return Guarded("physpool_region_run_count", size_t{0}, [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_run_count", "region");
      return size_t{0};
    }
    return region->region->runs().size();
  });
}

physpool_run physpool_region_run(const physpool_region* region, size_t i) {
  const physpool_run none = {0, 0, nullptr};
  return Guarded("physpool_region_run", none, [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_run", "region");
      return none;
    }
    const auto& runs = region->region->runs();
    if (i >= runs.size()) {
      last_error =
          absl::StrCat("physpool_region_run: run ", i,
                       " is out of range (the region has ", runs.size(), ")");
      return none;
    }
    return physpool_run{runs[i].iova, runs[i].bytes, runs[i].cpu};
  });
}

const char* physpool_region_lease_id(const physpool_region* region) {
  return Guarded("physpool_region_lease_id", "", [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_lease_id", "region");
      return "";
    }
    return region->region->lease_id().c_str();
  });
}

uint64_t physpool_region_bytes(const physpool_region* region) {
  return Guarded("physpool_region_bytes", uint64_t{0}, [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_bytes", "region");
      return uint64_t{0};
    }
    return region->region->bytes();
  });
}

const char* physpool_region_request_id(const physpool_region* region) {
  return Guarded("physpool_region_request_id", "", [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_request_id", "region");
      return "";
    }
    return region->region->request_id().c_str();
  });
}

int physpool_region_revoked(const physpool_region* region) {
  return Guarded("physpool_region_revoked", -1, [&] {
    if (region == nullptr) {
      NullArgument("physpool_region_revoked", "region");
      return -1;
    }
    return region->region->revoked() ? 1 : 0;
  });
}

void physpool_region_free(physpool_region* region) {
  Guarded("physpool_region_free", 0, [&] {
    delete region;
    return 0;
  });
}

const char* physpool_last_error(void) { return last_error.c_str(); }

}  // extern "C"
