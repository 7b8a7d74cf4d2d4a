// Client's dytserve.v1.Control calls (experiments, repository). Changes go to every endpoint in turn,
// so replicas behind one client agree on their experiments; reads ask the
// first endpoint.
#include <cctype>

#include "absl/strings/str_cat.h"
#include "dytserve/client.h"
#include "src/client_impl.h"

namespace dytserve {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

absl::Status ToProto(const Experiment& e, v1::Experiment* out) {
  out->set_name(e.name);
  v1::Policy::Kind kind;
  if (!v1::Policy::Kind_Parse(Upper(e.policy.kind), &kind)) {
    return absl::InvalidArgumentError(absl::StrCat("policy '", e.policy.kind, "': fixed, thompson or epsilon_greedy"));
  }
  v1::Policy::Reward reward;
  if (!v1::Policy::Reward_Parse(Upper(e.policy.reward), &reward)) {
    return absl::InvalidArgumentError(absl::StrCat("reward '", e.policy.reward, "': feedback or slo"));
  }
  v1::Policy* p = out->mutable_policy();
  p->set_kind(kind);
  p->set_reward(reward);
  p->set_slo_ms(e.policy.slo_ms);
  p->set_epsilon(e.policy.epsilon);
  p->set_min_share(e.policy.min_share);
  for (const ExperimentGuardrail& g : e.guardrails) {
    v1::Guardrail::Kind gk;
    if (!v1::Guardrail::Kind_Parse(Upper(g.kind), &gk)) {
      return absl::InvalidArgumentError(absl::StrCat("guardrail '", g.kind, "': error_ratio, p99_latency or accuracy"));
    }
    v1::Guardrail* r = out->add_guardrails();
    r->set_kind(gk);
    r->set_p_value(g.p_value);
    r->set_p99_ms(g.p99_ms);
    r->set_margin(g.margin);
    r->set_min_samples(g.min_samples);
  }
  for (const ExperimentArm& arm : e.arms) {
    v1::Arm* a = out->add_arms();
    a->set_name(arm.name);
    a->set_model(arm.model);
    a->set_version(arm.version);
    a->set_weight(arm.weight);
    a->set_shadow(arm.shadow);
    a->set_shadow_fraction(arm.shadow_fraction);
  }
  return absl::OkStatus();
}

Experiment FromProto(const v1::Experiment& e) {
  Experiment out{e.name(), {}, {}, {}};
  for (const v1::Arm& a : e.arms()) {
    out.arms.push_back({a.name(), a.model(), a.version(), a.weight(), a.shadow(), a.shadow_fraction()});
  }
  out.policy = {Lower(v1::Policy::Kind_Name(e.policy().kind())), Lower(v1::Policy::Reward_Name(e.policy().reward())),
                e.policy().slo_ms(), e.policy().epsilon(), e.policy().min_share()};
  for (const v1::Guardrail& g : e.guardrails()) {
    out.guardrails.push_back(
        {Lower(v1::Guardrail::Kind_Name(g.kind())), g.p_value(), g.p99_ms(), g.margin(), g.min_samples()});
  }
  return out;
}

// Runs `call` on every control stub; the first failure, naming its endpoint
// when there are several, is returned.
template <typename Call>
absl::Status OnEvery(Client::Impl& impl, Call call) {
  for (size_t i = 0; i < impl.control.size(); ++i) {
    grpc::ClientContext ctx;
    impl.Prepare(&ctx, absl::ZeroDuration());
    absl::Status s = FromGrpc(call(*impl.control[i], &ctx));
    if (!s.ok()) {
      if (impl.control.size() == 1) return s;
      return absl::Status(s.code(), absl::StrCat(impl.options.endpoints[i], ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Client::ResumeArm(absl::string_view experiment, absl::string_view arm) {
  v1::ResumeArmRequest req;
  req.set_experiment(std::string(experiment));
  req.set_arm(std::string(arm));
  v1::ResumeArmResponse resp;
  return OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.ResumeArm(ctx, req, &resp);
  });
}

absl::StatusOr<std::vector<ArmStatus>> Client::GetExperimentState(absl::string_view experiment) {
  v1::GetExperimentStateRequest req;
  req.set_name(std::string(experiment));
  v1::ExperimentState resp;
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  if (absl::Status s = FromGrpc(impl_->control[0]->GetExperimentState(&ctx, req, &resp)); !s.ok()) return s;
  std::vector<ArmStatus> out;
  for (const v1::ArmState& a : resp.arms()) {
    out.push_back({a.arm(), a.share(), a.tripped(), a.requests(), a.errors(), a.correct(), a.labels(),
                   a.reward_successes(), a.reward_trials()});
  }
  return out;
}

absl::StatusOr<bool> Client::Feedback(absl::string_view id, const FeedbackOutcome& outcome) {
  v1::FeedbackRequest req;
  req.set_id(std::string(id));
  const int given = outcome.label.has_value() + outcome.reward.has_value() + outcome.value.has_value();
  if (given != 1) return absl::InvalidArgumentError("Feedback: set exactly one of label, reward or value");
  if (outcome.label) req.set_label(*outcome.label);
  if (outcome.reward) req.set_reward(*outcome.reward);
  if (outcome.value) req.set_value(*outcome.value);
  for (size_t i = 0; i < impl_->control.size(); ++i) {
    grpc::ClientContext ctx;
    impl_->Prepare(&ctx, absl::ZeroDuration());
    v1::FeedbackResponse resp;
    absl::Status s = FromGrpc(impl_->control[i]->Feedback(&ctx, req, &resp));
    if (!s.ok()) {
      if (impl_->control.size() == 1) return s;
      return absl::Status(s.code(), absl::StrCat(impl_->options.endpoints[i], ": ", s.message()));
    }
    if (resp.recorded()) return true;
  }
  return false;
}

absl::StatusOr<Experiment> Client::CreateExperiment(const Experiment& experiment) {
  v1::CreateExperimentRequest req;
  if (absl::Status s = ToProto(experiment, req.mutable_experiment()); !s.ok()) return s;
  v1::Experiment resp;
  absl::Status s = OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.CreateExperiment(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  return FromProto(resp);
}

absl::StatusOr<Experiment> Client::UpdateExperiment(const Experiment& experiment) {
  v1::UpdateExperimentRequest req;
  if (absl::Status s = ToProto(experiment, req.mutable_experiment()); !s.ok()) return s;
  v1::Experiment resp;
  absl::Status s = OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.UpdateExperiment(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  return FromProto(resp);
}

absl::Status Client::DeleteExperiment(absl::string_view name) {
  v1::DeleteExperimentRequest req;
  req.set_name(std::string(name));
  v1::DeleteExperimentResponse resp;
  return OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.DeleteExperiment(ctx, req, &resp);
  });
}

absl::StatusOr<Experiment> Client::GetExperiment(absl::string_view name) {
  v1::GetExperimentRequest req;
  req.set_name(std::string(name));
  v1::Experiment resp;
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  if (absl::Status s = FromGrpc(impl_->control.front()->GetExperiment(&ctx, req, &resp)); !s.ok()) return s;
  return FromProto(resp);
}

absl::StatusOr<std::vector<Experiment>> Client::ListExperiments() {
  v1::ExperimentList resp;
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  if (absl::Status s = FromGrpc(impl_->control.front()->ListExperiments(&ctx, {}, &resp)); !s.ok()) return s;
  std::vector<Experiment> out;
  for (const v1::Experiment& e : resp.experiments()) out.push_back(FromProto(e));
  return out;
}

absl::StatusOr<std::vector<RepositoryModel>> Client::RepositoryIndex() {
  v1::RepositoryIndexResponse resp;
  grpc::ClientContext ctx;
  impl_->Prepare(&ctx, absl::ZeroDuration());
  if (absl::Status s = FromGrpc(impl_->control.front()->RepositoryIndex(&ctx, {}, &resp)); !s.ok()) return s;
  std::vector<RepositoryModel> out;
  for (const auto& m : resp.models()) {
    out.push_back({m.name(), {m.versions().begin(), m.versions().end()}, m.state(), m.reason()});
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> Client::LoadModel(absl::string_view name) {
  v1::LoadModelRequest req;
  req.set_name(std::string(name));
  v1::LoadModelResponse resp;
  absl::Status s = OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.LoadModel(ctx, req, &resp);
  });
  if (!s.ok()) return s;
  return std::vector<int64_t>(resp.versions().begin(), resp.versions().end());
}

absl::Status Client::UnloadModel(absl::string_view name) {
  v1::UnloadModelRequest req;
  req.set_name(std::string(name));
  v1::UnloadModelResponse resp;
  return OnEvery(*impl_, [&](v1::Control::Stub& stub, grpc::ClientContext* ctx) {
    return stub.UnloadModel(ctx, req, &resp);
  });
}

}  // namespace dytserve
