// The C API (physpool/physpool.h) over the C++ client. No exception leaves
// an extern "C" function: each body runs inside Guarded(), which turns one
// into INTERNAL (or the function's documented "nothing" value).
#include <exception>
#include <string>

#include "absl/strings/str_cat.h"
#include "physpool/client.h"
#include "physpool/physpool.h"

struct physpool_client {
  std::unique_ptr<physpool::Client> client;
};
struct physpool_region {
  std::unique_ptr<physpool::Region> region;
};

namespace {

constexpr int kInvalidArgument = 3;
constexpr int kInternal = 13;

thread_local std::string last_error;

int Fail(const absl::Status& s) {
  last_error = std::string(s.message());
  return static_cast<int>(s.code());
}

// INVALID_ARGUMENT naming the NULL argument of `function`.
int NullArgument(const char* function, const char* argument) {
  last_error = absl::StrCat(function, ": ", argument, " is NULL");
  return kInvalidArgument;
}

// Runs `body`; an exception becomes `on_exception` with the message set.
template <typename T, typename Body>
T Guarded(const char* function, T on_exception, Body body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    last_error = absl::StrCat(function, ": internal error: ", e.what());
  } catch (...) {
    last_error = absl::StrCat(function, ": internal error");
  }
  return on_exception;
}

}  // namespace

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
    physpool::AllocateOptions o;
    o.bytes = options->bytes;
    o.alignment = options->alignment;
    o.boundary = options->boundary;
    o.max_segments = options->max_segments;
    o.low = options->low;
    o.high = options->high;
    if (options->use_numa_node != 0) o.numa_node = options->numa_node;
    o.numa_strict = options->numa_strict != 0;
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
