// SPDX-License-Identifier: Apache-2.0
// Who holds a file (memory/holders.h), against this process and children
// it forks, never other processes: the /proc scan names a child that holds
// a descriptor of a memfd, or maps it, or both; it skips this process and
// trusted pids, and reports only the files asked about. Plus the helpers:
// FileIdOf, ProcessStart, DmaBufReferences (none for a memfd), Describe.
#include "server/memory/holders.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::server {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class HoldersTest : public ::testing::Test {
 protected:
  void TearDown() override {
    while (!children_.empty()) Reap(children_.back());
    for (int fd : fds_) close(fd);
  }
  // A memfd of one page this process holds.
  int Memfd(const char* name) {
    const int fd = memfd_create(name, MFD_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, 4096), 0);
    fds_.push_back(fd);
    return fd;
  }
  FileId Id(int fd) {
    absl::StatusOr<FileId> id = FileIdOf(fd);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : FileId{};
  }
  // A child that holds what this process holds (descriptors and mappings)
  // at the fork, until killed.
  pid_t Child() {
    const pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    EXPECT_GT(pid, 0);
    children_.push_back(pid);
    return pid;
  }
  void Reap(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    children_.erase(std::remove(children_.begin(), children_.end(), pid),
                    children_.end());
  }
  static std::string MyCommand() {
    std::ifstream f("/proc/self/comm");
    std::string c;
    std::getline(f, c);
    return c;
  }

  std::vector<pid_t> children_;
  std::vector<int> fds_;
};

TEST_F(HoldersTest, FileIdIsTheFilesDeviceAndInode) {
  const int fd = Memfd("id");
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  ASSERT_OK_AND_ASSIGN(FileId id, FileIdOf(fd));
  EXPECT_EQ(id, (FileId{st.st_dev, st.st_ino}));
  EXPECT_FALSE(Id(Memfd("other")) == id);
  EXPECT_FALSE(FileIdOf(-1).ok());
}

TEST_F(HoldersTest, ThisProcessIsNeverAHolder) {
  const int fd = Memfd("mine");
  void* map = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  const ScanReport r = FindHolders({Id(fd)});
  munmap(map, 4096);
  EXPECT_THAT(r.held, IsEmpty());
  EXPECT_GT(r.processes, 0);
}

TEST_F(HoldersTest, AChildHoldingADescriptorIsNamed) {
  const int fd = Memfd("held");
  const FileId id = Id(fd);
  const pid_t child = Child();
  const ScanReport r = FindHolders({id});
  ASSERT_EQ(r.held.count(id), 1u);
  ASSERT_THAT(r.held.at(id), SizeIs(1));
  const Holder& h = r.held.at(id)[0];
  EXPECT_EQ(h.pid, child);
  EXPECT_EQ(h.uid, geteuid());
  EXPECT_EQ(h.command, MyCommand()) << "a fork keeps its parent's name";
  EXPECT_TRUE(h.has_fd);
  EXPECT_FALSE(h.maps);
  EXPECT_FALSE(h.uninspected);
  // Once it is gone, nobody holds the file.
  Reap(child);
  EXPECT_THAT(FindHolders({id}).held, IsEmpty());
}

TEST_F(HoldersTest, AChildThatOnlyMapsTheFileIsNamedAsMapping) {
  const int fd = Memfd("mapped");
  const FileId id = Id(fd);
  void* map = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  close(fd);  // the mapping alone reaches it now
  fds_.pop_back();
  const pid_t child = Child();
  munmap(map, 4096);
  const ScanReport r = FindHolders({id});
  ASSERT_EQ(r.held.count(id), 1u);
  ASSERT_THAT(r.held.at(id), SizeIs(1));
  EXPECT_EQ(r.held.at(id)[0].pid, child);
  EXPECT_TRUE(r.held.at(id)[0].maps);
  EXPECT_FALSE(r.held.at(id)[0].has_fd);
}

TEST_F(HoldersTest, AChildWithADescriptorAndAMappingIsNamedForBoth) {
  const int fd = Memfd("both");
  const FileId id = Id(fd);
  void* map = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  const pid_t child = Child();
  munmap(map, 4096);
  const ScanReport r = FindHolders({id});
  ASSERT_EQ(r.held.count(id), 1u);
  ASSERT_THAT(r.held.at(id), SizeIs(1));
  EXPECT_EQ(r.held.at(id)[0].pid, child);
  EXPECT_TRUE(r.held.at(id)[0].maps);
  EXPECT_TRUE(r.held.at(id)[0].has_fd);
  EXPECT_THAT(Describe(r.held.at(id)[0]), HasSubstr("fd+map"));
}

TEST_F(HoldersTest, OnlyTheFilesAskedAboutAreReported) {
  const FileId asked = Id(Memfd("asked"));
  const FileId other = Id(Memfd("not-asked"));
  const pid_t first = Child();
  const pid_t second = Child();
  const ScanReport r = FindHolders({asked});
  EXPECT_EQ(r.held.count(other), 0u);
  ASSERT_EQ(r.held.count(asked), 1u);
  std::vector<pid_t> pids;
  for (const Holder& h : r.held.at(asked)) pids.push_back(h.pid);
  EXPECT_THAT(pids, ::testing::UnorderedElementsAre(first, second));
  EXPECT_THAT(FindHolders({}).held, IsEmpty());
}

TEST_F(HoldersTest, TrustedProcessesAreSkipped) {
  const FileId id = Id(Memfd("kept"));
  const pid_t keeper = Child();
  EXPECT_THAT(FindHolders({id}, {keeper}).held, IsEmpty());
  EXPECT_THAT(FindHolders({id}).held, SizeIs(1));
}

TEST_F(HoldersTest, AProcessStartTellsProcessesApart) {
  const std::optional<uint64_t> me = ProcessStart(getpid());
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(ProcessStart(getpid()), me) << "stable for one process";
  const pid_t child = Child();
  const std::optional<uint64_t> theirs = ProcessStart(child);
  ASSERT_TRUE(theirs.has_value());
  EXPECT_GE(*theirs, *me);
  EXPECT_FALSE(ProcessStart(0).has_value());
  EXPECT_FALSE(ProcessStart(-1).has_value());
}

TEST_F(HoldersTest, AMemfdHasNoKernelCountOfReferences) {
  EXPECT_FALSE(DmaBufReferences(Memfd("plain")).has_value());
  EXPECT_FALSE(DmaBufReferences(-1).has_value());
}

TEST(DescribeTest, EachKindOfHolderIsNamed) {
  Holder fd;
  fd.pid = 57;
  fd.uid = 1000;
  fd.command = "e2e_tenant";
  fd.has_fd = true;
  EXPECT_EQ(Describe(fd), "pid 57 (e2e_tenant) uid 1000 fd");
  Holder map = fd;
  map.has_fd = false;
  map.maps = true;
  EXPECT_EQ(Describe(map), "pid 57 (e2e_tenant) uid 1000 map");
  Holder hidden = fd;
  hidden.uninspected = true;
  EXPECT_EQ(Describe(hidden),
            "pid 57 (e2e_tenant) uid 1000 not inspectable (may hold it)");
  Holder counted;
  counted.references = 3;
  EXPECT_THAT(Describe(counted),
              ::testing::StartsWith("3 reference(s) the kernel counts"));
  EXPECT_EQ(Describe(std::vector<Holder>{fd, map}),
            "pid 57 (e2e_tenant) uid 1000 fd; pid 57 (e2e_tenant) uid 1000 "
            "map");
  EXPECT_EQ(Describe(std::vector<Holder>{}), "");
}

}  // namespace
}  // namespace physpool::server
