// SPDX-License-Identifier: Apache-2.0
// physpool-dra: the Kubernetes DRA kubelet plugin of physpool, a companion
// of physpoold on each node (docs/kubernetes.md). It registers with
// kubelet (pluginregistration.Registration), serves the DRAPlugin service
// (v1 and v1beta1), publishes the node's ResourceSlice and turns each
// prepared ResourceClaim into physpoold leases.
//
// Why a companion and not physpoold itself: it needs the API server
// (libcurl, a service account, RBAC) and kubelet's directories, which the
// memory daemon should not; it can restart, upgrade or crash without
// touching a lease (physpoold keeps them, and the claim record brings the
// driver back to where it was); and it talks to physpoold only through the
// public API, as one tenant.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>
#include <variant>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "dra/claim_state.h"
#include "dra/driver.h"
#include "dra/kube_client.h"
#include "k8s/dra/v1/api.grpc.pb.h"
#include "k8s/dra/v1beta1/api.grpc.pb.h"
#include "k8s/pluginregistration/v1/api.grpc.pb.h"
#include "util/build_info.h"
#include "util/file.h"

namespace {

namespace drav1 = k8s::io::kubelet::pkg::apis::dra::v1;
namespace drav1beta1 = k8s::io::kubelet::pkg::apis::dra::v1beta1;
namespace reg = pluginregistration;
using physpool::dra::Driver;

struct DraFlags {
  std::string driver_name = "dma.physpool.io";
  std::string node_name;  // or $NODE_NAME
  std::string physpool_endpoint = "unix:/run/physpool/physpool.sock";
  std::string physpool_token_file;
  std::string socket_dir = "/run/physpool";
  std::string registrar_dir = "/var/lib/kubelet/plugins_registry";
  std::string plugin_dir;  // "": /var/lib/kubelet/plugins/<driver-name>
  std::string cdi_dir = "/var/run/cdi";
  std::string kube_api;
  std::string kube_token_file =
      "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string kube_ca_file =
      "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  uint32_t publish_interval = 10, cleanup_interval = 60, lease_ttl = 300;
};

// The flags (--name=value or --name value), or the exit code: 0 after
// --help, 2 with the reason said (the flag's name in it).
std::variant<DraFlags, int> ParseFlags(int argc, char** argv) {
  DraFlags f;
  CLI::App app("physpool-dra - the Kubernetes DRA kubelet plugin of physpool",
               "physpool-dra");
  app.set_help_flag("-h,--help", "print this help and exit");
  app.add_flag("--version", "print the version and the git revision, and exit");
  app.footer(
      "See docs/kubernetes.md. Exit codes: 0 stopped; 1 failed; 2 a "
      "bad flag or a missing file.");
  auto opt = [&](const char* name, std::string* v, const char* help) {
    return app.add_option(name, *v, help)->capture_default_str();
  };
  opt("--driver-name", &f.driver_name, "DRA driver name");
  opt("--node-name", &f.node_name, "this node")->envname("NODE_NAME");
  opt("--physpool-endpoint", &f.physpool_endpoint, "physpoold");
  opt("--physpool-token-file", &f.physpool_token_file,
      "the driver's tenant token at physpoold");
  opt("--socket-dir", &f.socket_dir,
      "physpoold's socket directory on the host, mounted into the claims' "
      "containers");
  opt("--registrar-dir", &f.registrar_dir, "kubelet's plugin registry");
  opt("--plugin-dir", &f.plugin_dir,
      "dra.sock, state.json, claims/ (default "
      "/var/lib/kubelet/plugins/<driver-name>)");
  opt("--cdi-dir", &f.cdi_dir, "CDI spec directory");
  opt("--kube-api", &f.kube_api,
      "API server (default https://$KUBERNETES_SERVICE_HOST:"
      "$KUBERNETES_SERVICE_PORT)");
  opt("--kube-token-file", &f.kube_token_file, "service account token");
  opt("--kube-ca-file", &f.kube_ca_file, "API server CA");
  auto seconds = [&](const char* name, uint32_t* v, const char* help) {
    app.add_option(name, *v, help)
        ->capture_default_str()
        ->check(CLI::Range(uint32_t{1}, UINT32_MAX));
  };
  seconds("--publish-interval", &f.publish_interval,
          "seconds between ResourceSlice checks");
  seconds("--cleanup-interval", &f.cleanup_interval,
          "seconds between cleanup passes");
  seconds("--lease-ttl", &f.lease_ttl,
          "TTL of the claims' leases, renewed at a third");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    fprintf(stderr, "physpool-dra: %s (see --help)\n", e.what());
    return 2;
  }
  return f;
}

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

