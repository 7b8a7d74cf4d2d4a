// Starts the real dytserve-server binary on loopback for a test and stops it.
#ifndef DYTSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_
#define DYTSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dytserve::testing {

class ServerProcess {
 public:
  // Runs `binary` with `args` plus --host=127.0.0.1 and, for each of
  // --grpc_port, --metrics_port and --http_port that `args` does not set, 0
  // (the OS chooses), and waits for its "dytserve listening" line.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary,
                                                              std::vector<std::string> args,
                                                              absl::Duration timeout = absl::Seconds(120));
  ~ServerProcess();  // Stop() if still running

  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // Empty when the server serves no REST.
  const std::string& http_address() const { return http_address_; }
  const std::string& listening_line() const { return listening_line_; }
  pid_t pid() const { return pid_; }

  // Everything the server wrote to stderr so far.
  std::string Stderr() const;
  // Sends `signal`, waits up to `grace` for exit (then SIGKILL). Returns the
  // exit code, or 128+signal when killed by a signal.
  int Stop(int signal, absl::Duration grace = absl::Seconds(30));
  bool Running();

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string stderr_path_;
  std::string grpc_address_;
  std::string metrics_address_;
  std::string http_address_;
  std::string listening_line_;
};

// GET http://address/path; the body, or an error (also for a status other than 200).
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

// One HTTP/1.1 request on a connection of its own ("Connection: close").
// `headers` are "Name: value" lines. An error only when no answer came.
struct HttpResult {
  int code = 0;
  std::string headers;  // the status line and headers
  std::string body;
};
absl::StatusOr<HttpResult> HttpCall(const std::string& address, const std::string& method, const std::string& path,
                                    const std::string& body = "", const std::vector<std::string>& headers = {});

// Runs `command` through the shell; its exit code (-1 if it did not exit)
// and stdout plus stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

// Adds <repo>/<name>/1/model.pt (a symlink to `model_pt`) and
// <repo>/<name>/config.pbtxt with `config`.
void AddModel(const std::string& repo, const std::string& name, const std::string& model_pt,
              const std::string& config);

// Adds each of `models` of the repository `from` to `repo`: its config as it
// is, and version 1's model.pt (a symlink). Real directories: a repository
// refuses links that lead outside it.
void CopyModels(const std::string& from, const std::string& repo, const std::vector<std::string>& models);

// config.pbtxt text of the digits ViT with `max_batch_size` and `classes`
// outputs, followed by `extra`.
std::string VitConfig(int max_batch_size, const std::string& extra = "", int classes = 10);

}  // namespace dytserve::testing

#endif  // DYTSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_
