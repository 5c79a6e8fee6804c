// SPDX-License-Identifier: Apache-2.0
// The lease store (store/lease_store.h) on a temporary file: leases,
// scrub rows and added segments round-trip across a reopen; a new boot id
// voids leases and scrubs (not segments); another layout with live leases,
// a foreign, damaged or newer file is refused with FAILED_PRECONDITION and
// left as it was; a failed write is UNAVAILABLE naming its step. (The
// attacks on the file are tests/security/store_test.py's.)
#include "server/store/lease_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::server {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

pglist::PageRun Pages(uint64_t start, uint64_t pages) {
  return {pglist::Pfn{start}, pglist::PageCount{pages}};
}

StoredLease Lease(const std::string& id) {
  StoredLease l;
  l.id = id;
  l.tenant = "t-" + id;
  l.runs = {Pages(16, 4), Pages(64, 1)};
  l.preemptible = true;
  l.expires_unix_ms = 1700000123456;
  l.ttl_seconds = 90;
  l.path = "/dev/shm/seg0";
  l.label = "label of " + id;
  l.request_id = "rid-" + id;
  l.request_fp = "fp-" + id;
  l.access_sha256 = "sha-" + id;
  return l;
}

class LeaseStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/physpool-store-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/leases.db";
  }
  void TearDown() override {
    ASSERT_EQ(std::system(("rm -rf " + dir_).c_str()), 0);
  }

  absl::StatusOr<std::unique_ptr<LeaseStore>> Open(
      const std::string& boot = "boot", const std::string& layout = "layout") {
    return LeaseStore::Open(path_, boot, layout);
  }
  // Applies `fn` to a store opened now, in one transaction, and closes it.
  void Write(const std::function<absl::Status(LeaseStore&)>& fn,
             const std::string& boot = "boot",
             const std::string& layout = "layout") {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open(boot, layout));
    ASSERT_OK(s->Begin());
    ASSERT_OK(fn(*s));
    ASSERT_OK(s->Commit());
  }
  // Runs `sql` on the file through a connection of the test's own.
  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(
        sqlite3_open_v2(path_.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
        SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  std::string Bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  std::string dir_, path_;
};

TEST_F(LeaseStoreTest, ANewStoreIsEmptyAndMadeUnderAnotherNameFirst) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  EXPECT_THAT(s->leases(), IsEmpty());
  EXPECT_THAT(s->scrubs(), IsEmpty());
  EXPECT_THAT(s->segments(), IsEmpty());
  EXPECT_EQ(s->voided_leases(), 0);
  EXPECT_EQ(s->next_scrub_row(), 1);
  struct stat st;
  EXPECT_EQ(lstat((path_ + ".new").c_str(), &st), -1) << "renamed into place";
  EXPECT_EQ(lstat(path_.c_str(), &st), 0);
}

TEST_F(LeaseStoreTest, ALeaseRoundTripsEveryFieldAcrossAReopen) {
  const StoredLease a = Lease("a");
  Write([&](LeaseStore& s) { return s.PutLease(a); });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  ASSERT_EQ(s->leases().size(), 1u);
  const StoredLease& got = s->leases()[0];
  EXPECT_EQ(got.id, a.id);
  EXPECT_EQ(got.tenant, a.tenant);
  EXPECT_EQ(EncodeRuns(got.runs), "16:4,64:1");
  EXPECT_TRUE(got.preemptible);
  EXPECT_EQ(got.expires_unix_ms, a.expires_unix_ms);
  EXPECT_EQ(got.ttl_seconds, a.ttl_seconds);
  EXPECT_EQ(got.path, a.path);
  EXPECT_EQ(got.label, a.label);
  EXPECT_EQ(got.request_id, a.request_id);
  EXPECT_EQ(got.request_fp, a.request_fp);
  EXPECT_EQ(got.access_sha256, a.access_sha256);
  EXPECT_EQ(s->voided_leases(), 0);
}

