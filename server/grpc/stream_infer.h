// ModelStreamInfer: Triton's bidirectional inference stream. Every request
// read from the stream is submitted to the engine at once (so requests of one
// stream share batches), and each answer is written back as it completes,
// carrying its request's id. An error is an answer too (error_message), and
// the stream lives on; the stream itself ends OK once the client has closed
// its side and every answer has been written.
#ifndef DYTSERVE_SERVER_GRPC_STREAM_INFER_H_
#define DYTSERVE_SERVER_GRPC_STREAM_INFER_H_

#include <grpcpp/grpcpp.h>

#include "inference/grpc_service.grpc.pb.h"
#include "server/core/inference_engine.h"

namespace dytserve {

// Deletes itself once gRPC is done with the call and no engine callback is
// outstanding. `engine` must outlive it (the server drains before the engine
// goes).
grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* StartStreamInfer(
    grpc::CallbackServerContext* ctx, InferenceEngine* engine, absl::Status auth);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_STREAM_INFER_H_
