#include "dytserve/client.h"

#include "src/client_impl.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"

namespace dytserve {
namespace {

std::string ParameterText(const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam: return p.bool_param() ? "true" : "false";
    case inference::InferParameter::kInt64Param: return std::to_string(p.int64_param());
    case inference::InferParameter::kStringParam: return p.string_param();
    default: return "";
  }
}

absl::StatusOr<InferResult> ToResult(const inference::ModelInferResponse& resp) {
  if (resp.raw_output_contents_size() > 0 && resp.raw_output_contents_size() != resp.outputs_size()) {
    return absl::InternalError(absl::StrCat("response has ", resp.raw_output_contents_size(),
                                            " raw contents for ", resp.outputs_size(), " outputs"));
  }
  InferResult result;
  result.model_name = resp.model_name();
  result.model_version = resp.model_version();
  result.id = resp.id();
  for (const auto& [key, value] : resp.parameters()) result.parameters[key] = ParameterText(value);
  for (int i = 0; i < resp.outputs_size(); ++i) {
    const auto& out = resp.outputs(i);
    Tensor t{out.name(), out.datatype(), {out.shape().begin(), out.shape().end()}, {}};
    if (resp.raw_output_contents_size() > 0) {
      t.data = resp.raw_output_contents(i);
    } else {
      return absl::UnimplementedError(absl::StrCat("output '", out.name(), "' came as typed contents; only raw outputs are read"));
    }
    result.outputs.push_back(std::move(t));
  }
  return result;
}

TensorInfo ToInfo(const inference::ModelMetadataResponse::TensorMetadata& m) {
  return {m.name(), m.datatype(), {m.shape().begin(), m.shape().end()}};
}

}  // namespace

const char* HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kServing: return "SERVING";
    case HealthStatus::kNotServing: return "NOT_SERVING";
    case HealthStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
    case HealthStatus::kUnknown: break;
  }
  return "UNKNOWN";
}

const Tensor* InferResult::Find(absl::string_view name) const {
  for (const Tensor& t : outputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  // A callback's last touch of the client is its decrement of this counter;
  // wait for it, so that no gRPC thread is inside our code as the channels go.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (impl_->async_in_flight.load() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
}

namespace {

// gRPC service config: round-robin over the target's addresses, and retries
// for the inference service (calls are idempotent) of UNAVAILABLE, which
// means the replica is gone or draining, so another one should answer, and
// of CANCELLED that the server sent: gRPC 1.51's server, once shutting down,
// cancels calls that reach it before its GOAWAY reaches the client (about 1
// in 2,000 during a rolling restart under load; see the client test). A
// call this client cancels itself is never retried.
std::string ServiceConfig(int max_attempts) {
  std::string config = R"({"loadBalancingConfig": [{"round_robin": {}}]})";
  if (max_attempts > 1) {
    config.pop_back();
    absl::StrAppend(&config, R"(, "methodConfig": [{"name": [{"service": "inference.GRPCInferenceService"}],)",
                    R"( "retryPolicy": {"maxAttempts": )", max_attempts,
                    R"(, "initialBackoff": "0.02s", "maxBackoff": "0.2s", "backoffMultiplier": 2,)",
                    R"( "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}}]})");
  }
  return config;
}

// "ipv4:a:1,b:2" (or ipv6:) for several host:port endpoints, so one channel
// balances over all of them; the single endpoint itself when there is one.
absl::StatusOr<std::string> BalancedTarget(const std::vector<std::string>& endpoints) {
  if (endpoints.size() == 1) return endpoints.front();
  std::string family, addresses;
  for (const std::string& endpoint : endpoints) {
    const size_t colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "' is not host:port"));
    }
    std::string host = endpoint.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* info = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &info) != 0 || info == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "': cannot resolve '", host, "'"));
    }
    char text[INET6_ADDRSTRLEN] = {};
    const bool v6 = info->ai_family == AF_INET6;
    const void* addr = v6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(info->ai_addr)->sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(info->ai_addr)->sin_addr);
    inet_ntop(info->ai_family, addr, text, sizeof(text));
    freeaddrinfo(info);
    const std::string this_family = v6 ? "ipv6" : "ipv4";
    if (!family.empty() && family != this_family) {
      return absl::InvalidArgumentError("endpoints mix IPv4 and IPv6 addresses; one channel takes one family");
    }
    family = this_family;
    absl::StrAppend(&addresses, addresses.empty() ? "" : ",", v6 ? absl::StrCat("[", text, "]") : std::string(text),
                    endpoint.substr(colon));
  }
  return absl::StrCat(family, ":", addresses);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("ClientOptions.endpoints is empty");
  if (options.default_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.default_deadline must be positive");
  }
  if (options.max_attempts < 1 || options.max_attempts > 5) {
    return absl::InvalidArgumentError("ClientOptions.max_attempts must be in 1..5");
  }
  for (const std::string& endpoint : options.endpoints) {
    if (endpoint.empty()) return absl::InvalidArgumentError("an endpoint is empty");
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs;
    ssl.pem_cert_chain = options.tls_client_cert;
    ssl.pem_private_key = options.tls_client_key;
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_mb * 1024 * 1024);
  args.SetMaxSendMessageSize(options.max_message_mb * 1024 * 1024);
  absl::StatusOr<std::string> target = BalancedTarget(options.endpoints);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments balanced_args = args;
  balanced_args.SetServiceConfigJSON(ServiceConfig(options.max_attempts));
  if (options.tls && options.endpoints.size() > 1) {
    // The certificate names the host the user wrote, not the resolved address.
    const std::string first = options.endpoints.front();
    balanced_args.SetSslTargetNameOverride(first.substr(0, first.rfind(':')));
  }
  auto impl = std::make_unique<Impl>();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(*target, creds, balanced_args);
  impl->stubs.push_back(inference::GRPCInferenceService::NewStub(channel));
  impl->health.push_back(grpc::health::v1::Health::NewStub(channel));
  // Control calls go to each replica on purpose (see control.cc): a channel
  // of their own per endpoint.
  for (const std::string& endpoint : options.endpoints) {
    impl->control.push_back(v1::Control::NewStub(grpc::CreateCustomChannel(endpoint, creds, args)));
  }
  impl->options = std::move(options);
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::BuildRequest(absl::string_view model, const std::vector<Tensor>& inputs, const InferOptions& options,
                          inference::ModelInferRequest* request) {
  request->set_model_name(std::string(model));
  request->set_model_version(options.model_version);
  request->set_id(options.request_id);
  for (const auto& [key, value] : options.parameters) {
    (*request->mutable_parameters())[key].set_string_param(value);
  }
  if (options.timeout_us > 0) (*request->mutable_parameters())["timeout_us"].set_int64_param(options.timeout_us);
  for (const Tensor& t : inputs) {
    auto* in = request->add_inputs();
    in->set_name(t.name);
    in->set_datatype(t.datatype);
    for (int64_t d : t.shape) in->add_shape(d);
    request->add_raw_input_contents(t.data);
  }
  for (const std::string& name : options.outputs) request->add_outputs()->set_name(name);
}