TEST_F(LeaseStoreTest, ARenewalAndAnEndAreSeenAtTheNextOpen) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.PutLease(Lease("a"));
    if (st.ok()) st = s.PutLease(Lease("b"));
    return st;
  });
  Write([&](LeaseStore& s) {
    absl::Status st = s.SetExpiry("a", 1800000000000, 300);
    if (st.ok()) st = s.DeleteLease("b");
    return st;
  });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  ASSERT_EQ(s->leases().size(), 1u);
  EXPECT_EQ(s->leases()[0].id, "a");
  EXPECT_EQ(s->leases()[0].expires_unix_ms, 1800000000000);
  EXPECT_EQ(s->leases()[0].ttl_seconds, 300);
}

TEST_F(LeaseStoreTest, ScrubRowsRoundTripAndNumberTheNextRow) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.AddScrub(3, {Pages(8, 2)}, "lease-3", "tenant-3");
    if (st.ok()) st = s.AddScrub(7, {Pages(100, 1), Pages(200, 5)});
    return st;
  });
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
    ASSERT_EQ(s->scrubs().size(), 2u);
    EXPECT_EQ(s->next_scrub_row(), 8);
    for (const StoredScrub& r : s->scrubs()) {
      if (r.row == 3) {
        EXPECT_EQ(EncodeRuns(r.runs), "8:2");
        EXPECT_EQ(r.lease, "lease-3");
        EXPECT_EQ(r.tenant, "tenant-3");
      } else {
        EXPECT_EQ(r.row, 7);
        EXPECT_EQ(EncodeRuns(r.runs), "100:1,200:5");
        EXPECT_EQ(r.lease, "");
      }
    }
  }
  Write([&](LeaseStore& s) { return s.ScrubDone(7); });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  ASSERT_EQ(s->scrubs().size(), 1u);
  EXPECT_EQ(s->scrubs()[0].row, 3);
  EXPECT_EQ(s->next_scrub_row(), 4);
}

TEST_F(LeaseStoreTest, SegmentsComeBackInAddressOrderAndOutliveAReboot) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.PutSegment({uint64_t{3} << 32, 1 << 20, 1, 1, "/c"});
    if (st.ok()) st = s.PutSegment({uint64_t{1} << 32, 2 << 20, 0, 0, "/a"});
    if (st.ok()) st = s.PutSegment({uint64_t{2} << 32, 4 << 20, 0, 1, "/b"});
    if (st.ok()) st = s.PutLease(Lease("a"));
    return st;
  });
  Write([&](LeaseStore& s) { return s.DeleteSegment(uint64_t{2} << 32); });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open("another-boot"));
  EXPECT_THAT(s->leases(), IsEmpty()) << "the leases died with the boot";
  ASSERT_EQ(s->segments().size(), 2u);
  EXPECT_EQ(s->segments()[0].iova, uint64_t{1} << 32);
  EXPECT_EQ(s->segments()[0].bytes, 2u << 20);
  EXPECT_EQ(s->segments()[0].path, "/a");
  EXPECT_EQ(s->segments()[1].iova, uint64_t{3} << 32);
  EXPECT_EQ(s->segments()[1].freelist, 1u);
  EXPECT_EQ(s->segments()[1].numa, 1);
  EXPECT_EQ(s->segments()[1].path, "/c");
}

TEST_F(LeaseStoreTest, ANewBootIdVoidsLeasesAndScrubs) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.PutLease(Lease("a"));
    if (st.ok()) st = s.PutLease(Lease("b"));
    if (st.ok()) st = s.AddScrub(5, {Pages(1, 1)});
    return st;
  });
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open("boot-2"));
    EXPECT_THAT(s->leases(), IsEmpty());
    EXPECT_THAT(s->scrubs(), IsEmpty());
    EXPECT_EQ(s->voided_leases(), 2);
  }
  // Voided for good: the same boot again finds nothing, and voids nothing.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open("boot-2"));
  EXPECT_THAT(s->leases(), IsEmpty());
  EXPECT_EQ(s->voided_leases(), 0);
}

