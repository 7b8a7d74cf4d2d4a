#include "support/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace dytserve::testing {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const std::string& binary,
                                                                    std::vector<std::string> args,
                                                                    absl::Duration timeout) {
  auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
  char path[] = "/tmp/dytserve-test-stderr-XXXXXX";
  const int err_fd = mkstemp(path);
  if (err_fd < 0) return absl::InternalError("mkstemp failed");
  server->stderr_path_ = path;
  int out[2];
  if (pipe(out) != 0) return absl::InternalError("pipe failed");

  args.insert(args.begin(), binary);
  args.push_back("--host=127.0.0.1");
  // Every port of the OS's choosing, unless the test chose (a restart on the
  // same port; --http_port=-1: no REST).
  for (const char* flag : {"--grpc_port=", "--metrics_port=", "--http_port="}) {
    if (std::none_of(args.begin(), args.end(), [flag](const std::string& a) { return absl::StartsWith(a, flag); })) {
      args.push_back(absl::StrCat(flag, "0"));
    }
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    close(out[0]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err_fd);
  server->pid_ = pid;

  std::string line;
  const absl::Time give_up = absl::Now() + timeout;
  while (line.find('\n') == std::string::npos) {
    const int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(give_up - absl::Now()));
    pollfd p{out[0], POLLIN, 0};
    if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) {
      close(out[0]);
      return absl::DeadlineExceededError(absl::StrCat("server did not print its listening line; stderr:\n",
                                                      server->Stderr()));
    }
    char buf[512];
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) {
      close(out[0]);
      return absl::UnavailableError(absl::StrCat("server exited before listening; stderr:\n", server->Stderr()));
    }
    line.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  server->listening_line_ = line.substr(0, line.find('\n'));
  for (absl::string_view field : absl::StrSplit(server->listening_line_, ' ')) {
    if (absl::ConsumePrefix(&field, "grpc=")) server->grpc_address_ = std::string(field);
    if (absl::ConsumePrefix(&field, "metrics=")) server->metrics_address_ = std::string(field);
    if (absl::ConsumePrefix(&field, "http=")) server->http_address_ = std::string(field);
  }
  if (server->grpc_address_.empty() || server->metrics_address_.empty()) {
    return absl::InternalError(absl::StrCat("unexpected listening line: ", server->listening_line_));
  }
  return server;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && exit_code_ < 0) Stop(SIGTERM);
  // In a sanitizer build the server reports what it finds on stderr, often
  // only as it exits (leaks), when no test looks any more: such a report
  // fails the test process here instead of vanishing with the file.
  const std::string err = Stderr();
  if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
  for (const char* summary : {"SUMMARY: AddressSanitizer", "SUMMARY: LeakSanitizer",
                              "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: ThreadSanitizer"}) {
    if (err.find(summary) == std::string::npos) continue;
    std::fprintf(stderr, "dytserve-server (pid %d) reported a sanitizer finding; its stderr:\n%s\n",
                 static_cast<int>(pid_), err.c_str());
    std::abort();
  }
}

std::string ServerProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool ServerProcess::Running() {
  if (exit_code_ >= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

int ServerProcess::Stop(int signal, absl::Duration grace) {
  if (!Running()) return exit_code_;
  kill(pid_, signal);
  const absl::Time give_up = absl::Now() + grace;
  while (absl::Now() < give_up) {
    if (!Running()) return exit_code_;
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  exit_code_ = 128 + SIGKILL;
  return exit_code_;
}

absl::StatusOr<HttpResult> HttpCall(const std::string& address, const std::string& method, const std::string& path,
                                    const std::string& body, const std::vector<std::string>& headers) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("bad address ", address));
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address));
  }
  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", address, "\r\nConnection: close\r\n");
  for (const std::string& h : headers) absl::StrAppend(&request, h, "\r\n");
  if (!body.empty() || method == "POST") absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&request, "\r\n", body);
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t end = response.find("\r\n\r\n");
  HttpResult result;
  if (!absl::StartsWith(response, "HTTP/1.1 ") || end == std::string::npos ||
      !absl::SimpleAtoi(response.substr(9, 3), &result.code)) {
    return absl::UnavailableError(absl::StrCat(method, " ", path, ": no HTTP answer: ", response.substr(0, 64)));
  }
  result.headers = response.substr(0, end);
  result.body = response.substr(end + 4);
  return result;
}

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path) {
  absl::StatusOr<HttpResult> r = HttpCall(address, "GET", path);
  if (!r.ok()) return r.status();
  if (r->code != 200) return absl::UnavailableError(absl::StrCat("GET ", path, ": ", r->code, " ", r->body.substr(0, 64)));
  return r->body;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void AddModel(const std::string& repo, const std::string& name, const std::string& model_pt,
              const std::string& config) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(repo) / name;
  fs::create_directories(dir / "1");
  fs::create_symlink(fs::absolute(model_pt), dir / "1/model.pt");
  std::ofstream(dir / "config.pbtxt") << config;
}

void CopyModels(const std::string& from, const std::string& repo, const std::vector<std::string>& models) {
  for (const std::string& model : models) {
    const std::filesystem::path dir = std::filesystem::path(from) / model;
    std::ifstream config(dir / "config.pbtxt");
    std::stringstream text;
    text << config.rdbuf();
    AddModel(repo, model, (dir / "1" / "model.pt").string(), text.str());
  }
}

std::string VitConfig(int max_batch_size, const std::string& extra, int classes) {
  return absl::StrCat("max_batch_size: ", max_batch_size,
                      "\ninput { name: \"pixel_values\" data_type: TYPE_FP32 dims: [1, 8, 8] }\n"
                      "output { name: \"logits\" data_type: TYPE_FP32 dims: [",
                      classes, "] }\n", extra);
}

}  // namespace dytserve::testing
