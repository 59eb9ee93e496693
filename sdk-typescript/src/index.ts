// @taskloom/sdk: the typed client, the worker, and the generated messages.

export { createClient } from "./client.js";
export type {
  ClientOptions,
  RawClients,
  TaskloomClient,
  TlsOptions,
} from "./client.js";
export { BackendsClient, HooksClient, InfoClient, WorkersClient } from "./client.js";
export { ChainsClient, loadChain } from "./chains.js";
export { AuditClient, KeysClient, NamespacesClient, QueuesClient, ReplicasClient } from "./operations.js";
export type { AuditFilter, CreateKeyOptions, NamespaceOptions } from "./operations.js";
export type { ChainInput, EtagOption, PageOptions, RequestIdOption } from "./chains.js";
export { AnswerText, RunsClient, isTerminal } from "./runs.js";
export type {
  ExecuteOptions,
  ListRunsOptions,
  StartRunOptions,
  WaitOptions,
  WatchOptions,
} from "./runs.js";
export { SDK_VERSION, TaskFailure, Worker } from "./worker.js";
export type {
  ShutdownOptions,
  TaskHandler,
  WorkerLogger,
  WorkerOptions,
  WorkerTask,
} from "./worker.js";
export type { BackoffOptions } from "./backoff.js";
export type { RetryOptions } from "./services.js";
export { fromValue, toValue } from "./values.js";
export type { PlainValue, ValueInput } from "./values.js";
export {
  Aborted,
  AlreadyExists,
  Cancelled,
  Code,
  DataLoss,
  DeadlineExceeded,
  FailedPrecondition,
  Internal,
  InvalidArgument,
  NotFound,
  OutOfRange,
  PermissionDenied,
  ResourceExhausted,
  TaskloomError,
  Unauthenticated,
  Unavailable,
  Unimplemented,
  Unknown,
  toTaskloomError,
} from "./errors.js";
export type { BadRequestViolation, PreconditionViolation, RawErrorDetail } from "./errors.js";

// Generated messages, enums, schemas and service descriptors (build
// requests with `create(XSchema, {...})` from @bufbuild/protobuf).
export * from "./gen/taskloom/v1/common_pb.js";
export * from "./gen/taskloom/v1/chain_pb.js";
export * from "./gen/taskloom/v1/run_pb.js";
export * from "./gen/taskloom/v1/worker_pb.js";
export * from "./gen/taskloom/v1/backend_pb.js";
export * from "./gen/taskloom/v1/hook_pb.js";
export * from "./gen/taskloom/v1/info_pb.js";
export * from "./gen/taskloom/v1/operations_pb.js";
export * from "./gen/taskloom/v1/audit_pb.js";
export * from "./gen/taskloom/v1/security_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
export * from "./gen/google/rpc/status_pb.js";
