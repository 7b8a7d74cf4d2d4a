#include "server/http/rest_service.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/http/json_infer.h"

namespace dytserve {
namespace {

using nlohmann::json;

HttpResponse Json(const json& doc, int code = 200) {
  HttpResponse r;
  r.code = code;
  r.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse FromStatus(const absl::Status& status) { return HttpServer::Error(HttpCode(status), status.message()); }

// A protobuf message as JSON with its proto field names (Triton's HTTP
// endpoint answers config and statistics this way).
HttpResponse ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  HttpResponse r;
  if (!google::protobuf::util::MessageToJsonString(message, &r.body, options).ok()) {
    return HttpServer::Error(500, "cannot render the answer as JSON");
  }
  return r;
}

absl::Status CheckToken(const TokenAuth& auth, const HttpRequest& request) {
  const std::string value = request.header("Authorization");
  return auth.CheckAuthorization(value.empty() ? std::nullopt : std::optional<absl::string_view>(value));
}

json TensorsJson(const google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>& tensors) {
  json out = json::array();
  for (const auto& t : tensors) {
    json shape = json::array();
    for (int64_t d : t.shape()) shape.push_back(d);
    out.push_back({{"name", t.name()}, {"datatype", t.datatype()}, {"shape", shape}});
  }
  return out;
}

}  // namespace

int HttpCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

RestService::~RestService() {
  absl::MutexLock lock(&threads_mu_);
  for (std::thread& t : threads_) t.join();
}

void RestService::Background(std::function<absl::Status()> work, HttpRespond respond) {
  absl::MutexLock lock(&threads_mu_);
  threads_.emplace_back([work = std::move(work), respond = std::move(respond)] {
    const absl::Status s = work();
    respond(s.ok() ? Json(json::object()) : FromStatus(s));
  });
}

void RestService::Handle(const HttpRequest& request, HttpRespond respond) {
  const std::string& method = request.method;
  std::vector<std::string> parts = absl::StrSplit(request.path, '/', absl::SkipEmpty());
  if (parts.empty() || parts[0] != "v2") {
    return respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path, " (routes begin /v2)")));
  }
  auto method_is = [&](std::initializer_list<const char*> allowed) {
    for (const char* m : allowed) {
      if (method == m) return true;
    }
    respond(HttpServer::Error(405, absl::StrCat(method, " ", request.path, ": not allowed here")));
    return false;
  };

  // Probes need no token.
  if (parts.size() == 3 && parts[1] == "health" && (parts[2] == "live" || parts[2] == "ready")) {
    if (!method_is({"GET"})) return;
    const bool ok = parts[2] == "live" ? engine_->Live() : engine_->Ready();
    return respond(ok ? Json(json::object()) : HttpServer::Error(503, absl::StrCat("the server is not ", parts[2])));
  }

  if (parts.size() == 2 && parts[1] == "feedback") {
    if (!method_is({"POST"})) return;
    if (absl::Status s = CheckToken(*feedback_auth_, request); !s.ok()) return respond(FromStatus(s));
    return Feedback(request, std::move(respond));
  }
  if (parts.size() >= 2 && parts[1] == "repository") {
    if (absl::Status s = CheckToken(*admin_auth_, request); !s.ok()) return respond(FromStatus(s));
    if (parts.size() == 3 && parts[2] == "index") {
      if (!method_is({"GET", "POST"})) return;
      bool ready_only = false;
      if (!request.body.empty()) {
        json body = json::parse(request.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) return respond(HttpServer::Error(400, "body: must be a JSON object"));
        if (auto it = body.find("ready"); it != body.end()) {
          if (!it->is_boolean()) return respond(HttpServer::Error(400, "ready: must be true or false"));
          ready_only = it->get<bool>();
        }
      }
      const inference::RepositoryIndexResponse index = engine_->RepositoryIndex(ready_only);
      json models = json::array();
      for (const auto& m : index.models()) {
        json entry = {{"name", m.name()}, {"state", m.state()}};
        if (!m.version().empty()) entry["version"] = m.version();
        if (!m.reason().empty()) entry["reason"] = m.reason();
        models.push_back(std::move(entry));
      }
      return respond(Json(models));
    }
    if (parts.size() == 5 && parts[2] == "models" && (parts[4] == "load" || parts[4] == "unload")) {
      if (!method_is({"POST"})) return;
      if (!request.body.empty()) {
        json body = json::parse(request.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) return respond(HttpServer::Error(400, "body: must be a JSON object"));
        if (auto it = body.find("parameters"); it != body.end() && !it->empty()) {
          std::vector<std::string> names;
          for (const auto& [key, value] : it->items()) {
            if (key != "unload_dependents") names.push_back(key);
          }
          if (!names.empty()) {
            return respond(HttpServer::Error(
                400, absl::StrCat("parameters not supported: ", absl::StrJoin(names, ", "),
                                  " (dytserve loads configs and files from its repository only)")));
          }
        }
      }
      const std::string name = parts[3];
      if (parts[4] == "load") {
        return Background(
            [this, name] {
              absl::StatusOr<std::vector<int64_t>> v = engine_->LoadModel(name, drain_timeout_);
              if (v.ok() && on_models_changed_) on_models_changed_();
              return v.status();
            },
            std::move(respond));
      }
      return Background(
          [this, name] {
            absl::Status s = engine_->UnloadModel(name, drain_timeout_);
            if (s.ok() && on_models_changed_) on_models_changed_();
            return s;
          },
          std::move(respond));
    }
    return respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path)));
  }

  if (absl::Status s = CheckToken(*inference_auth_, request); !s.ok()) {
    return respond(FromStatus(s));
  }
  if (parts.size() == 1) {
    if (!method_is({"GET"})) return;
    return respond(ProtoJson(engine_->ServerMetadata()));
  }
  if (parts[1] != "models") return respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path)));
  if (parts.size() == 3 && parts[2] == "stats") {  // every model
    if (!method_is({"GET"})) return;
    absl::StatusOr<inference::ModelStatisticsResponse> stats = engine_->ModelStatistics("", "");
    return respond(stats.ok() ? ProtoJson(*stats) : FromStatus(stats.status()));
  }
  if (parts.size() < 3) return respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path)));
  const std::string model = parts[2];
  std::string version;
  size_t next = 3;
  if (parts.size() >= 5 && parts[3] == "versions") {
    version = parts[4];
    next = 5;
  }
  const std::string action = parts.size() > next ? parts[next] : "";
  if (parts.size() > next + 1) return respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path)));

  if (action.empty()) {
    if (!method_is({"GET"})) return;
    absl::StatusOr<inference::ModelMetadataResponse> m = engine_->ModelMetadata(model, version);
    if (!m.ok()) return respond(FromStatus(m.status()));
    json versions = json::array();
    for (const std::string& v : m->versions()) versions.push_back(v);
    return respond(Json({{"name", m->name()},
                         {"versions", versions},
                         {"platform", m->platform()},
                         {"inputs", TensorsJson(m->inputs())},
                         {"outputs", TensorsJson(m->outputs())}}));
  }
  if (action == "ready") {
    if (!method_is({"GET"})) return;
    if (engine_->ModelReady(model, version)) return respond(Json(json::object()));
    return respond(HttpServer::Error(
        503, absl::StrCat("model '", model, "'", version.empty() ? "" : absl::StrCat(" version ", version), " is not ready")));
  }
  if (action == "config") {
    if (!method_is({"GET"})) return;
    absl::StatusOr<inference::ModelConfigResponse> c = engine_->ModelConfig(model, version);
    return respond(c.ok() ? ProtoJson(c->config()) : FromStatus(c.status()));
  }
  if (action == "stats") {
    if (!method_is({"GET"})) return;
    absl::StatusOr<inference::ModelStatisticsResponse> s = engine_->ModelStatistics(model, version);
    return respond(s.ok() ? ProtoJson(*s) : FromStatus(s.status()));
  }
  if (action == "infer") {
    if (!method_is({"POST"})) return;
    return Infer(request, model, version, std::move(respond));
  }
  respond(HttpServer::Error(404, absl::StrCat("no route ", method, " ", request.path)));
}

