// SPDX-License-Identifier: Apache-2.0
// ChildWatchdog (child_watchdog.h): the notify socket is the watchdog's own
// (made at its path, removed with it), and a path it could not bind is
// left as it was; a child that is not READY in time, or stops pinging,
// counts as hung.
#include "server/daemon/child_watchdog.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace physpool::server {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ChildWatchdogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-watchdog-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  // Sends `text` to the socket at `path` as this process.
  static void Send(const std::string& path, const std::string& text) {
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(sendto(fd, text.data(), text.size(), 0,
                     reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
              static_cast<ssize_t>(text.size()));
    close(fd);
  }
  static bool IsSocket(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  }
  std::string dir_;
};

TEST_F(ChildWatchdogTest, TheSocketIsMadeAtItsPathAndRemovedWithIt) {
  const std::string path = dir_ + "/notify";
  {
    auto w = ChildWatchdog::Listen(path, 1000, 5000);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_TRUE(IsSocket(path));
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u) << "owner only";
  }
  EXPECT_FALSE(IsSocket(path));
}

// A path it cannot bind (a file someone else put there) is refused and left
// alone: the watchdog removes only what it made.
TEST_F(ChildWatchdogTest, APathItCouldNotBindIsLeftAsItWas) {
  const std::string path = dir_ + "/notify";
  std::ofstream(path) << "not ours";
  auto w = ChildWatchdog::Listen(path, 1000, 5000);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(path));
  std::stringstream text;
  text << std::ifstream(path).rdbuf();
  EXPECT_EQ(text.str(), "not ours");
}

TEST_F(ChildWatchdogTest, AChildThatIsNotReadyInTimeOrStopsPingingHangs) {
  const std::string path = dir_ + "/notify";
  auto w = ChildWatchdog::Listen(path, 1000, 5000);
  ASSERT_TRUE(w.ok()) << w.status();
  // This process plays the child: only its messages count.
  w->Started(getpid(), 0);
  EXPECT_THAT(w->Overdue(4999), IsEmpty());
  EXPECT_THAT(w->Overdue(5001), HasSubstr("not ready"));
  Send(path, "READY=1");
  w->Read(100);
  EXPECT_THAT(w->Overdue(1099), IsEmpty());
  EXPECT_FALSE(w->Overdue(1101).empty());
  Send(path, "WATCHDOG=1");
  w->Read(1050);
  EXPECT_THAT(w->Overdue(2049), IsEmpty());
  EXPECT_FALSE(w->Overdue(2051).empty());
}

}  // namespace
}  // namespace physpool::server
