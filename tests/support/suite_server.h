// A real server shared by the tests of one suite: started once per fixture
// class, stopped (and required to exit 0) after its last test. A start
// failure is not ASSERTed in SetUpTestSuite, where GoogleTest would report
// the tests SKIPPED (CTest counts those as skipped, not failed): each test's
// SetUp fails instead. Needs DYTSERVE_SERVER_BIN and DYTSERVE_TEST_REPO.
// A fixture that needs other flags defines its own static ServerArgs().
#ifndef DYTSERVE_TESTS_SUPPORT_SUITE_SERVER_H_
#define DYTSERVE_TESTS_SUPPORT_SUITE_SERVER_H_

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "support/server_process.h"

namespace dytserve::testing {

template <typename Fixture>
class SuiteServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(DYTSERVE_SERVER_BIN, Fixture::ServerArgs());
    if (server.ok()) {
      server_ = server->release();
    } else {
      start_error_ = new std::string(server.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Stderr();
    }
    delete server_;
    server_ = nullptr;
  }
  static std::vector<std::string> ServerArgs() { return {absl::StrCat("--model_repository=", DYTSERVE_TEST_REPO)}; }
  void SetUp() override {
    if (start_error_ != nullptr) FAIL() << "the server did not start: " << *start_error_;
  }

  static inline ServerProcess* server_ = nullptr;
  static inline std::string* start_error_ = nullptr;
};

}  // namespace dytserve::testing

#endif  // DYTSERVE_TESTS_SUPPORT_SUITE_SERVER_H_
