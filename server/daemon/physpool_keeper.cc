// SPDX-License-Identifier: Apache-2.0
// physpool-keeper: holds physpoold's descriptors across a crash or kill -9
// of the daemon (docs/vfio.md, "Restart with isolation on"; the protocol is
// in server/daemon/keeper_client.h).
//
//   physpool-keeper --socket PATH [--watchdog-sec N] [--start-timeout-sec N]
//                   [-- COMMAND ARGS...]
//   physpool-keeper --version | --help
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
#include <variant>
#include <vector>

#include "CLI/CLI.hpp"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/daemon/child_watchdog.h"
#include "server/daemon/keeper_server.h"
#include "util/build_info.h"
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

struct KeeperFlags {
  std::string path;
  std::vector<std::string> args;  // the child's command line, if any
  std::vector<char*> command;     // args, null-terminated; {nullptr}: none
  int64_t watchdog_sec = 30, start_timeout_sec = 300;
};

constexpr char kFooter[] =
    R"(With a COMMAND (after --) the keeper runs the daemon as its child and
starts it again, after a second, whenever it dies of a signal or exits
non-zero; SIGTERM/SIGINT go to the child. A child that is not READY within
--start-timeout-sec or stops pinging for --watchdog-sec is killed and started
again. Without one it runs until SIGTERM/SIGINT. Exit codes: the child's
status; 1 the keeper failed; 2 a bad flag. See docs/vfio.md.
)";

// The flags, or the exit code (0 after --help, 2 with the reason said).
std::variant<KeeperFlags, int> ParseFlags(int argc, char** argv) {
  KeeperFlags f;
  CLI::App app(
      "physpool-keeper - holds physpoold's descriptors across a crash or "
      "kill -9 of the daemon",
      "physpool-keeper");
  app.set_help_flag("-h,--help", "print this help and exit");
  app.add_flag("--version", "print the version and exit");
  app.footer(kFooter);
  app.add_option("--socket", f.path, "the socket physpoold reaches it on")
      ->required();
  app.add_option("--watchdog-sec", f.watchdog_sec,
                 "a child silent this long hangs (0: off; default 30)")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  app.add_option("--start-timeout-sec", f.start_timeout_sec,
                 "a child not READY this long hangs (default 300)")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}));
  app.add_option("COMMAND", f.args, "the daemon to run, after --");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    Say(absl::StrCat(e.what(), " (see --help)"));
    return 2;
  }
  for (std::string& a : f.args) f.command.push_back(a.data());
  f.command.push_back(nullptr);
  return f;
}

// The keeper's loop: the child (run, forward a stop to, restart, kill when
// it hangs) and the daemon's connections to the descriptor store.
class Loop {
 public:
  Loop(const KeeperFlags& flags, int listener, KeeperServer* keeper,
       ChildWatchdog* watchdog)
      : flags_(flags),
        listener_(listener),
        keeper_(keeper),
        watchdog_(watchdog) {
    if (flags_.command.size() > 1) child_ = Spawn(flags_.command, watchdog_);
    if (child_ > 0 && watchdog_) watchdog_->Started(child_, MonotonicMs());
  }
  ~Loop() {
    for (int c : conns_) close(c);
  }

  // Until a stop (and the child's exit) or the child's clean exit; the
  // keeper's exit code.
  int Run() {
    for (;;) {
      if (!TendChild(MonotonicMs())) return exit_code_;
      ServeConnections();
    }
  }

 private:
  // false once the keeper stops.
  bool TendChild(int64_t now_ms) {
    if (g_stop && child_ > 0 && !forwarded_) {
      kill(child_, SIGTERM);
      forwarded_ = true;
    }
    if (g_stop && child_ <= 0) return false;
    if (child_ > 0) {
      int status = 0;
      if (waitpid(child_, &status, WNOHANG) == child_) {
        child_ = -1;
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (forwarded_ || clean) {
          exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
          Say(absl::StrCat("the daemon exited (status ", status,
                           "): the keeper stops, ", keeper_->size(),
                           " descriptors closed"));
          return false;
        }
        Say(absl::StrCat("the daemon died (status ", status, "); holding ",
                         keeper_->size(),
                         " descriptors and starting it again in 1 s"));
        restart_at_ms_ = now_ms + 1000;
      }
    }
    if (child_ <= 0 && restart_at_ms_ >= 0 && now_ms >= restart_at_ms_ &&
        !g_stop) {
      child_ = Spawn(flags_.command, watchdog_);
      if (watchdog_) watchdog_->Started(child_, now_ms);
      restart_at_ms_ = -1;
    }
    if (child_ > 0 && watchdog_ && !g_stop) {
      watchdog_->Read(now_ms);
      if (const std::string why = watchdog_->Overdue(now_ms); !why.empty()) {
        Say(absl::StrCat("the daemon (pid ", child_, ") hangs: ", why,
                         "; killing it, holding ", keeper_->size(),
                         " descriptors"));
        kill(child_, SIGKILL);
        watchdog_->Started(-1, now_ms);  // until the restart
      }
    }
    return true;
  }

  // Waits up to 100 ms; serves what is readable, accepts a connection.
  void ServeConnections() {
    std::vector<pollfd> fds{{listener_, POLLIN, 0}};
    if (watchdog_) fds.push_back({watchdog_->fd(), POLLIN, 0});
    const size_t first_conn = fds.size();
    for (int c : conns_) fds.push_back({c, POLLIN, 0});
    const int n = poll(fds.data(), fds.size(), 100);
    if (n <= 0) return;
    std::vector<int> keep;
    for (size_t i = first_conn; i < fds.size(); ++i) {
      if (fds[i].revents == 0 || keeper_->Serve(fds[i].fd)) {
        keep.push_back(fds[i].fd);
      } else {
        close(fds[i].fd);
      }
    }
    conns_ = keep;
    if (fds[0].revents & POLLIN) {
      const int conn = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn >= 0 && conns_.size() >= 16) {
        Say("16 connections open: refusing another");
        close(conn);
      } else if (conn >= 0 && keeper_->Accept(conn)) {
        conns_.push_back(conn);
      }
    }
  }

  const KeeperFlags& flags_;
  const int listener_;
  KeeperServer* const keeper_;
  ChildWatchdog* const watchdog_;  // null: none
  std::vector<int> conns_;
  pid_t child_ = -1;
  bool forwarded_ = false;  // SIGTERM sent on to the child
  int exit_code_ = 0;
  int64_t restart_at_ms_ = -1;
};

int Main(int argc, char** argv) {
  std::variant<KeeperFlags, int> parsed = ParseFlags(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  const KeeperFlags* flags = &std::get<KeeperFlags>(parsed);
  const std::string& path = flags->path;
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
  if (flags->command.size() > 1 && flags->watchdog_sec > 0) {
    auto w = ChildWatchdog::Listen(path + ".notify", flags->watchdog_sec * 1000,
                                   flags->start_timeout_sec * 1000);
    if (!w.ok()) {
      Say(std::string(w.status().message()));
      return 1;
    }
    watchdog.emplace(*std::move(w));
  }
  int exit_code;
  {
    Loop loop(*flags, listener, &keeper, watchdog ? &*watchdog : nullptr);
    exit_code = loop.Run();
  }
  close(listener);
  unlink(path.c_str());
  return exit_code;
}

}  // namespace
}  // namespace physpool::server

int main(int argc, char** argv) {
  // Before anything else (only before "--": after it is the child's).
  if (physpool::WantsVersion(argc, argv)) {
    std::puts(physpool::VersionLine("physpool-keeper").c_str());
    return 0;
  }
  return physpool::server::Main(argc, argv);
}