// Copies a message between two packages with the same wire format (the
// v1beta1 DRA messages are v1's).
template <typename To, typename From>
To Convert(const From& from) {
  To to;
  to.ParseFromString(from.SerializeAsString());
  return to;
}

class DraV1 final : public drav1::DRAPlugin::Service {
 public:
  explicit DraV1(Driver* d) : d_(d) {}
  grpc::Status NodePrepareResources(
      grpc::ServerContext*, const drav1::NodePrepareResourcesRequest* req,
      drav1::NodePrepareResourcesResponse* resp) override {
    for (const drav1::Claim& c : req->claims()) {
      drav1::NodePrepareResourceResponse& out =
          (*resp->mutable_claims())[c.uid()];
      auto devices = d_->Prepare(c.namespace_(), c.uid(), c.name());
      if (!devices.ok()) {
        out.set_error(std::string(devices.status().message()));
        fprintf(stderr, "physpool-dra: prepare %s/%s (%s): %s\n",
                c.namespace_().c_str(), c.name().c_str(), c.uid().c_str(),
                out.error().c_str());
        continue;
      }
      for (const physpool::dra::PreparedDevice& p : *devices) {
        drav1::Device* dev = out.add_devices();
        for (const std::string& r : p.requests) dev->add_request_names(r);
        dev->set_pool_name(p.pool);
        dev->set_device_name(p.device);
        for (const std::string& id : p.cdi_ids) dev->add_cdi_device_ids(id);
      }
      fprintf(stderr, "physpool-dra: prepared %s/%s (%s)\n",
              c.namespace_().c_str(), c.name().c_str(), c.uid().c_str());
    }
    return grpc::Status::OK;
  }
  grpc::Status NodeUnprepareResources(
      grpc::ServerContext*, const drav1::NodeUnprepareResourcesRequest* req,
      drav1::NodeUnprepareResourcesResponse* resp) override {
    for (const drav1::Claim& c : req->claims()) {
      drav1::NodeUnprepareResourceResponse& out =
          (*resp->mutable_claims())[c.uid()];
      if (absl::Status s = d_->Unprepare(c.uid()); !s.ok()) {
        out.set_error(std::string(s.message()));
        fprintf(stderr, "physpool-dra: unprepare %s: %s\n", c.uid().c_str(),
                out.error().c_str());
      } else {
        fprintf(stderr, "physpool-dra: unprepared %s/%s (%s)\n",
                c.namespace_().c_str(), c.name().c_str(), c.uid().c_str());
      }
    }
    return grpc::Status::OK;
  }

 private:
  Driver* d_;
};

class DraV1beta1 final : public drav1beta1::DRAPlugin::Service {
 public:
  explicit DraV1beta1(DraV1* v1) : v1_(v1) {}
  grpc::Status NodePrepareResources(
      grpc::ServerContext* ctx,
      const drav1beta1::NodePrepareResourcesRequest* req,
      drav1beta1::NodePrepareResourcesResponse* resp) override {
    const auto in = Convert<drav1::NodePrepareResourcesRequest>(*req);
    drav1::NodePrepareResourcesResponse out;
    grpc::Status s = v1_->NodePrepareResources(ctx, &in, &out);
    *resp = Convert<drav1beta1::NodePrepareResourcesResponse>(out);
    return s;
  }
  grpc::Status NodeUnprepareResources(
      grpc::ServerContext* ctx,
      const drav1beta1::NodeUnprepareResourcesRequest* req,
      drav1beta1::NodeUnprepareResourcesResponse* resp) override {
    const auto in = Convert<drav1::NodeUnprepareResourcesRequest>(*req);
    drav1::NodeUnprepareResourcesResponse out;
    grpc::Status s = v1_->NodeUnprepareResources(ctx, &in, &out);
    *resp = Convert<drav1beta1::NodeUnprepareResourcesResponse>(out);
    return s;
  }

