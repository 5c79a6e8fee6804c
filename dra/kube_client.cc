// SPDX-License-Identifier: Apache-2.0
#include "dra/kube_client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "util/file.h"

namespace physpool::dra {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  absl::StatusOr<std::string> token =
      ReadFileToString(path, "the service account token");
  // Never NOT_FOUND (a missing file): callers read that as "the object is
  // gone from the API server".
  if (!token.ok())
    return absl::FailedPreconditionError(token.status().message());
  return std::string(absl::StripAsciiWhitespace(*token));
}

}  // namespace

absl::StatusOr<KubeConfig> InClusterConfig(std::string server,
                                           std::string token_file,
                                           std::string ca_file) {
  if (server.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || port == nullptr || !*host || !*port) {
      return absl::FailedPreconditionError(
          "no API server: KUBERNETES_SERVICE_HOST/PORT are not set (not in a "
          "pod?) and --kube-api is not given");
    }
    const std::string h = host;
    // An IPv6 address goes in brackets.
    server = absl::StrCat("https://",
                          h.find(':') != std::string::npos ? "[" + h + "]" : h,
                          ":", port);
  }
  return KubeConfig{std::move(server), std::move(token_file),
                    std::move(ca_file)};
}

KubeClient::KubeClient(KubeConfig config) : config_(std::move(config)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

absl::StatusOr<KubeResponse> KubeClient::Do(const std::string& method,
                                            const std::string& path,
                                            const nlohmann::json* body) const {
  absl::StatusOr<std::string> token = ReadToken(config_.token_file);
  if (!token.ok()) return token.status();
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(),
                                              curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  const std::string url = config_.server + path;
  std::string out, sent;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(
      headers, absl::StrCat("Authorization: Bearer ", *token).c_str());
  if (body != nullptr) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    sent = body->dump();
  }
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> free_headers(
      headers, curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  if (body != nullptr) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, sent.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(sent.size()));
  }
  char err[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  if (CURLcode rc = curl_easy_perform(c); rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(
        method, " ", url, ": ", *err ? err : curl_easy_strerror(rc)));
  }
  KubeResponse r;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.code);
  r.body = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (r.body.is_discarded()) r.body = nlohmann::json::object();
  return r;
}

absl::Status KubeClient::Check(const KubeResponse& r, const std::string& what) {
  if (r.code >= 200 && r.code < 300) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": HTTP ", r.code);
  if (r.body.is_object() && r.body.contains("message") &&
      r.body["message"].is_string()) {
    absl::StrAppend(&msg, ": ", r.body["message"].get<std::string>());
  }
  switch (r.code) {
    case 404:
      return absl::NotFoundError(msg);
    case 409:
      return absl::AbortedError(msg);
    case 401:
    case 403:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

}  // namespace physpool::dra
