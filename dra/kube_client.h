// SPDX-License-Identifier: Apache-2.0
// The few API-server calls the DRA driver makes, over HTTPS with libcurl:
// the in-cluster service account (a bearer token file, read again for
// every request since projected tokens rotate, and the cluster's CA
// bundle). Thread-safe (one curl handle per request).
#ifndef PHYSPOOL_DRA_KUBE_CLIENT_H_
#define PHYSPOOL_DRA_KUBE_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace physpool::dra {

struct KubeConfig {
  std::string server;      // https://host:port
  std::string token_file;  // the service account token
  std::string ca_file;     // CA bundle that signed the server's certificate
};

// `server` "" means https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
// (FAILED_PRECONDITION when they are not set).
absl::StatusOr<KubeConfig> InClusterConfig(std::string server,
                                           std::string token_file,
                                           std::string ca_file);

struct KubeResponse {
  long code = 0;  // HTTP status
  nlohmann::json body;
};

class KubeClient {
 public:
  explicit KubeClient(KubeConfig config);

  // One request; `body` (if not null) is sent as JSON. Transport errors
  // (connection, TLS, timeout) are UNAVAILABLE; any HTTP answer is OK with
  // its code and body (a Status object for errors).
  absl::StatusOr<KubeResponse> Do(const std::string& method,
                                  const std::string& path,
                                  const nlohmann::json* body = nullptr) const;

  // The HTTP answer as a status: 2xx OK, 404 NOT_FOUND, 409 ABORTED
  // (conflict), 401/403 PERMISSION_DENIED, else UNAVAILABLE; the message
  // carries the Status object's.
  static absl::Status Check(const KubeResponse& r, const std::string& what);

 private:
  KubeConfig config_;
};

}  // namespace physpool::dra

#endif  // PHYSPOOL_DRA_KUBE_CLIENT_H_
