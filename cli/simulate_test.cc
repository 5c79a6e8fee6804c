// SPDX-License-Identifier: Apache-2.0
#include "cli/simulate.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pglist/testing/status_matchers.h"

namespace physpool::cli {
namespace {

using ::physpool::testing::StatusIs;
using ::testing::HasSubstr;

struct Replay {
  absl::Status status;
  std::string out;
};

Replay Simulated(const std::string& trace) {
  std::FILE* in = fmemopen(const_cast<char*>(trace.data()), trace.size(), "r");
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* out = open_memstream(&buf, &len);
  Simulator sim;
  Replay r;
  r.status = Simulate(in, out, &sim);
  std::fclose(in);
  std::fclose(out);
  r.out.assign(buf, len);
  std::free(buf);
  return r;
}

TEST(SimulateTest, DesignExample) {
  const Replay r = Simulated(
      R"json({"op":"pool","page_size":4096,"strategy":"address","reserve_pages":0}
{"op":"segment","iova":4294967296,"pages":262144,"freelist":0,"numa":0}
{"op":"alloc","id":"a1","bytes":65536,"low":0,"high":18446744073709551615,"alignment":65536,"boundary":0,"max_segments":1,"preemptible":false,"reclaim":false}
{"op":"alloc","id":"a2","bytes":2147483648}
{"op":"free","id":"a1"}
{"op":"free","id":"a1"}
)json");
  ASSERT_OK(r.status);
  EXPECT_EQ(
      r.out,
      R"json({"id":"a1","ok":true,"path":"contig","runs":[{"iova":4294967296,"pages":16}],"reclaimed":[]}
{"id":"a2","ok":false,"code":"RESOURCE_EXHAUSTED","message":"never fits: no layout of the allocatable segments (less the reserve) can hold 524288 pages (alignment 4096, boundary none, window [0, unbounded), any number of runs)"}
{"id":"a1","ok":true}
{"id":"a1","ok":false,"code":"NOT_FOUND","message":"no live allocation \"a1\""}
)json");
}

// Issue 24: y fits in the freelist-0 segment across its hint (17), where x
// was; the freelist-1 segment (the scarce, DMA-limited memory) stays free.
// The same under both placements.
TEST(SimulateTest, FreelistZeroBeforeFreelistOne) {
  for (const char* placement : {"nextfit", "bestfit"}) {
    const Replay r = Simulated(
        absl::StrCat(R"json({"op":"pool","placement":")json", placement,
                     R"json("}
{"op":"segment","iova":4294967296,"pages":66,"freelist":1}
{"op":"segment","iova":4295303168,"pages":36,"freelist":0}
{"op":"alloc","id":"x","bytes":69632,"max_segments":1}
{"op":"free","id":"x"}
{"op":"alloc","id":"y","bytes":98304,"max_segments":1}
)json"));
    ASSERT_OK(r.status);
    EXPECT_EQ(
        r.out,
        R"json({"id":"x","ok":true,"path":"contig","runs":[{"iova":4295303168,"pages":17}],"reclaimed":[]}
{"id":"x","ok":true}
{"id":"y","ok":true,"path":"contig","runs":[{"iova":4295303168,"pages":24}],"reclaimed":[]}
)json") << placement;
  }
}

TEST(SimulateTest, PlacementMustBeKnown) {
  const Replay r = Simulated("{\"op\":\"pool\",\"placement\":\"worst\"}\n");
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("\"placement\" must be")));
}

TEST(SimulateTest, SimplePathSpansSegmentsAndDefaultsApply) {
  const Replay r = Simulated(R"json({"op":"segment","iova":0,"pages":4}
{"op":"segment","iova":65536,"pages":4}
{"op":"alloc","id":"x","bytes":20000}
{"op":"alloc","id":"bad","bytes":4096,"alignment":3}
)json");
  ASSERT_OK(r.status);
  EXPECT_EQ(
      r.out,
      R"json({"id":"x","ok":true,"path":"simple","runs":[{"iova":0,"pages":4},{"iova":65536,"pages":1}],"reclaimed":[]}
{"id":"bad","ok":false,"code":"INVALID_ARGUMENT","message":"alignment 3 is not a power of two"}
)json");
}

TEST(SimulateTest, ReclaimReportsTheVictims) {
  const Replay r = Simulated(R"json({"op":"segment","iova":0,"pages":8}
{"op":"alloc","id":"p1","bytes":16384,"preemptible":true}
{"op":"alloc","id":"p2","bytes":16384,"preemptible":true}
{"op":"alloc","id":"big","bytes":8192,"max_segments":1,"reclaim":true}
{"op":"free","id":"p1"}
{"op":"alloc","id":"p1","bytes":4096}
)json");
  ASSERT_OK(r.status);
  EXPECT_EQ(
      r.out,
      R"json({"id":"p1","ok":true,"path":"simple","runs":[{"iova":0,"pages":4}],"reclaimed":[]}
{"id":"p2","ok":true,"path":"simple","runs":[{"iova":16384,"pages":4}],"reclaimed":[]}
{"id":"big","ok":true,"path":"aggressive","runs":[{"iova":0,"pages":2}],"reclaimed":["p1"]}
{"id":"p1","ok":false,"code":"NOT_FOUND","message":"\"p1\" was reclaimed by the aggressive path"}
{"id":"p1","ok":true,"path":"simple","runs":[{"iova":8192,"pages":1}],"reclaimed":[]}
)json");
}