void RestService::Infer(const HttpRequest& request, const std::string& model, const std::string& version,
                        HttpRespond respond) {
  absl::StatusOr<JsonInferRequest> parsed =
      ParseInferRequest(request.body, request.header("Inference-Header-Content-Length"), model, version);
  if (!parsed.ok()) return respond(FromStatus(parsed.status()));
  // Lives until the engine has answered.
  struct Call {
    JsonInferRequest asked;
    inference::ModelInferResponse response;
  };
  auto call = std::make_shared<Call>();
  call->asked = *std::move(parsed);
  InferCall infer;
  infer.routing_key = request.header("X-Routing-Key");
  infer.done = [call, respond](absl::Status status) {
    if (!status.ok()) return respond(FromStatus(status));
    JsonInferResponse rendered = RenderInferResponse(call->response, call->asked);
    HttpResponse r;
    r.body = std::move(rendered.body);
    if (rendered.binary) {
      r.content_type = "application/octet-stream";
      r.headers.emplace_back("Inference-Header-Content-Length", std::to_string(rendered.json_length));
    }
    respond(std::move(r));
  };
  absl::Status submitted = engine_->Submit(call->asked.request, &call->response, std::move(infer));
  if (!submitted.ok()) respond(FromStatus(submitted));
}

void RestService::Feedback(const HttpRequest& request, HttpRespond respond) {
  const json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) return respond(HttpServer::Error(400, "body: must be a JSON object"));
  auto id = body.find("id");
  if (id == body.end() || !id->is_string()) return respond(HttpServer::Error(400, "id: must be a string"));
  Outcome outcome;
  int given = 0;
  for (const auto& [key, value] : body.items()) {
    if (key == "id") continue;
    if (key == "label") {
      if (!value.is_number_integer()) return respond(HttpServer::Error(400, "label: must be an integer"));
      outcome.kind = Outcome::Kind::kLabel;
      outcome.label = value.get<int64_t>();
    } else if (key == "reward" || key == "value") {
      if (!value.is_number()) return respond(HttpServer::Error(400, absl::StrCat(key, ": must be a number")));
      outcome.kind = key == "reward" ? Outcome::Kind::kReward : Outcome::Kind::kValue;
      outcome.number = value.get<double>();
    } else {
      return respond(HttpServer::Error(400, absl::StrCat(key, ": unknown field (id, label, reward, value)")));
    }
    ++given;
  }
  if (given != 1) return respond(HttpServer::Error(400, "outcome: give exactly one of label, reward or value"));
  absl::StatusOr<FeedbackResult> result = engine_->Feedback(id->get<std::string>(), outcome);
  if (!result.ok()) return respond(FromStatus(result.status()));
  respond(Json(json{{"recorded", *result == FeedbackResult::kRecorded}}));
}

}  // namespace dytserve
