// dytserve-loadgen against the real server: rate accuracy, coordinated
// omission under a real stall, the JSON schema, A/B mode and the reports.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using testing::ServerProcess;

using ProcRun = testing::CommandResult;

ProcRun Loadgen(const std::string& args) {
  return testing::RunCommand(absl::StrCat(DYTSERVE_LOADGEN_BIN, " --progress=false ", args));
}

Struct ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  Struct root;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &root).ok()) << text.str();
  return root;
}

const Struct& Step(const Struct& root, int i) { return root.fields().at("steps").list_value().values(i).struct_value(); }
double Field(const Struct& s, const std::string& a, const std::string& b = "") {
  const Value& v = s.fields().at(a);
  return b.empty() ? v.number_value() : v.struct_value().fields().at(b).number_value();
}

class LoadgenTest : public testing::SuiteServerTest<LoadgenTest> {
 protected:
  static std::string Common() {
    return absl::StrCat("--target=", server_->grpc_address(), " --metrics_url=", server_->metrics_address());
  }
};

TEST_F(LoadgenTest, ClosedLoopSweepWritesTheJsonSchemaCsvAndHtml) {
  const std::string dir = ::testing::TempDir();
  const ProcRun run = Loadgen(absl::StrCat(Common(), " --model=vit_dyt --concurrency_range=1:4:3 --window=0.5 --duration=2",
                                       " --warmup=0.3 --json=", dir, "/lg.json --csv=", dir, "/lg.csv --html=", dir,
                                       "/lg.html"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const Struct root = ReadJson(dir + "/lg.json");
  ASSERT_EQ(root.fields().at("steps").list_value().values_size(), 2);
  for (int i = 0; i < 2; ++i) {
    const Struct& step = Step(root, i);
    EXPECT_GT(Field(step, "throughput_rps"), 0);
    for (const char* q : {"p50", "p90", "p95", "p99", "p999", "max"}) EXPECT_GT(Field(step, "latency_us", q), 0) << q;
    EXPECT_LE(Field(step, "latency_us", "p50"), Field(step, "latency_us", "p99"));
    EXPECT_TRUE(step.fields().at("errors").has_struct_value());
    for (const char* k : {"queue_us", "compute_us", "avg_batch"}) EXPECT_GT(Field(step, "server", k), 0) << k;
    EXPECT_GT(Field(step, "client_cpu_us_per_request"), 0);
  }
  // One client never shares a batch; four can never exceed four rows. How
  // many of the four meet in one batch depends on how fast a loaded machine
  // lets the clients send (2.1 was seen on CI against 3-4 here), so the test
  // asks only that they do meet.
  // (The scrapes bracketing a step may fall between a batch's two counters,
  // hence the small slack.)
  EXPECT_NEAR(Field(Step(root, 0), "server", "avg_batch"), 1.0, 0.05);
  EXPECT_LE(Field(Step(root, 1), "server", "avg_batch"), 4.2);
  // (Not in a sanitizer build: there the slowed clients may well never meet
  // within the 2 ms queue delay.)
#ifndef DYTSERVE_SANITIZER_BUILD
  EXPECT_GT(Field(Step(root, 1), "server", "avg_batch"), 1.3) << "4 clients batch together";
#endif
  std::ifstream csv(dir + "/lg.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("label,mode,load,throughput_rps,p50_us", 0), 0u) << header;
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 2);
  std::stringstream html;
  html << std::ifstream(dir + "/lg.html").rdbuf();
  EXPECT_NE(html.str().find("<svg"), std::string::npos);
  EXPECT_NE(html.str().find("Throughput vs p99"), std::string::npos);
}

TEST_F(LoadgenTest, OpenLoopRateIsAccurate) {
  const std::string path = ::testing::TempDir() + "/rate.json";
  const ProcRun run = Loadgen(absl::StrCat(Common(), " --model=vit_ln --rate=200 --window=1 --duration=3 --warmup=0.5",
                                       " --json=", path));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const Struct step = Step(ReadJson(path), 0);
  // What the schedule controls: requests sent per second, within 5% (a
  // sender thread that a loaded machine delays by 100 ms at a window's end
  // moves 20 of the 600 sends past it).
  EXPECT_NEAR(Field(step, "sent_rps"), 200, 200 * 0.05) << run.output;
  // Completions in the same windows follow, but not to 2%: a latency spike
  // of the shared machine (p99s of 0.5 s are seen) moves a hundred
  // completions across a window's edge.
  EXPECT_NEAR(Field(step, "throughput_rps"), 200, 200 * 0.25) << run.output;
  EXPECT_TRUE(step.fields().at("errors").struct_value().fields().empty()) << run.output;
}

TEST_F(LoadgenTest, OpenLoopSeesAStallThatClosedLoopHides) {
  // Stall the whole server for 200 ms once, in the middle of the measurement.
  const auto stall = [] {
    absl::SleepFor(absl::Milliseconds(1700));
    kill(server_->pid(), SIGSTOP);
    absl::SleepFor(absl::Milliseconds(200));
    kill(server_->pid(), SIGCONT);
  };
  const std::string open_path = ::testing::TempDir() + "/open.json";
  std::thread open_stall(stall);
  const ProcRun open = Loadgen(absl::StrCat(Common(), " --model=vit_ln --rate=100 --window=1 --duration=3 --warmup=0.5",
                                        " --json=", open_path));
  open_stall.join();
  ASSERT_EQ(open.exit_code, 0) << open.output;
  const std::string closed_path = ::testing::TempDir() + "/closed.json";
  std::thread closed_stall(stall);
  const ProcRun closed = Loadgen(absl::StrCat(Common(), " --model=vit_ln --concurrency=1 --window=1 --duration=3",
                                          " --warmup=0.5 --json=", closed_path));
  closed_stall.join();
  ASSERT_EQ(closed.exit_code, 0) << closed.output;
  const Struct open_root = ReadJson(open_path), closed_root = ReadJson(closed_path);
  const Struct& o = Step(open_root, 0);
  const Struct& c = Step(closed_root, 0);
  // Open loop: ~20 requests were due during the stall and wait up to 200 ms.
  EXPECT_GE(Field(o, "latency_us", "p99"), 100e3) << open.output;
  // Closed loop: one request waits, the sender waits with it: its p99 stays
  // far below the open loop's, which the stall filled. Compared with each
  // other, not with a fixed bound: a parallel test's load moves both.
  // (Not in a sanitizer build: there every request takes several times as
  // long; the assertions on the stall itself still hold.)
#ifndef DYTSERVE_SANITIZER_BUILD
  EXPECT_LT(Field(c, "latency_us", "p99"), 0.5 * Field(o, "latency_us", "p99")) << closed.output << open.output;
#endif
  EXPECT_GE(Field(c, "latency_us", "max"), 150e3) << "the stall happened during the closed run too";
}

TEST_F(LoadgenTest, AbModeComparesTwoModelsUnderTheSameLoad) {
  const std::string path = ::testing::TempDir() + "/ab.json";
  const ProcRun run = Loadgen(absl::StrCat(Common(), " --models=llama_rms,llama_dyt --concurrency=2 --seq-len 8:32",
                                       " --int_high=256 --window=1 --duration=3 --warmup=0.3 --json=", path));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("verdict: "), std::string::npos) << run.output;
  const Struct root = ReadJson(path);
  const Struct& ab = Step(root, 0).fields().at("ab").struct_value();
  EXPECT_EQ(ab.fields().at("a").string_value(), "llama_rms");
  EXPECT_EQ(ab.fields().at("b").string_value(), "llama_dyt");
  const auto& ci = ab.fields().at("p99_diff_us").struct_value().fields().at("ci95").list_value();
  EXPECT_LE(ci.values(0).number_value(), ci.values(1).number_value());
  const double p = ab.fields().at("mann_whitney_p").number_value();
  EXPECT_GE(p, 0);
  EXPECT_LE(p, 1);
  EXPECT_FALSE(ab.fields().at("verdict").string_value().empty());
}

TEST_F(LoadgenTest, HelpListsTheFlags) {
  const ProcRun help = Loadgen("--help");
  for (const char* flag : {"--concurrency_range", "--rate_range", "--arrival", "--seq_len", "--models", "--json",
                           "--html", "--metrics_url"}) {
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag << "\n" << help.output;
  }
}

// The same load over each way in: unary gRPC, ModelStreamInfer, and REST with
// JSON and binary tensors; every request answered, the server counting them.
TEST_F(LoadgenTest, EveryProtocolCarriesTheLoad) {
  const std::string dir = ::testing::TempDir();
  const std::string http = absl::StrCat("--protocol=http --target=", server_->http_address(),
                                        " --metrics_url=", server_->metrics_address());
  for (const std::string& way : {absl::StrCat(Common(), " --streaming --streams=2"), http,
                                 absl::StrCat(http, " --http_binary")}) {
    SCOPED_TRACE(way);
    const ProcRun run = Loadgen(absl::StrCat(way, " --model=vit_dyt --concurrency=4 --window=0.5 --duration=1.5",
                                             " --warmup=0.2 --json=", dir, "/proto.json"));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const Struct root = ReadJson(dir + "/proto.json");
    const Struct& step = Step(root, 0);
    EXPECT_GT(Field(step, "throughput_rps"), 0);
    EXPECT_EQ(step.fields().at("errors").struct_value().fields_size(), 0) << run.output;
    EXPECT_GT(Field(step, "server", "avg_batch"), 0);
  }
  // A decoder over REST: generated INT64 tokens of varied lengths.
  const ProcRun llama = Loadgen(absl::StrCat(http, " --model=llama_dyt --seq_len=4:12 --concurrency=2 --window=0.5",
                                             " --duration=1 --warmup=0.2 --json=", dir, "/llama.json"));
  ASSERT_EQ(llama.exit_code, 0) << llama.output;
  EXPECT_EQ(Step(ReadJson(dir + "/llama.json"), 0).fields().at("errors").struct_value().fields_size(), 0) << llama.output;

  const ProcRun mixed = Loadgen(absl::StrCat(http, " --streaming --model=vit_dyt --concurrency=1"));
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_NE(mixed.output.find("--streaming is a gRPC call"), std::string::npos) << mixed.output;
  const ProcRun unknown = Loadgen(absl::StrCat(Common(), " --protocol=quic --model=vit_dyt --concurrency=1"));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("--protocol=quic"), std::string::npos) << unknown.output;
}

