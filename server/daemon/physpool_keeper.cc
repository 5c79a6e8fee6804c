// physpool-keeper: holds physpoold's descriptors across a crash or kill -9
// of the daemon (docs/vfio.md, "Restart with isolation on"; the protocol is
// in server/keeper_client.h).
//
//   physpool-keeper --socket PATH [--watchdog-sec N] [--start-timeout-sec N]
//                   [-- COMMAND ARGS...]
//
// With a COMMAND (the container's entrypoint: `-- physpoold --config ...`)
// it also runs the daemon as its child and starts it again, after a second,
// whenever it dies of a signal or exits non-zero; SIGTERM/SIGINT go to the
// child, and the keeper exits with the child's status once it has. It also
// watches the child (child_watchdog.h): a daemon that is not READY within
// --start-timeout-sec (300) or stops pinging for --watchdog-sec (30; 0:
// off) hangs, and is killed (SIGKILL) and started again, the keeper and
// what it holds untouched. Without
// one it runs until SIGTERM/SIGINT. Either way, when the keeper exits
// everything it held is closed: memfd memory is freed, the IOMMU container
// and its mappings go, and the next daemon voids the leases (the keeper's
// instance is part of the store's boot id).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/daemon/child_watchdog.h"
#include "server/daemon/keeper_server.h"
#include "util/file.h"

namespace physpool::server {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnStop(int) { g_stop = 1; }
void OnChild(int) {}

void Say(const std::string& what) {
  std::fprintf(stderr, "physpool-keeper: %s\n", what.c_str());
}

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

std::string NewInstance() {
  unsigned char b[8] = {};
  if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
    const uint64_t t = static_cast<uint64_t>(time(nullptr)) ^ getpid();
    std::memcpy(b, &t, sizeof(b));
  }
  std::string out;
  for (unsigned char c : b)
    absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return absl::StrCat(out, "-", getpid());
}

// Binds `path` (owner only, through the umask), refusing if a keeper answers
// there; a stale socket file is replaced.
int Listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    Say("socket path too long: " + path);
    return -1;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    close(probe);
    Say("another keeper listens on " + path + ": refusing to start");
    return -1;
  }
  close(probe);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      Say(path + " exists and is not a socket: refusing to replace it");
      return -1;
    }
    unlink(path.c_str());
  }
  const int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  const mode_t old = umask(077);
  const int rc = bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0 || listen(sock, 8) != 0) {
    Say(absl::StrCat("cannot listen on ", path, ": ", std::strerror(errno)));
    close(sock);
    return -1;
  }
  return sock;
}

pid_t Spawn(const std::vector<char*>& argv, const ChildWatchdog* watchdog) {
  const pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (watchdog != nullptr) watchdog->Export();
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "physpool-keeper: cannot run %s: %s\n", argv[0],
                 std::strerror(errno));
    _exit(127);
  }
  return pid;
}