 private:
  DraV1* v1_;
};

class Registration final : public reg::Registration::Service {
 public:
  Registration(std::string driver, std::string endpoint)
      : driver_(std::move(driver)), endpoint_(std::move(endpoint)) {}
  grpc::Status GetInfo(grpc::ServerContext*, const reg::InfoRequest*,
                       reg::PluginInfo* info) override {
    info->set_type("DRAPlugin");
    info->set_name(driver_);
    info->set_endpoint(endpoint_);
    info->add_supported_versions("v1.DRAPlugin");
    info->add_supported_versions("v1beta1.DRAPlugin");
    return grpc::Status::OK;
  }
  grpc::Status NotifyRegistrationStatus(
      grpc::ServerContext*, const reg::RegistrationStatus* st,
      reg::RegistrationStatusResponse*) override {
    if (st->plugin_registered()) {
      fprintf(stderr, "physpool-dra: registered with kubelet\n");
    } else {
      fprintf(stderr, "physpool-dra: kubelet refused the registration: %s\n",
              st->error().c_str());
    }
    return grpc::Status::OK;
  }

 private:
  std::string driver_, endpoint_;
};

std::string ReadFileOrDie(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = physpool::ReadFileToString(path, what);
  if (!text.ok()) {
    fprintf(stderr, "physpool-dra: %s\n",
            std::string(text.status().message()).c_str());
    exit(2);
  }
  return std::string(absl::StripAsciiWhitespace(*text));
}