TEST(SimulateTest, MalformedLinesStopWithTheirNumber) {
  struct Case {
    std::string trace;
    std::string error;
  } cases[] = {
      {"{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n\n{\"op\":\"alloc\","
       "\"bytes\":1}\n",
       "line 3: missing field \"id\""},
      {"{\"op\":\"bogus\"}\n", "line 1: unknown op \"bogus\""},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1,\"colour\":\"red\"}\n",
       "line 1: unknown field \"colour\" for op \"alloc\""},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":\"1\"}\n",
       "line 1: field \"bytes\" must be an unsigned integer"},
      {"{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n{\"op\":\"pool\"}\n",
       "line 2: the pool line must come first"},
      {"{\"op\":\"pool\",\"page_size\":1000}\n", "line 1: page_size 1000"},
      {"{\"op\":\"pool\",\"strategy\":\"random\"}\n",
       "must be \"address\" or \"bigfirst\""},
      {"{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n{\"op\":\"segment\","
       "\"iova\":0,\"pages\":4}\n",
       "line 2: segment at iova 0 overlaps segment 0"},
      {"{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n{\"op\":\"alloc\",\"id\":"
       "\"a\",\"bytes\":1}\n"
       "{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1}\n",
       "line 3: alloc id \"a\" is still live"},
      {"{\"op\":\"drain\",\"iova\":4096}\n",
       "line 1: no segment starts at iova 4096"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":-1}\n",
       "line 1: column 32: negative"},
      {"not json\n", "line 1: column 1: expected '{'"},
  };
  for (const Case& c : cases) {
    const Replay r = Simulated(c.trace);
    EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kInvalidArgument))
        << c.trace;
    EXPECT_THAT(std::string(r.status.message()), HasSubstr(c.error)) << c.trace;
  }
  // Results before the bad line are written.
  const Replay partial = Simulated(
      "{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n{\"op\":\"alloc\",\"id\":"
      "\"a\",\"bytes\":1}\nx\n");
  EXPECT_THAT(partial.out, HasSubstr("\"id\":\"a\",\"ok\":true"));
}

// Lines as long as the reader's buffer, or longer, whether or not the JSON
// parser's padding fits after them in it (they are then copied), and CRLF
// line ends.
TEST(SimulateTest, LongLinesAndLineEnds) {
  std::string trace = "{\"op\":\"segment\",\"iova\":0,\"pages\":1024}\r\n";
  std::vector<std::string> ids;
  const std::string head = "{\"op\":\"alloc\",\"id\":\"";
  const std::string tail = "\",\"bytes\":4096}";
  for (size_t len : {4000, 4030, 4090, 4095, 4096, 4097, 8200, 100000}) {
    // A line of `len` bytes before its line end.
    ids.push_back(std::string(len - head.size() - tail.size(),
                              static_cast<char>('a' + ids.size())));
    const char* end = ids.size() % 2 ? "\r\n" : "\n";
    trace += head + ids.back() + tail + end;
    trace += "{\"op\":\"free\",\"id\":\"" + ids.back() + "\"}" + end;
  }
  const Replay r = Simulated(trace);
  ASSERT_OK(r.status);
  const std::vector<absl::string_view> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2 * ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string head =
        absl::StrCat(R"({"id":")", ids[i], R"(","ok":true)");
    EXPECT_TRUE(absl::StartsWith(lines[2 * i], head + R"(,"path":"simple")"))
        << "alloc " << i;
    EXPECT_EQ(lines[2 * i + 1], head + "}") << "free " << i;
  }
}