absl::StatusOr<InferResult> Client::Infer(absl::string_view model, const std::vector<Tensor>& inputs,
                                          const InferOptions& options) {
  inference::ModelInferRequest request;
  BuildRequest(model, inputs, options, &request);
  inference::ModelInferResponse response;
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, options.deadline);
  for (const auto& [key, value] : options.metadata) ctx.AddMetadata(key, value);
  const grpc::Status status = impl_->stubs[impl_->Pick()]->ModelInfer(&ctx, request, &response);
  if (!status.ok()) return FromGrpc(status);
  return ToResult(response);
}

void Client::InferAsync(absl::string_view model, const std::vector<Tensor>& inputs, const InferOptions& options,
                        std::function<void(absl::StatusOr<InferResult>)> done) {
  struct Call {
    grpc::ClientContext ctx;
    inference::ModelInferRequest request;
    inference::ModelInferResponse response;
    std::function<void(absl::StatusOr<InferResult>)> done;
  };
  auto* call = new Call;  // owned by the completion callback below
  BuildRequest(model, inputs, options, &call->request);
  call->done = std::move(done);
  impl_->Prepare(&call->ctx, options.deadline);
  for (const auto& [key, value] : options.metadata) call->ctx.AddMetadata(key, value);
  Impl* impl = impl_.get();
  impl->async_in_flight.fetch_add(1);
  impl->stubs[impl->Pick()]->async()->ModelInfer(
      &call->ctx, &call->request, &call->response, [call, impl](grpc::Status status) {
        std::unique_ptr<Call> owned(call);
        absl::StatusOr<InferResult> result = status.ok() ? ToResult(owned->response) : FromGrpc(status);
        auto done = std::move(owned->done);
        owned.reset();  // the call's context and messages go before the caller is told
        done(std::move(result));
        impl->async_in_flight.fetch_sub(1);  // the last touch of the client
      });
}

absl::StatusOr<bool> Client::ServerLive() {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  inference::ServerLiveResponse resp;
  const grpc::Status s = impl_->stubs[impl_->Pick()]->ServerLive(&ctx, {}, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.live();
}

absl::StatusOr<bool> Client::ServerReady() {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  inference::ServerReadyResponse resp;
  const grpc::Status s = impl_->stubs[impl_->Pick()]->ServerReady(&ctx, {}, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.ready();
}

absl::StatusOr<bool> Client::ModelReady(absl::string_view model, absl::string_view version) {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  inference::ModelReadyRequest req;
  req.set_name(std::string(model));
  req.set_version(std::string(version));
  inference::ModelReadyResponse resp;
  const grpc::Status s = impl_->stubs[impl_->Pick()]->ModelReady(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp.ready();
}

absl::StatusOr<ServerMetadata> Client::GetServerMetadata() {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  inference::ServerMetadataResponse resp;
  const grpc::Status s = impl_->stubs[impl_->Pick()]->ServerMetadata(&ctx, {}, &resp);
  if (!s.ok()) return FromGrpc(s);
  return ServerMetadata{resp.name(), resp.version(), {resp.extensions().begin(), resp.extensions().end()}};
}

absl::StatusOr<ModelMetadata> Client::GetModelMetadata(absl::string_view model, absl::string_view version) {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  inference::ModelMetadataRequest req;
  req.set_name(std::string(model));
  req.set_version(std::string(version));
  inference::ModelMetadataResponse resp;
  const grpc::Status s = impl_->stubs[impl_->Pick()]->ModelMetadata(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  ModelMetadata m{resp.name(), {resp.versions().begin(), resp.versions().end()}, resp.platform(), {}, {}};
  for (const auto& t : resp.inputs()) m.inputs.push_back(ToInfo(t));
  for (const auto& t : resp.outputs()) m.outputs.push_back(ToInfo(t));
  return m;
}

absl::StatusOr<HealthStatus> Client::Health(absl::string_view service) {
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = impl_->health[impl_->Pick()]->Check(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  switch (resp.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING: return HealthStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING: return HealthStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN: return HealthStatus::kServiceUnknown;
    default: return HealthStatus::kUnknown;
  }
}

}  // namespace dytserve