TEST_F(LeaseStoreTest, AnotherLayoutIsRefusedWhileLeasesAreLive) {
  Write([&](LeaseStore& s) { return s.PutLease(Lease("a")); });
  EXPECT_THAT(Open("boot", "other-layout").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("another segment layout")));
  // Refused, not changed: the old layout still finds its lease.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  EXPECT_EQ(s->leases().size(), 1u);
}

TEST_F(LeaseStoreTest, AnotherLayoutIsTakenWhenNothingIsLive) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.PutLease(Lease("a"));
    if (st.ok()) st = s.DeleteLease("a");
    return st;
  });
  ASSERT_OK(Open("boot", "other-layout").status());
  // ...and recorded: a lease on it refuses the first layout now.
  Write([&](LeaseStore& s) { return s.PutLease(Lease("b")); }, "boot",
        "other-layout");
  EXPECT_THAT(Open("boot", "layout").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(LeaseStoreTest, ARolledBackSavepointUndoesOnlyWhatFollowedIt) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
    ASSERT_OK(s->Begin());
    EXPECT_TRUE(s->InTransaction());
    EXPECT_THAT(s->Begin(), StatusIs(absl::StatusCode::kUnavailable))
        << "one transaction at a time";
    ASSERT_OK(s->Savepoint());
    ASSERT_OK(s->PutLease(Lease("kept")));
    ASSERT_OK(s->Release());
    ASSERT_OK(s->Savepoint());
    ASSERT_OK(s->PutLease(Lease("undone")));
    s->RollbackTo();
    ASSERT_OK(s->Commit());
    EXPECT_FALSE(s->InTransaction());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  ASSERT_EQ(s->leases().size(), 1u);
  EXPECT_EQ(s->leases()[0].id, "kept");
}

TEST_F(LeaseStoreTest, ARolledBackTransactionLeavesNothing) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
    ASSERT_OK(s->Begin());
    ASSERT_OK(s->PutLease(Lease("a")));
    s->Rollback();
    EXPECT_FALSE(s->InTransaction());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  EXPECT_THAT(s->leases(), IsEmpty());
}

TEST_F(LeaseStoreTest, AFailedWriteIsUnavailableNamingItsStep) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
    Sql("CREATE TRIGGER fault BEFORE INSERT ON leases BEGIN "
        "SELECT RAISE(ABORT, 'injected fault'); END;");
    ASSERT_OK(s->Begin());
    EXPECT_THAT(s->PutLease(Lease("a")),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("writing a lease: injected fault")));
    EXPECT_TRUE(s->InTransaction()) << "the store stays usable";
    ASSERT_OK(s->AddScrub(1, {Pages(1, 1)}));
    ASSERT_OK(s->Commit());
    Sql("DROP TRIGGER fault;");
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  EXPECT_THAT(s->leases(), IsEmpty());
  ASSERT_EQ(s->scrubs().size(), 1u);
  EXPECT_EQ(s->scrubs()[0].row, 1);
}

TEST_F(LeaseStoreTest, TheProbeFailsWhileTheStoreTakesNoWrites) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LeaseStore> s, Open());
  ASSERT_OK(s->Probe());
  Sql("CREATE TRIGGER fault BEFORE INSERT ON meta BEGIN "
      "SELECT RAISE(ABORT, 'injected fault'); END;");
  EXPECT_THAT(s->Probe(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("probing")));
  Sql("DROP TRIGGER fault;");
  EXPECT_OK(s->Probe());
}

// Every refusal leaves the file as it was: never taken for a new store.
TEST_F(LeaseStoreTest, AForeignFileIsRefusedAndLeftAsItWas) {
  struct Case {
    const char* name;
    std::string content;
  };
  for (const Case& c :
       {Case{"text", std::string(8192, 'x')}, Case{"empty", std::string()}}) {
    SCOPED_TRACE(c.name);
    {
      std::ofstream f(path_, std::ios::binary | std::ios::trunc);
      f << c.content;
    }
    EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr(path_)));
    EXPECT_TRUE(Bytes(path_) == c.content) << "the file changed";
  }
}

