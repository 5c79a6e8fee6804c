// physpool-keeper, the real binary (docs/vfio.md, "Restart with isolation
// on"): what a daemon puts there outlives the daemon's connection, bytes
// and all; only its own uid is served; a second keeper on the socket is
// refused; with a command it restarts the daemon that died and passes
// SIGTERM on.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/keeper_client.h"

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

}  // namespace
}  // namespace physpool::server