// A unix socket server on `path` (a stale socket replaced).
std::unique_ptr<grpc::Server> Serve(const std::string& path, grpc::Service* a,
                                    grpc::Service* b = nullptr) {
  unlink(path.c_str());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(a);
  if (b != nullptr) builder.RegisterService(b);
  std::unique_ptr<grpc::Server> s = builder.BuildAndStart();
  if (!s) {
    fprintf(stderr, "physpool-dra: cannot serve on %s\n", path.c_str());
    exit(1);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (physpool::WantsVersion(argc, argv)) {
    puts(physpool::VersionLine("physpool-dra").c_str());
    return 0;
  }
  std::variant<DraFlags, int> parsed = ParseFlags(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  const DraFlags& f = std::get<DraFlags>(parsed);
  physpool::dra::DriverOptions o;
  o.driver_name = f.driver_name;
  o.node_name = f.node_name;
  if (o.node_name.empty()) {
    fprintf(stderr,
            "physpool-dra: no node name: pass --node-name or set "
            "NODE_NAME (the downward API's spec.nodeName)\n");
    return 2;
  }
  o.socket_dir = f.socket_dir;
  o.plugin_dir = f.plugin_dir.empty()
                     ? "/var/lib/kubelet/plugins/" + o.driver_name
                     : f.plugin_dir;
  o.cdi_dir = f.cdi_dir;
  o.lease_ttl_seconds = f.lease_ttl;
  const uint32_t publish_every = f.publish_interval;
  const uint32_t cleanup_every = f.cleanup_interval;
  if (!f.physpool_token_file.empty()) {
    o.physpool_token =
        ReadFileOrDie(f.physpool_token_file, "the physpool token");
  }
  const std::string endpoint = f.physpool_endpoint;
  if (endpoint.rfind("unix:", 0) == 0) {
    const std::string path = endpoint.substr(endpoint.find('/'));
    o.socket_name = path.substr(path.rfind('/') + 1);
  }
  auto kube = physpool::dra::InClusterConfig(f.kube_api, f.kube_token_file,
                                             f.kube_ca_file);
  if (!kube.ok()) {
    fprintf(stderr, "physpool-dra: %s\n",
            std::string(kube.status().message()).c_str());
    return 2;
  }
  for (const std::string& d : {o.plugin_dir, f.registrar_dir}) {
    if (absl::Status s = physpool::MakeDirs(d, 0755); !s.ok()) {
      fprintf(stderr, "physpool-dra: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  auto state = physpool::dra::ClaimState::Load(o.plugin_dir + "/state.json");
  if (!state.ok()) {
    fprintf(stderr, "physpool-dra: %s\n",
            std::string(state.status().message()).c_str());
    return 1;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  Driver driver(
      o, grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()),
      std::make_unique<physpool::dra::KubeClient>(*kube), *std::move(state));
  // Before kubelet can call: finish what a crash interrupted. That needs
  // physpoold (and the API server, for claims it must ask about); keep
  // trying, renewing the claims' leases meanwhile so that a long outage
  // of the API server does not let them expire.
  for (;;) {
    absl::Status s = driver.Cleanup();
    if (s.ok()) break;
    fprintf(stderr, "physpool-dra: starting: %s (retrying in 2 s)\n",
            std::string(s.message()).c_str());
    driver.RenewAll();
    for (int i = 0; i < 20 && !g_stop; ++i)
      absl::SleepFor(absl::Milliseconds(100));
    if (g_stop) return 0;
  }
  // Then tell the scheduler what is here (retried every interval).
  if (absl::Status s = driver.Publish(/*force=*/true); !s.ok()) {
    fprintf(stderr, "physpool-dra: publishing: %s\n",
            std::string(s.message()).c_str());
  }
  DraV1 v1(&driver);
  DraV1beta1 v1beta1(&v1);
  const std::string dra_sock = o.plugin_dir + "/dra.sock";
  auto dra_server = Serve(dra_sock, &v1, &v1beta1);
  // The registration socket last: kubelet calls as soon as it appears.
  Registration registration(o.driver_name, dra_sock);
  const std::string reg_sock =
      f.registrar_dir + "/" + o.driver_name + "-reg.sock";
  auto reg_server = Serve(reg_sock, &registration);
  fprintf(stderr, "physpool-dra: serving %s and %s for node %s\n",
          reg_sock.c_str(), dra_sock.c_str(), o.node_name.c_str());

  absl::Time next_publish = absl::Now() + absl::Seconds(publish_every);
  absl::Time next_cleanup = absl::Now() + absl::Seconds(cleanup_every);
  absl::Time next_renew = absl::Now() + absl::Seconds(o.lease_ttl_seconds) / 3;
  while (!g_stop) {
    absl::SleepFor(absl::Milliseconds(100));
    const absl::Time now = absl::Now();
    if (now >= next_renew) {
      driver.RenewAll();
      next_renew = now + absl::Seconds(o.lease_ttl_seconds) / 3;
    }
    if (now >= next_publish) {
      // Every cleanup interval the slice is written even if unchanged: one
      // that was deleted comes back.
      if (absl::Status s = driver.Publish(/*force=*/now >= next_cleanup);
          !s.ok()) {
        fprintf(stderr, "physpool-dra: publishing: %s\n",
                std::string(s.message()).c_str());
      }
      next_publish = now + absl::Seconds(publish_every);
    }
    if (now >= next_cleanup) {
      if (absl::Status s = driver.Cleanup(); !s.ok()) {
        fprintf(stderr, "physpool-dra: cleanup: %s\n",
                std::string(s.message()).c_str());
      }
      next_cleanup = now + absl::Seconds(cleanup_every);
    }
  }
  // Kubelet unregisters the plugin when its socket goes (and removes the
  // node's slices if it does not come back within about 30 s). The leases
  // stay: the pods keep their memory, and the next start adopts it.
  unlink(reg_sock.c_str());
  reg_server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  dra_server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  unlink(dra_sock.c_str());
  fprintf(stderr, "physpool-dra: stopped\n");
  return 0;
}
