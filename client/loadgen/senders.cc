#include "loadgen/senders.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "inference/grpc_service.grpc.pb.h"
#include "loadgen/metrics_scrape.h"
#include "nlohmann/json.hpp"

namespace dytserve::loadgen {
namespace {

class GrpcUnary final : public Sender {
 public:
  explicit GrpcUnary(Client* client) : client_(client) {}
  void InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) override {
    client_->InferAsync(model, inputs, {}, [done = std::move(done)](absl::StatusOr<InferResult> r) { done(r.status()); });
  }

 private:
  Client* const client_;
};

// One bidirectional stream: writes under a lock, a reader thread that
// matches answers to requests by id.
class Stream {
 public:
  // No deadline: a stream has one for its whole life, and a load step's
  // stream lives as long as the step.
  Stream(inference::GRPCInferenceService::Stub* stub, const std::string& bearer_token) {
    if (!bearer_token.empty()) ctx_.AddMetadata("authorization", "Bearer " + bearer_token);
    stream_ = stub->ModelStreamInfer(&ctx_);
    reader_ = std::thread([this] { Read(); });
  }
  ~Stream() {
    {
      absl::MutexLock lock(&write_mu_);
      stream_->WritesDone();
    }
    reader_.join();
    stream_->Finish();
    // Answers that never came.
    std::map<std::string, Sender::Done> left;
    {
      absl::MutexLock lock(&pending_mu_);
      left.swap(pending_);
    }
    for (auto& [id, done] : left) done(absl::UnavailableError("the stream ended before its answer"));
  }

  void Send(inference::ModelInferRequest request, Sender::Done done) {
    const std::string id = std::to_string(next_id_.fetch_add(1));
    request.set_id(id);
    {
      absl::MutexLock lock(&pending_mu_);
      pending_[id] = std::move(done);
    }
    absl::MutexLock lock(&write_mu_);
    if (!stream_->Write(request)) {
      Sender::Done failed = Take(id);
      if (failed) failed(absl::UnavailableError("the stream is closed"));
    }
  }