TEST_F(LeaseStoreTest, AnotherProgramsDatabaseIsRefused) {
  Sql("CREATE TABLE leases(id TEXT PRIMARY KEY);"
      "INSERT INTO leases VALUES('theirs');");
  const std::string before = Bytes(path_);
  EXPECT_THAT(Open().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a physpool lease store")));
  EXPECT_TRUE(Bytes(path_) == before) << "the file changed";
}

TEST_F(LeaseStoreTest, ANewerSchemaIsRefused) {
  ASSERT_OK(Open().status());
  Sql("PRAGMA user_version=2;");
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("newer physpoold")));
}

TEST_F(LeaseStoreTest, ADamagedRowRefusesTheWholeStore) {
  Write([&](LeaseStore& s) {
    absl::Status st = s.PutLease(Lease("good"));
    if (st.ok()) st = s.PutLease(Lease("bad"));
    return st;
  });
  Sql("UPDATE leases SET runs = 'not runs' WHERE id = 'bad';");
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("damaged")))
      << "never read in part";
}

TEST_F(LeaseStoreTest, ADamagedPageIsRefused) {
  Write([&](LeaseStore& s) {
    absl::Status st;
    for (int i = 0; i < 200 && st.ok(); ++i)
      st = s.PutLease(Lease("lease-" + std::to_string(i)));
    return st;
  });
  const std::string before = Bytes(path_);
  ASSERT_GT(before.size(), 3u * 4096);
  {
    const int fd = open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string junk(4096, '\xa5');
    ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), 2 * 4096),
              static_cast<ssize_t>(junk.size()));
    close(fd);
  }
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(LeaseStoreTest, ADirectoryOrALinkIsNotAStore) {
  ASSERT_EQ(mkdir(path_.c_str(), 0700), 0);
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("not a regular file")));
  ASSERT_EQ(rmdir(path_.c_str()), 0);

  const std::string real = dir_ + "/real.db";
  ASSERT_OK(LeaseStore::Open(real, "boot", "layout").status());
  ASSERT_EQ(symlink(real.c_str(), path_.c_str()), 0);
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("not a regular file")));
}

TEST_F(LeaseStoreTest, AMissingStoreWithItsWalLeftIsRefused) {
  {
    std::ofstream wal(path_ + "-wal", std::ios::binary);
    wal << std::string(4096, 'w');
  }
  EXPECT_THAT(Open().status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("deleted in part")));
  struct stat st;
  EXPECT_EQ(lstat(path_.c_str(), &st), -1) << "no store made beside it";
}

TEST(RunsTest, RunsEncodeAndDecodeBack) {
  const std::vector<pglist::PageRun> runs = {Pages(0, 1), Pages(1 << 20, 512)};
  EXPECT_EQ(EncodeRuns(runs), "0:1,1048576:512");
  ASSERT_OK_AND_ASSIGN(std::vector<pglist::PageRun> back,
                       DecodeRuns(EncodeRuns(runs)));
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].start.value, 1u << 20);
  EXPECT_EQ(back[1].pages.value, 512u);
}

TEST(RunsTest, BadRunTextIsDataLoss) {
  for (const char* bad : {"", ",", "1:0", "x:1", "1", "1:2,3", "-1:2"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(DecodeRuns(bad).status(),
                StatusIs(absl::StatusCode::kDataLoss));
  }
}

TEST(BootIdTest, TheBootIdIsReadWithoutItsNewline) {
  char name[] = "/tmp/physpool-bootid-XXXXXX";
  const int fd = mkstemp(name);
  ASSERT_GE(fd, 0);
  const std::string text = "0b6e4a3c-1234\n";
  ASSERT_EQ(write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  close(fd);
  absl::StatusOr<std::string> id = ReadBootId(name);
  unlink(name);
  ASSERT_OK(id.status());
  EXPECT_EQ(*id, "0b6e4a3c-1234");
  EXPECT_FALSE(ReadBootId(std::string(name) + "-missing").ok());
}

}  // namespace
}  // namespace physpool::server
