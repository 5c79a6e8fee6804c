// SPDX-License-Identifier: Apache-2.0
// physpool-keeper, the real binary (docs/vfio.md, "Restart with isolation
// on"): what a daemon puts there outlives the daemon's connection, bytes
// and all; only its own uid is served; a second keeper on the socket is
// refused; with a command it restarts the daemon that died and passes
// SIGTERM on.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon/keeper_client.h"
#include "util/errno_status.h"

namespace physpool::server {
namespace {

using ::testing::HasSubstr;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class KeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-keeper-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/run/keeper.sock";
  }
  void TearDown() override {
    for (pid_t p : pids_) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
    ASSERT_EQ(system(("rm -rf " + dir_).c_str()), 0);
  }
  // Starts the keeper with `args` after --socket; its stderr goes to `log`.
  pid_t Start(std::vector<std::string> args, const std::string& log) {
    args.insert(args.begin(), {PHYSPOOL_KEEPER_PATH, "--socket", sock_});
    const pid_t pid = fork();
    if (pid == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    pids_.push_back(pid);
    return pid;
  }
  int Exit(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end());
    return status;
  }

  std::string dir_, sock_;
  std::vector<pid_t> pids_;
};

TEST_F(KeeperTest, DescriptorsOutliveTheDaemonWithTheirBytes) {
  Start({}, dir_ + "/keeper.log");
  std::string instance;
  {
    auto c = KeeperClient::Connect(sock_, absl::Seconds(10));
    ASSERT_TRUE(c.ok()) << c.status();
    instance = (*c)->instance();
    EXPECT_FALSE(instance.empty());
    EXPECT_GT((*c)->pid(), 0);
    for (const char* name : {"seg-200000", "view-l-1"}) {
      const int fd = memfd_create(name, MFD_CLOEXEC);
      ASSERT_EQ(ftruncate(fd, 4096), 0);
      ASSERT_EQ(pwrite(fd, name, strlen(name), 100), (ssize_t)strlen(name));
      ASSERT_TRUE((*c)->Put(name, fd).ok());
      close(fd);  // the keeper has its own
    }
    ASSERT_TRUE((*c)->Drop("view-l-1").ok());
    ASSERT_TRUE((*c)->Drop("never-put").ok());
    const int fd = memfd_create("x", MFD_CLOEXEC);
    EXPECT_FALSE((*c)->Put("bad name/..", fd).ok());
    close(fd);
  }  // the daemon's connection goes, as at a kill -9
  auto c = KeeperClient::Connect(sock_, absl::Seconds(10));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->instance(), instance) << "the same keeper, the same memory";
  auto all = (*c)->List();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  ASSERT_EQ(all->begin()->first, "seg-200000");
  char buf[11] = {};
  EXPECT_EQ(pread(all->begin()->second, buf, 10, 100), 10);
  EXPECT_STREQ(buf, "seg-200000");
  close(all->begin()->second);
}