 private:
  Sender::Done Take(const std::string& id) {
    absl::MutexLock lock(&pending_mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return nullptr;
    Sender::Done done = std::move(it->second);
    pending_.erase(it);
    return done;
  }

  void Read() {
    inference::ModelStreamInferResponse answer;
    while (stream_->Read(&answer)) {
      Sender::Done done = Take(answer.infer_response().id());
      if (!done) continue;
      done(answer.error_message().empty() ? absl::OkStatus() : absl::UnknownError(answer.error_message()));
    }
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<inference::ModelInferRequest, inference::ModelStreamInferResponse>> stream_;
  std::thread reader_;
  std::atomic<int64_t> next_id_{0};
  absl::Mutex write_mu_;
  absl::Mutex pending_mu_;
  std::map<std::string, Sender::Done> pending_ ABSL_GUARDED_BY(pending_mu_);
};

class GrpcStream final : public Sender {
 public:
  GrpcStream(const std::string& target, int streams, const std::string& bearer_token)
      : stub_(inference::GRPCInferenceService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {
    for (int i = 0; i < streams; ++i) streams_.push_back(std::make_unique<Stream>(stub_.get(), bearer_token));
  }
  void InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) override {
    inference::ModelInferRequest request;
    Client::BuildRequest(model, inputs, {}, &request);
    streams_[next_.fetch_add(1) % streams_.size()]->Send(std::move(request), std::move(done));
  }

 private:
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::atomic<uint64_t> next_{0};
};

absl::Status FromHttpCode(int code, const std::string& body) {
  const std::string message = absl::StrCat("HTTP ", code, ": ", body.substr(0, 200));
  switch (code) {
    case 400: return absl::InvalidArgumentError(message);
    case 401: return absl::UnauthenticatedError(message);
    case 403: return absl::PermissionDeniedError(message);
    case 404: return absl::NotFoundError(message);
    case 429: return absl::ResourceExhaustedError(message);
    case 503: return absl::UnavailableError(message);
    case 504: return absl::DeadlineExceededError(message);
    default: return absl::UnknownError(message);
  }
}

absl::Status ParseTarget(const std::string& target, std::string* host, int* port) {
  const size_t colon = target.rfind(':');
  in_addr probe{};
  if (colon == std::string::npos || !absl::SimpleAtoi(target.substr(colon + 1), port) || *port <= 0 ||
      *port > 65535 || inet_pton(AF_INET, target.substr(0, colon).c_str(), &probe) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", target, "' is not an IPv4 host:port for HTTP"));
  }
  *host = target.substr(0, colon);
  return absl::OkStatus();
}

// A TCP connection with Nagle off and `timeout` on every receive; -1 on failure.
int Connect(const std::string& host, int port, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const auto micros = absl::ToInt64Microseconds(timeout);
  timeval tv{static_cast<time_t>(micros / 1000000), static_cast<suseconds_t>(micros % 1000000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A request body, encoded once per distinct inputs.
struct Encoded {
  std::string body;
  size_t header_length = 0;  // binary: the JSON part's length
};

Encoded Encode(const std::vector<Tensor>& inputs, bool binary) {
  using nlohmann::json;
  json doc = {{"inputs", json::array()}};
  Encoded out;
  std::string tail;
  for (const Tensor& t : inputs) {
    json in = {{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}};
    if (binary) {
      in["parameters"] = {{"binary_data_size", t.data.size()}};
      tail += t.data;
    } else if (t.datatype == "FP32") {
      in["data"] = *t.As<float>();
    } else if (t.datatype == "INT64") {
      in["data"] = *t.As<int64_t>();
    } else if (t.datatype == "INT32") {
      in["data"] = *t.As<int32_t>();
    } else if (t.datatype == "FP64") {
      in["data"] = *t.As<double>();
    } else {
      in["data"] = json::array();  // the server names what it cannot take
    }
    doc["inputs"].push_back(std::move(in));
  }
  if (binary) doc["parameters"] = {{"binary_data_output", true}};
  out.body = doc.dump();
  out.header_length = out.body.size();
  out.body += tail;
  return out;
}

// Keep-alive HTTP/1.1 connections, each served by a thread of its own that
// takes requests from one queue.
class Http final : public Sender {
 public:
  Http(std::string host, int port, bool binary, int connections, absl::Duration timeout, std::string bearer_token)
      : host_(std::move(host)),
        port_(port),
        binary_(binary),
        timeout_(timeout),
        authorization_(bearer_token.empty() ? "" : absl::StrCat("Authorization: Bearer ", bearer_token, "\r\n")) {
    for (int i = 0; i < connections; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~Http() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }

  void InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) override {
    absl::MutexLock lock(&mu_);
    auto it = encoded_.find(&inputs);
    if (it == encoded_.end()) it = encoded_.emplace(&inputs, Encode(inputs, binary_)).first;
    queue_.push_back({model, &it->second, std::move(done)});
  }

 private:
  bool HasWorkOrStops() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }

  struct Job {
    std::string model;
    const Encoded* encoded;
    Done done;
  };

  // One exchange on `fd`; the connection is kept when the answer was whole.
  absl::Status Exchange(int fd, const Job& job, bool* keep) {
    *keep = false;
    std::string request = absl::StrCat("POST /v2/models/", job.model, "/infer HTTP/1.1\r\nHost: ", host_,
                                       "\r\nContent-Length: ", job.encoded->body.size(), "\r\n");
    if (binary_) absl::StrAppend(&request, "Inference-Header-Content-Length: ", job.encoded->header_length, "\r\n");
    absl::StrAppend(&request, authorization_, "\r\n");
    request += job.encoded->body;
    for (size_t sent = 0; sent < request.size();) {
      const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return absl::UnavailableError("the connection closed while sending");
      sent += static_cast<size_t>(n);
    }
    std::string in;
    char buf[16384];
    size_t header_end = std::string::npos;
    size_t length = 0;
    while (true) {
      if (header_end == std::string::npos) {
        header_end = in.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          const size_t at = in.find("Content-Length: ");
          if (at == std::string::npos || at > header_end ||
              !absl::SimpleAtoi(in.substr(at + 16, in.find("\r\n", at) - at - 16), &length)) {
            return absl::UnknownError("an answer without Content-Length");
          }
        }
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + length) break;
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return n == 0 ? absl::UnavailableError("the server closed the connection")
                                : absl::DeadlineExceededError("no answer in time");
      in.append(buf, static_cast<size_t>(n));
    }
    int code = 0;
    if (!absl::StartsWith(in, "HTTP/1.1 ") || !absl::SimpleAtoi(in.substr(9, 3), &code)) {
      return absl::UnknownError("not an HTTP answer");
    }
    *keep = in.size() == header_end + 4 + length;
    if (code == 200) return absl::OkStatus();
    return FromHttpCode(code, in.substr(header_end + 4, length));
  }

  void Work() {
    int fd = -1;
    while (true) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Http::HasWorkOrStops));
        if (queue_.empty()) break;  // stopping, nothing left
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      if (fd < 0) fd = Connect(host_, port_, timeout_);
      absl::Status status = absl::UnavailableError(absl::StrCat("cannot connect to ", host_, ":", port_));
      bool keep = false;
      if (fd >= 0) status = Exchange(fd, job, &keep);
      if (!keep && fd >= 0) {
        close(fd);
        fd = -1;
      }
      job.done(status);
    }
    if (fd >= 0) close(fd);
  }

