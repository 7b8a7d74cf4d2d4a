// dytserve-cli: health, metadata and one-off inference against a dytserve (or
// any Open Inference Protocol) server. Prints JSON on stdout; errors go to
// stderr with a non-zero exit.
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/experiment_command.h"
#include "cli/format.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"

ABSL_FLAG(std::string, target, "127.0.0.1:8001", "Server address host:port; several, comma-separated, go round-robin");
ABSL_FLAG(int, timeout_ms, 30000, "Deadline of each call in milliseconds");
ABSL_FLAG(bool, tls, false, "Use TLS");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of the roots to trust (TLS); empty: the system's");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate file, for servers that require mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file of --tls_cert");
ABSL_FLAG(std::string, token_file, "", "File holding a bearer token sent with every call");
ABSL_FLAG(std::string, model_version, "", "Model version; empty: the server's choice");
ABSL_FLAG(std::string, input_json, "", "JSON file of inputs ({\"inputs\":[{name,datatype,shape,data}]})");
ABSL_FLAG(std::string, fill, "random", "Generated inputs: random or zeros");
ABSL_FLAG(int64_t, rows, 1, "Batch rows of generated inputs");
ABSL_FLAG(int64_t, seq_len, 8, "Size of other variable dims of generated inputs (sequence length)");
ABSL_FLAG(int64_t, int_high, 100, "Generated integers are drawn from [0, int_high)");
ABSL_FLAG(uint64_t, seed, 0, "Random seed of generated inputs");
ABSL_FLAG(int, top_k, 5, "Show rank-2 float outputs as the top-k classes per row; 0 prints values");
ABSL_FLAG(int, max_values, 64, "Most values printed per output");
ABSL_FLAG(std::string, routing_key, "", "infer: sticky routing key for an experiment (request parameter routing_key)");

namespace dytserve::cli {
namespace {

int Fail(absl::string_view message) {
  std::fprintf(stderr, "dytserve-cli: %s\n", std::string(message).c_str());
  return 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<std::unique_ptr<Client>> MakeClient() {
  ClientOptions options;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_target), ',', absl::SkipEmpty())) {
    options.endpoints.emplace_back(t);
  }
  if (absl::GetFlag(FLAGS_timeout_ms) <= 0) return absl::InvalidArgumentError("--timeout_ms must be positive");
  options.default_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  options.tls = absl::GetFlag(FLAGS_tls);
  if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
    absl::StatusOr<std::string> ca = ReadFile(absl::GetFlag(FLAGS_tls_ca));
    if (!ca.ok()) return ca.status();
    options.tls_root_certs = *ca;
  }
  if (absl::GetFlag(FLAGS_tls_cert).empty() != absl::GetFlag(FLAGS_tls_key).empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    absl::StatusOr<std::string> cert = ReadFile(absl::GetFlag(FLAGS_tls_cert));
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(absl::GetFlag(FLAGS_tls_key));
    if (!key.ok()) return key.status();
    options.tls_client_cert = *cert;
    options.tls_client_key = *key;
  }
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    absl::StatusOr<std::string> token = ReadFile(absl::GetFlag(FLAGS_token_file));
    if (!token.ok()) return token.status();
    options.bearer_token = std::string(absl::StripAsciiWhitespace(*token));
  }
  return Client::Create(std::move(options));
}

int Health(Client& client, const std::vector<std::string>& args) {
  const std::string service = args.empty() ? "" : args[0];
  absl::StatusOr<HealthStatus> health = client.Health(service);
  if (!health.ok()) return Fail(absl::StrCat("health of '", service, "': ", health.status().ToString()));
  std::string out = absl::StrCat("{\"service\":", JsonString(service), ",\"status\":",
                                 JsonString(HealthStatusName(*health)));
  if (service.empty()) {
    absl::StatusOr<bool> live = client.ServerLive();
    absl::StatusOr<bool> ready = client.ServerReady();
    if (!live.ok() || !ready.ok()) return Fail((live.ok() ? ready.status() : live.status()).ToString());
    absl::StrAppend(&out, ",\"live\":", *live ? "true" : "false", ",\"ready\":", *ready ? "true" : "false");
  } else {
    absl::StatusOr<bool> ready = client.ModelReady(service, absl::GetFlag(FLAGS_model_version));
    if (!ready.ok()) return Fail(ready.status().ToString());
    absl::StrAppend(&out, ",\"ready\":", *ready ? "true" : "false");
  }
  std::printf("%s}\n", out.c_str());
  return *health == HealthStatus::kServing ? 0 : 3;
}

int Metadata(Client& client, const std::vector<std::string>& args) {
  if (args.empty()) {
    absl::StatusOr<ServerMetadata> m = client.GetServerMetadata();
    if (!m.ok()) return Fail(m.status().ToString());
    std::printf("%s\n", ServerMetadataJson(*m).c_str());
    return 0;
  }
  absl::StatusOr<ModelMetadata> m = client.GetModelMetadata(args[0], absl::GetFlag(FLAGS_model_version));
  if (!m.ok()) return Fail(m.status().ToString());
  std::printf("%s\n", ModelMetadataJson(*m).c_str());
  return 0;
}