// The rehearsal on one machine: held-out digits through the vit experiment,
// their true labels fed back, so the arms show their real accuracy (the
// trained ViTs score about 95% on this split), and synthetic outcomes whose
// per-arm rates are chosen.
TEST_F(LoadgenTest, DatasetFeedbackShowsRealPerArmAccuracy) {
  const std::string dir = ::testing::TempDir();
  const ProcRun run = Loadgen(absl::StrCat(Common(), " --model=vit --dataset=", DYTSERVE_TEST_REPO,
                                           "/digits_test.json --rate=80 --duration=3 --warmup=0.3",
                                           " --feedback_delay=0.1 --html=", dir, "/fb.html"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  long long sent = 0, recorded = 0;
  const size_t at = run.output.find("feedback: ");
  ASSERT_NE(at, std::string::npos) << run.output;
  ASSERT_EQ(std::sscanf(run.output.c_str() + at, "feedback: %lld sent, %lld recorded", &sent, &recorded), 2);
  EXPECT_GT(sent, 100);
  EXPECT_EQ(recorded, sent) << "every label reached the replica that served its request";
  for (const char* arm : {" ln ", " dyt "}) {
    const size_t a = run.output.find(arm, at);
    ASSERT_NE(a, std::string::npos) << run.output;
    long long correct = 0, labels = 0;
    ASSERT_EQ(std::sscanf(run.output.c_str() + a + std::strlen(arm), "%lld/%lld", &correct, &labels), 2);
    EXPECT_GT(static_cast<double>(correct) / labels, 0.85) << arm << correct << "/" << labels;
  }
  std::ifstream html(dir + "/fb.html");
  std::stringstream page;
  page << html.rdbuf();
  EXPECT_NE(page.str().find("accuracy of the labels fed back"), std::string::npos);
  EXPECT_NE(page.str().find("share of traffic"), std::string::npos);

  const ProcRun synthetic =
      Loadgen(absl::StrCat(Common(), " --model=vit --feedback=synthetic:ln=1,dyt=0 --concurrency=2 --duration=2 --warmup=0.2"));
  ASSERT_EQ(synthetic.exit_code, 0) << synthetic.output;
  EXPECT_NE(synthetic.output.find("correct per arm: dyt 0/"), std::string::npos) << synthetic.output;
  long long ln_correct = -1, ln_labels = -2;
  const size_t ln = synthetic.output.find(" ln ", synthetic.output.find("correct per arm"));
  ASSERT_NE(ln, std::string::npos) << synthetic.output;
  ASSERT_EQ(std::sscanf(synthetic.output.c_str() + ln + 4, "%lld/%lld", &ln_correct, &ln_labels), 2);
  EXPECT_EQ(ln_correct, ln_labels);

  const ProcRun rest = Loadgen(absl::StrCat(Common(), " --model=vit --dataset=digits --protocol=http --concurrency=1"));
  EXPECT_EQ(rest.exit_code, 2);
  EXPECT_NE(rest.output.find("unary gRPC only"), std::string::npos) << rest.output;
  const ProcRun rate = Loadgen(absl::StrCat(Common(), " --model=vit --feedback=synthetic:ln=2 --concurrency=1"));
  EXPECT_EQ(rate.exit_code, 2);
  EXPECT_NE(rate.output.find("'ln=2' is not ARM=RATE"), std::string::npos) << rate.output;
  const ProcRun missing = Loadgen(absl::StrCat(Common(), " --model=vit --dataset=/no/such.json --concurrency=1"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("cannot read /no/such.json"), std::string::npos) << missing.output;
}

TEST_F(LoadgenTest, BadFlagsAreClearErrors) {
  const ProcRun none = Loadgen(absl::StrCat(Common(), " --concurrency=1"));
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.output.find("--model (or --models A,B) is required"), std::string::npos) << none.output;
  const ProcRun both = Loadgen(absl::StrCat(Common(), " --model=vit_ln --concurrency=1 --rate=5"));
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.output.find("exactly one of"), std::string::npos) << both.output;
  const ProcRun range = Loadgen(absl::StrCat(Common(), " --model=vit_ln --rate_range=10:5:1"));
  EXPECT_EQ(range.exit_code, 2);
  EXPECT_NE(range.output.find("--rate_range='10:5:1'"), std::string::npos) << range.output;
}

}  // namespace
}  // namespace dytserve