  const std::string host_;
  const int port_;
  const bool binary_;
  const absl::Duration timeout_;
  const std::string authorization_;  // a header line, or empty
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  std::map<const std::vector<Tensor>*, Encoded> encoded_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace

absl::StatusOr<ModelMetadata> HttpModelMetadata(const std::string& target, const std::string& model,
                                                const std::string& bearer_token) {
  absl::StatusOr<std::string> body = Scrape(absl::StrCat(target, "/v2/models/", model), bearer_token);
  if (!body.ok()) return body.status();
  const nlohmann::json doc = nlohmann::json::parse(*body, nullptr, false);
  if (!doc.is_object()) return absl::UnknownError("model metadata is not JSON");
  ModelMetadata out;
  out.name = doc.value("name", model);
  out.platform = doc.value("platform", "");
  auto tensors = [&doc](const char* key, std::vector<TensorInfo>* into) {
    for (const auto& t : doc.value(key, nlohmann::json::array())) {
      into->push_back({t.value("name", ""), t.value("datatype", ""), t.value("shape", std::vector<int64_t>{})});
    }
  };
  tensors("inputs", &out.inputs);
  tensors("outputs", &out.outputs);
  return out;
}

std::unique_ptr<Sender> GrpcUnarySender(Client* client) { return std::make_unique<GrpcUnary>(client); }

absl::StatusOr<std::unique_ptr<Sender>> GrpcStreamSender(const std::string& target, int streams,
                                                         const std::string& bearer_token) {
  if (streams < 1) return absl::InvalidArgumentError("a stream sender needs at least one stream");
  return std::make_unique<GrpcStream>(target, streams, bearer_token);
}

absl::StatusOr<std::unique_ptr<Sender>> HttpSender(const std::string& target, bool binary, int connections,
                                                   absl::Duration timeout, const std::string& bearer_token) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseTarget(target, &host, &port); !s.ok()) return s;
  if (connections < 1) return absl::InvalidArgumentError("an HTTP sender needs at least one connection");
  return std::make_unique<Http>(host, port, binary, connections, timeout, bearer_token);
}

}  // namespace dytserve::loadgen
