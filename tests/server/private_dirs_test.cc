// SPDX-License-Identifier: Apache-2.0
// physpoold's directories (docs/operations.md, "Directories"): it creates its
// sim, runtime and store directories itself or refuses one it does not own,
// that others can write or that is a symlink, and never follows a planted
// symlink in them. Runs the real binary on a config of its own.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon.h"

namespace physpool::testing {
namespace {

using ::testing::HasSubstr;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class PrivateDirsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/physpool-dirs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sim_ = dir_ + "/sim";
    run_ = dir_ + "/run";
    store_ = dir_ + "/store";
    victim_ = dir_ + "/victim";
    std::ofstream(victim_) << "precious";
  }
  void TearDown() override { RunCommand("rm -rf " + dir_); }

  // physpoold on sim_, run_ and store_ for at most `seconds`: its exit code
  // (124: still running, i.e. it started) and output.
  RunResult Run(int seconds = 10) {
    const std::string config = dir_ + "/physpoold.yaml";
    std::ofstream(config) << "implicit_tenant: true\n"
                          << "listen: {unix: " << run_
                          << "/physpool.sock, tcp: \"\"}\n"
                          << "metrics: {listen: \"\"}\n"
                          << "source: {type: sim, sim: {dir: " << sim_
                          << ", segments: [{bytes: 1048576}]}}\n"
                          << "store: {path: " << store_ << "/leases.db}\n";
    RunResult r = RunCommand(absl::StrCat(
        "timeout ", seconds, " ", PHYSPOOLD_PATH, " --config ", config));
    std::printf("physpoold exit %d:\n%s\n", r.code, r.output.c_str());
    return r;
  }

  std::string dir_, sim_, run_, store_, victim_;
};

TEST_F(PrivateDirsTest, CreatesItsDirectoriesPrivate) {
  const RunResult r = Run(3);
  EXPECT_EQ(r.code, 124) << "it should have been serving";
  EXPECT_THAT(r.output, HasSubstr("msg=serving"));
  struct stat st;
  ASSERT_EQ(lstat(sim_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, geteuid());
  ASSERT_EQ(lstat(run_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 022, 0u);
  EXPECT_EQ(st.st_uid, geteuid());
  // A second start on what the first created (a stale segment file) works.
  EXPECT_EQ(Run(3).code, 124);
}

TEST_F(PrivateDirsTest, APlantedSymlinkIsNeverFollowed) {
  ASSERT_EQ(mkdir(sim_.c_str(), 0700), 0);
  ASSERT_EQ(symlink(victim_.c_str(), (sim_ + "/segment-0.mem").c_str()), 0);
  const RunResult r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(sim_ + "/segment-0.mem is a symlink"));
  EXPECT_EQ(Slurp(victim_), "precious");
}

TEST_F(PrivateDirsTest, ADirectoryOfAnotherUidIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  ASSERT_EQ(mkdir(sim_.c_str(), 0700), 0);
  ASSERT_EQ(chown(sim_.c_str(), 65534, 65534), 0);
  RunResult r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(sim_ + " is owned by uid 65534, not by "
                                         "physpoold's uid 0 (owner uid "
                                         "65534, mode 0700)"));
  // The runtime dir (the sockets' directory) likewise.
  ASSERT_EQ(chown(sim_.c_str(), 0, 0), 0);
  ASSERT_EQ(mkdir(run_.c_str(), 0755), 0);
  ASSERT_EQ(chown(run_.c_str(), 65534, 65534), 0);
  r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(run_ + " is owned by uid 65534"));
  // And the store's.
  ASSERT_EQ(chown(run_.c_str(), 0, 0), 0);
  mkdir(store_.c_str(), 0755);  // the runs above may have made it
  ASSERT_EQ(chown(store_.c_str(), 65534, 65534), 0);
  r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(store_ + " is owned by uid 65534"));
}

TEST_F(PrivateDirsTest, AGroupOrWorldWritableDirectoryIsRefused) {
  for (mode_t mode : {0770, 0777, 01777}) {
    SCOPED_TRACE(mode);
    RunCommand("rm -rf " + sim_);
    ASSERT_EQ(mkdir(sim_.c_str(), 0700), 0);
    ASSERT_EQ(chmod(sim_.c_str(), mode), 0);
    const RunResult r = Run();
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.output,
                HasSubstr(sim_ + " is writable by its group or others"));
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", unsigned(mode));
    EXPECT_THAT(r.output, HasSubstr(absl::StrCat("mode ", octal)));
  }
}

TEST_F(PrivateDirsTest, ADirectoryThatIsASymlinkIsRefused) {
  const std::string real = dir_ + "/real-sim";
  ASSERT_EQ(mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(symlink(real.c_str(), sim_.c_str()), 0);
  RunResult r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(sim_ + " is a symlink (to " + real + ")"));
  // The runtime dir as a symlink.
  unlink(sim_.c_str());
  ASSERT_EQ(symlink(real.c_str(), run_.c_str()), 0);
  r = Run();
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr(run_ + " is a symlink"));
}

}  // namespace
}  // namespace physpool::testing