int Repository(Client& client, const std::vector<std::string>& args) {
  if (args.size() == 1 && args[0] == "index") {
    absl::StatusOr<std::vector<RepositoryModel>> index = client.RepositoryIndex();
    if (!index.ok()) return Fail(index.status().ToString());
    std::string out = "[";
    for (size_t i = 0; i < index->size(); ++i) {
      const RepositoryModel& m = (*index)[i];
      absl::StrAppend(&out, i ? "," : "", "{\"name\":", JsonString(m.name), ",\"versions\":[",
                      absl::StrJoin(m.versions, ","), "],\"state\":", JsonString(m.state),
                      ",\"reason\":", JsonString(m.reason), "}");
    }
    std::printf("%s]\n", out.c_str());
    return 0;
  }
  if (args.size() == 2 && args[0] == "load") {
    absl::StatusOr<std::vector<int64_t>> versions = client.LoadModel(args[1]);
    if (!versions.ok()) return Fail(versions.status().ToString());
    std::printf("{\"loaded\":%s,\"versions\":[%s]}\n", JsonString(args[1]).c_str(),
                absl::StrJoin(*versions, ",").c_str());
    return 0;
  }
  if (args.size() == 2 && args[0] == "unload") {
    absl::Status s = client.UnloadModel(args[1]);
    if (!s.ok()) return Fail(s.ToString());
    std::printf("{\"unloaded\":%s}\n", JsonString(args[1]).c_str());
    return 0;
  }
  return Fail("usage: dytserve-cli repository index | load MODEL | unload MODEL");
}

int Infer(Client& client, const std::vector<std::string>& args) {
  if (args.size() != 1) return Fail("usage: dytserve-cli infer MODEL [flags]");
  const std::string& model = args[0];
  std::vector<Tensor> inputs;
  if (!absl::GetFlag(FLAGS_input_json).empty()) {
    const std::string path = absl::GetFlag(FLAGS_input_json);
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return Fail(text.status().message());
    absl::StatusOr<std::vector<Tensor>> parsed = ParseInputsJson(*text, path);
    if (!parsed.ok()) return Fail(parsed.status().message());
    inputs = *std::move(parsed);
  } else {
    absl::StatusOr<ModelMetadata> metadata = client.GetModelMetadata(model, absl::GetFlag(FLAGS_model_version));
    if (!metadata.ok()) return Fail(metadata.status().ToString());
    GenerateOptions options;
    const std::string fill = absl::GetFlag(FLAGS_fill);
    if (fill != "random" && fill != "zeros") return Fail("--fill must be random or zeros");
    options.fill = fill == "zeros" ? GenerateOptions::Fill::kZeros : GenerateOptions::Fill::kRandom;
    options.rows = absl::GetFlag(FLAGS_rows);
    options.seq_len = absl::GetFlag(FLAGS_seq_len);
    options.int_high = absl::GetFlag(FLAGS_int_high);
    std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
    absl::StatusOr<std::vector<Tensor>> generated = GenerateInputs(*metadata, options, &rng);
    if (!generated.ok()) return Fail(generated.status().message());
    inputs = *std::move(generated);
  }
  InferOptions options;
  options.model_version = absl::GetFlag(FLAGS_model_version);
  if (!absl::GetFlag(FLAGS_routing_key).empty()) options.parameters["routing_key"] = absl::GetFlag(FLAGS_routing_key);
  absl::StatusOr<InferResult> result = client.Infer(model, inputs, options);
  if (!result.ok()) return Fail(result.status().ToString());
  std::printf("%s\n", InferResultJson(*result, absl::GetFlag(FLAGS_top_k), absl::GetFlag(FLAGS_max_values)).c_str());
  return 0;
}

}  // namespace
}  // namespace dytserve::cli

int main(int argc, char** argv) {
  // --help lists this program's flags (absl's default looks for a file named
  // after the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) { return absl::StrContains(path, "client/cli/"); };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "dytserve-cli COMMAND [ARGS] [--flags]\n"
      "  health [MODEL]     grpc.health.v1 status (and live/ready) of the server or a model\n"
      "  metadata [MODEL]   server or model metadata\n"
      "  infer MODEL        one inference with generated (--fill) or --input_json inputs\n"
      "  experiment ...     A/B experiments: list, get, create, update, weights, delete, report\n"
      "  repository ...     the model repository: index, load MODEL (or reload), unload MODEL");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) return dytserve::cli::Fail("missing command: health, metadata, infer or experiment (--help)");
  const std::string command = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  absl::StatusOr<std::unique_ptr<dytserve::Client>> client = dytserve::cli::MakeClient();
  if (!client.ok()) return dytserve::cli::Fail(client.status().message());
  if (command == "health") return dytserve::cli::Health(**client, args);
  if (command == "metadata") return dytserve::cli::Metadata(**client, args);
  if (command == "infer") return dytserve::cli::Infer(**client, args);
  if (command == "experiment") return dytserve::cli::ExperimentCommand(**client, args);
  if (command == "repository") return dytserve::cli::Repository(**client, args);
  return dytserve::cli::Fail(absl::StrCat("unknown command '", command, "' (health, metadata, infer, experiment, repository)"));
}