// What the JSON reader refuses at the edges, with the line number.
TEST(SimulateTest, EdgesOfTheJson) {
  const std::string seg = "{\"op\":\"segment\",\"iova\":0,\"pages\":4}\n";
  struct Case {
    std::string line;
    std::string error;
  } cases[] = {
      {"{\"op\":\"alloc\",\"id\":\"\xff\",\"bytes\":1}",
       "line 2: invalid UTF-8"},
      {std::string("{\"op\":\"alloc\",\"id\":\"a\0\",\"bytes\":1}", 35),
       "line 2: control character in string"},
      {std::string("{\"op\":\"free\",\"id\":\"a\"}\0", 24),
       "line 2: column 24: expected '}' to end the line"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1e3}",
       "line 2: column 32: expected an integer (no fraction or exponent)"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":4096.0}",
       "line 2: column 32: expected an integer (no fraction or exponent)"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":18446744073709551616}",
       "line 2: column 32: number above 2^64 - 1"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1,\"bytes\":2}",
       "line 2: column 34: duplicate key \"bytes\""},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1} {}",
       "line 2: column 35: unexpected characters after the object"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1} x",
       "line 2: column 35: expected '}' to end the line"},
      {"{\"op\":\"free\",\"id\":7}", "line 2: field \"id\" must be a string"},
      {"{\"op\":\"alloc\",\"id\":\"a\",\"bytes\":1,\"reclaim\":1}",
       "line 2: field \"reclaim\" must be true or false"},
      {"{\"op\":\"segment\",\"iova\":4096,\"pages\":1,\"numa\":65536}",
       "line 2: field \"numa\" must be <= 65535"},
  };
  for (const Case& c : cases) {
    const Replay r = Simulated(seg + c.line + "\n");
    EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kInvalidArgument))
        << c.line;
    EXPECT_EQ(std::string(r.status.message()), c.error) << c.line;
  }
}

TEST(SimulateTest, DrainUndrainRemove) {
  const Replay r = Simulated(R"json({"op":"segment","iova":0,"pages":4}
{"op":"segment","iova":1048576,"pages":4}
{"op":"drain","iova":0}
{"op":"alloc","id":"a","bytes":4096}
{"op":"remove","iova":0}
{"op":"alloc","id":"b","bytes":16384}
)json");
  ASSERT_OK(r.status);
  EXPECT_THAT(
      r.out,
      HasSubstr(
          R"json({"id":"a","ok":true,"path":"simple","runs":[{"iova":1048576,"pages":1}])json"));
  EXPECT_THAT(
      r.out,
      HasSubstr(R"json({"id":"b","ok":false,"code":"RESOURCE_EXHAUSTED")json"));
}

// Issue 10: with an alignment (or a boundary), max_segments 0 means one run,
// never the multi path; a runtime using the first run's IOVA as its buffer
// base must not get a second run it did not ask for.
TEST(SimulateTest, ConstrainedRequestsWithMaxSegmentsZeroGetOneRun) {
  // Free: [4, 8) and [12, 16); no 6 contiguous pages.
  const Replay r = Simulated(R"json({"op":"segment","iova":0,"pages":32}
{"op":"alloc","id":"h0","bytes":16384,"max_segments":1}
{"op":"alloc","id":"a","bytes":16384,"max_segments":1}
{"op":"alloc","id":"h1","bytes":16384,"max_segments":1}
{"op":"alloc","id":"b","bytes":16384,"max_segments":1}
{"op":"alloc","id":"h2","bytes":65536,"max_segments":1}
{"op":"free","id":"a"}
{"op":"free","id":"b"}
{"op":"alloc","id":"x","bytes":24000,"alignment":16384,"max_segments":0}
{"op":"alloc","id":"z","bytes":24000,"boundary":32768}
{"op":"alloc","id":"y","bytes":24000,"alignment":16384,"max_segments":2}
)json");
  ASSERT_OK(r.status);
  EXPECT_THAT(
      r.out,
      HasSubstr(
          R"json({"id":"x","ok":false,"code":"RESOURCE_EXHAUSTED","message":"no space: no placement in free memory for 6 pages (alignment 16384, boundary none, window [0, unbounded), at most 1 runs)"})json"));
  EXPECT_THAT(
      r.out,
      HasSubstr(R"json({"id":"z","ok":false,"code":"RESOURCE_EXHAUSTED")json"));
  EXPECT_THAT(
      r.out,
      HasSubstr(
          R"json({"id":"y","ok":true,"path":"multi","runs":[{"iova":16384,"pages":4},{"iova":49152,"pages":2}],"reclaimed":[]})json"));
}

// Issue 10: the aggressive path revokes whole leases, so p1 (1 page, at an
// aligned IOVA) is taken, not p4 (4 pages).
TEST(SimulateTest, ReclaimTakesTheLeastTotalSize) {
  const Replay r =
      Simulated(R"json({"op":"segment","iova":4294967296,"pages":16}
{"op":"alloc","id":"p4","bytes":16384,"max_segments":1,"preemptible":true}
{"op":"alloc","id":"f1","bytes":16384,"max_segments":1}
{"op":"alloc","id":"p1","bytes":4096,"max_segments":1,"preemptible":true}
{"op":"alloc","id":"f2","bytes":28672,"max_segments":1}
{"op":"alloc","id":"x","bytes":4096,"alignment":32768,"max_segments":1,"reclaim":true}
)json");
  ASSERT_OK(r.status);
  EXPECT_THAT(
      r.out,
      HasSubstr(
          R"json({"id":"x","ok":true,"path":"aggressive","runs":[{"iova":4295000064,"pages":1}],"reclaimed":["p1"]})json"));
}

}  // namespace
}  // namespace physpool::cli