TEST_F(KeeperTest, OnlyItsOwnUidAndOneKeeperPerSocket) {
  Start({}, dir_ + "/keeper.log");
  ASSERT_TRUE(KeeperClient::Connect(sock_, absl::Seconds(10)).ok());
  // Another uid: the socket is the owner's alone in a 0700 directory, and
  // the keeper checks SO_PEERCRED as well.
  const pid_t child = fork();
  if (child == 0) {
    if (setuid(65534) != 0) _exit(3);
    auto c = KeeperClient::Connect(sock_, absl::Milliseconds(200));
    _exit(c.ok() ? 1 : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "uid 65534 was served (status " << status << ")";
  struct stat st;
  ASSERT_EQ(stat(sock_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "only the owner may connect";
  const std::string log2 = dir_ + "/second.log";
  const pid_t second = Start({}, log2);
  const int s = Exit(second);
  EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 1) << s;
  EXPECT_THAT(Slurp(log2), HasSubstr("another keeper listens on " + sock_));
}

TEST_F(KeeperTest, WithACommandItRestartsADeadDaemonAndPassesSigtermOn) {
  const std::string starts = dir_ + "/starts";
  const pid_t keeper = Start(
      {"--", "/bin/sh", "-c", "echo $$ >> " + starts + "; exec sleep 600"},
      dir_ + "/keeper.log");
  auto lines = [&] {
    std::istringstream in(Slurp(starts));
    std::vector<pid_t> out;
    for (pid_t p; in >> p;) out.push_back(p);
    return out;
  };
  for (int i = 0; i < 100 && lines().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(lines().size(), 1u);
  kill(lines()[0], SIGKILL);  // the daemon dies
  for (int i = 0; i < 100 && lines().size() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(lines().size(), 2u) << Slurp(dir_ + "/keeper.log");
  EXPECT_THAT(Slurp(dir_ + "/keeper.log"), HasSubstr("starting it again"));
  kill(keeper, SIGTERM);
  const int status = Exit(keeper);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(kill(lines()[1], 0), 0) << "the daemon got SIGTERM too";
  EXPECT_THAT(Slurp(dir_ + "/keeper.log"), HasSubstr("the keeper stops"));
}

// MAP, UNMAP and MAPS (device domains, docs/vfio.md "Who maps:
// physpool-keeper") of what the keeper does not hold, or cannot map, are
// errors the client sees with the keeper's reason, and record nothing;
// MAPS of a container never mapped into is empty. Without VFIO here, the
// "container" is a memfd: the kernel answers its ioctls with ENOTTY.
TEST_F(KeeperTest, MapUnmapAndMapsOfWhatTheKeeperDoesNotHoldAreErrors) {
  Start({}, dir_ + "/keeper.log");
  auto c = KeeperClient::Connect(sock_, absl::Seconds(10));
  ASSERT_TRUE(c.ok()) << c.status();
  const int seg = memfd_create("seg", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(seg, 64 << 10), 0);
  ASSERT_TRUE((*c)->Put("seg-100000", seg).ok());
  close(seg);
  const int fake = memfd_create("not-a-container", MFD_CLOEXEC);
  ASSERT_TRUE((*c)->Put("container-1", fake).ok());
  close(fake);
  const uint64_t iova = 0x100000;

  absl::Status s = (*c)->MapDma("container-9", "seg-100000", 0, iova, 4096);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("holds no container-9"));
  s = (*c)->MapDma("container-1", "seg-9", 0, iova, 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("holds no seg-9"));
  s = (*c)->MapDma("container-1", "seg-100000", 60 << 10, iova, 8192);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("is outside seg-100000"));
  // The keeper's own MAP_DMA fails: the kernel's errno comes back.
  s = (*c)->MapDma("container-1", "seg-100000", 0, iova, 4096);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ErrnoOf(s), ENOTTY) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("physpool-keeper: VFIO_IOMMU_MAP_DMA"));

  absl::StatusOr<uint64_t> n = (*c)->UnmapDma("container-9", iova, 4096);
  EXPECT_FALSE(n.ok());
  EXPECT_THAT(std::string(n.status().message()),
              HasSubstr("holds no container-9"));
  n = (*c)->UnmapDma("container-1", iova, 4096);  // never mapped
  EXPECT_FALSE(n.ok());
  EXPECT_EQ(ErrnoOf(n.status()), ENOTTY) << n.status();
  EXPECT_THAT(std::string(n.status().message()),
              HasSubstr("VFIO_IOMMU_UNMAP_DMA"));

  for (const char* container : {"container-1", "container-9"}) {
    auto maps = (*c)->Mappings(container);
    ASSERT_TRUE(maps.ok()) << container << ": " << maps.status();
    EXPECT_TRUE(maps->empty()) << container << ": nothing was mapped";
  }
  // The connection still serves.
  auto all = (*c)->List();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 2u);
  for (const auto& [name, fd] : *all) close(fd);
}

// The client reads a MAPS answer as the keeper sends it: up to 512
// mappings a message (keeper_client.h). A keeper stand-in on the socket
// answers with 600 mappings at 39-bit IOVAs.
TEST_F(KeeperTest, MapsOfManyMappingsIsReadWhole) {
  ASSERT_EQ(mkdir((dir_ + "/run").c_str(), 0700), 0);
  const int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 1), 0);
  std::map<uint64_t, uint64_t> sent;
  for (uint64_t i = 0; i < 600; ++i)
    sent[0x7f00000000 + i * 0x200000] = 0x200000;
  std::string request;
  std::thread keeper([&] {
    const int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(conn, 0);
    ASSERT_TRUE(SendKeeperMessage(conn, "HELLO stand-in", -1).ok());
    int fd = -1;
    absl::StatusOr<std::string> m = RecvKeeperMessage(conn, &fd);
    if (m.ok()) request = *m;
    std::string line = "M";
    size_t n = 0;
    for (const auto& [iova, bytes] : sent) {  // as physpool-keeper does
      absl::StrAppend(&line, " ", iova, ":", bytes);
      if (++n % 512 == 0) {
        EXPECT_TRUE(SendKeeperMessage(conn, line, -1).ok());
        line = "M";
      }
    }
    EXPECT_TRUE(SendKeeperMessage(conn, line, -1).ok());
    EXPECT_TRUE(SendKeeperMessage(conn, "END", -1).ok());
    char b;
    (void)!read(conn, &b, 1);  // until the client hangs up
    close(conn);
  });
  {
    auto c = KeeperClient::Connect(sock_, absl::Seconds(10));
    ASSERT_TRUE(c.ok()) << c.status();
    auto maps = (*c)->Mappings("container-3");
    ASSERT_TRUE(maps.ok()) << maps.status();
    EXPECT_EQ(maps->size(), 600u);
    EXPECT_TRUE(*maps == sent);
  }
  keeper.join();
  close(listener);
  EXPECT_EQ(request, "MAPS container-3");
}

}  // namespace
}  // namespace physpool::server