int Main(int argc, char** argv) {
  std::string path;
  std::vector<char*> command;
  int64_t watchdog_sec = 30, start_timeout_sec = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string value;
    // "--name VALUE" or "--name=VALUE".
    auto flag = [&](absl::string_view name) {
      if (a == name && i + 1 < argc) {
        value = argv[++i];
        return true;
      }
      if (absl::StartsWith(a, absl::StrCat(name, "="))) {
        value = a.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    if (flag("--socket")) {
      path = value;
    } else if (flag("--watchdog-sec")) {
      if (!absl::SimpleAtoi(value, &watchdog_sec) || watchdog_sec < 0) {
        Say("--watchdog-sec takes seconds (0: off)");
        return 2;
      }
    } else if (flag("--start-timeout-sec")) {
      if (!absl::SimpleAtoi(value, &start_timeout_sec) ||
          start_timeout_sec <= 0) {
        Say("--start-timeout-sec takes seconds (> 0)");
        return 2;
      }
    } else if (a == "--") {
      for (++i; i < argc; ++i) command.push_back(argv[i]);
    } else {
      Say("usage: physpool-keeper --socket PATH [--watchdog-sec N] "
          "[--start-timeout-sec N] [-- COMMAND ARGS...]");
      return 2;
    }
  }
  if (path.empty()) {
    Say("--socket PATH is required");
    return 2;
  }
  command.push_back(nullptr);
  if (absl::Status s = MakePrivateParentDir(path, 0700); !s.ok()) {
    Say(std::string(s.message()));
    return 1;
  }
  rlimit nofile{};  // it holds a descriptor per segment and per lease view
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  const int listener = Listen(path);
  if (listener < 0) return 1;
  struct sigaction sa {};
  sa.sa_handler = OnStop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = OnChild;
  sigaction(SIGCHLD, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  KeeperServer keeper(NewInstance(), Say);
  Say(absl::StrCat("listening on ", path));
  // The daemon it runs tells it READY=1 and pings WATCHDOG=1 (sd_notify):
  // one that stops pinging hangs, and is killed and started again.
  std::optional<ChildWatchdog> watchdog;
  if (command.size() > 1 && watchdog_sec > 0) {
    auto w = ChildWatchdog::Listen(path + ".notify", watchdog_sec * 1000,
                                   start_timeout_sec * 1000);
    if (!w.ok()) {
      Say(std::string(w.status().message()));
      return 1;
    }
    watchdog.emplace(*std::move(w));
  }
  const ChildWatchdog* wd = watchdog ? &*watchdog : nullptr;
  std::vector<int> conns;
  pid_t child = command.size() > 1 ? Spawn(command, wd) : -1;
  if (child > 0 && watchdog) watchdog->Started(child, MonotonicMs());
  bool forwarded = false;
  int exit_code = 0;
  int64_t restart_at_ms = -1;
  for (;;) {
    const int64_t now_ms = MonotonicMs();
    if (g_stop && child > 0 && !forwarded) {
      kill(child, SIGTERM);
      forwarded = true;
    }
    if (g_stop && child <= 0) break;
    if (child > 0) {
      int status = 0;
      if (waitpid(child, &status, WNOHANG) == child) {
        child = -1;
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (forwarded || clean) {
          exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
          Say(absl::StrCat("the daemon exited (status ", status,
                           "): the keeper stops, ", keeper.size(),
                           " descriptors closed"));
          break;
        }
        Say(absl::StrCat("the daemon died (status ", status, "); holding ",
                         keeper.size(),
                         " descriptors and starting it again in 1 s"));
        restart_at_ms = now_ms + 1000;
      }
    }
    if (child <= 0 && restart_at_ms >= 0 && now_ms >= restart_at_ms &&
        !g_stop) {
      child = Spawn(command, wd);
      if (watchdog) watchdog->Started(child, now_ms);
      restart_at_ms = -1;
    }
    if (child > 0 && watchdog && !g_stop) {
      watchdog->Read(now_ms);
      if (const std::string why = watchdog->Overdue(now_ms); !why.empty()) {
        Say(absl::StrCat("the daemon (pid ", child, ") hangs: ", why,
                         "; killing it, holding ", keeper.size(),
                         " descriptors"));
        kill(child, SIGKILL);
        watchdog->Started(-1, now_ms);  // until the restart
      }
    }
    std::vector<pollfd> fds{{listener, POLLIN, 0}};
    if (watchdog) fds.push_back({watchdog->fd(), POLLIN, 0});
    const size_t first_conn = fds.size();
    for (int c : conns) fds.push_back({c, POLLIN, 0});
    const int n = poll(fds.data(), fds.size(), 100);
    if (n <= 0) continue;
    std::vector<int> keep;
    for (size_t i = first_conn; i < fds.size(); ++i) {
      if (fds[i].revents == 0 || keeper.Serve(fds[i].fd)) {
        keep.push_back(fds[i].fd);
      } else {
        close(fds[i].fd);
      }
    }
    conns = keep;
    if (fds[0].revents & POLLIN) {
      const int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn >= 0 && conns.size() >= 16) {
        Say("16 connections open: refusing another");
        close(conn);
      } else if (conn >= 0 && keeper.Accept(conn)) {
        conns.push_back(conn);
      }
    }
  }
  for (int c : conns) close(c);
  close(listener);
  unlink(path.c_str());
  return exit_code;
}

}  // namespace
}  // namespace physpool::server

int main(int argc, char** argv) { return physpool::server::Main(argc, argv); }
