import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, EmptySchema, Timestamp, Value as Value$1 } from "@bufbuild/protobuf/wkt";
import type { Chain } from "./chain_pb.js";
import type { TokenUsage, Value, ValueType } from "./common_pb.js";
import type { JsonObject, Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/run.proto.
 */
export declare const file_taskloom_v1_run: GenFile;
/**
 * A run of one chain version.
 *
 * @generated from message taskloom.v1.Run
 */
export type Run = Message<"taskloom.v1.Run"> & {
    /**
     * Server-assigned id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * The chain id.
     *
     * @generated from field: string chain_id = 2;
     */
    chainId: string;
    /**
     * The pinned chain version.
     *
     * @generated from field: int64 chain_version = 3;
     */
    chainVersion: bigint;
    /**
     * Current state.
     *
     * @generated from field: taskloom.v1.RunStatus status = 4;
     */
    status: RunStatus;
    /**
     * The typed input.
     *
     * @generated from field: taskloom.v1.Value input = 5;
     */
    input?: Value | undefined;
    /**
     * The output, once `SUCCEEDED`.
     *
     * @generated from field: taskloom.v1.Value output = 6;
     */
    output?: Value | undefined;
    /**
     * The error, once `FAILED`.
     *
     * @generated from field: taskloom.v1.RunError error = 7;
     */
    error?: RunError | undefined;
    /**
     * Labels given at start.
     *
     * @generated from field: map<string, string> labels = 8;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * Higher runs are dispatched first.
     *
     * @generated from field: int32 priority = 9;
     */
    priority: number;
    /**
     * Tenant the run is accounted to.
     *
     * @generated from field: string tenant = 10;
     */
    tenant: string;
    /**
     * Tasks currently ready or executing.
     *
     * @generated from field: repeated string active_tasks = 11;
     */
    activeTasks: string[];
    /**
     * Set while `WAITING_INPUT`.
     *
     * @generated from field: taskloom.v1.InputRequest input_request = 12;
     */
    inputRequest?: InputRequest | undefined;
    /**
     * Tokens spent so far.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 13;
     */
    usage?: TokenUsage | undefined;
    /**
     * Task executions so far (bounded by `max_steps`).
     *
     * @generated from field: int32 steps = 14;
     */
    steps: number;
    /**
     * Sequence number of the last stored event.
     *
     * @generated from field: int64 last_event_seq = 15;
     */
    lastEventSeq: bigint;
    /**
     * The idempotency key the run was started with.
     *
     * @generated from field: string request_id = 16;
     */
    requestId: string;
    /**
     * The W3C trace context of the run's span: its trace continues the
     * `traceparent` sent with `StartRun`, if any.
     *
     * @generated from field: string traceparent = 17;
     */
    traceparent: string;
    /**
     * When the run was accepted.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 20;
     */
    createTime?: Timestamp | undefined;
    /**
     * When its first task was dispatched.
     *
     * @generated from field: google.protobuf.Timestamp start_time = 21;
     */
    startTime?: Timestamp | undefined;
    /**
     * When it ended.
     *
     * @generated from field: google.protobuf.Timestamp end_time = 22;
     */
    endTime?: Timestamp | undefined;
    /**
     * When it last changed.
     *
     * @generated from field: google.protobuf.Timestamp update_time = 23;
     */
    updateTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Run.
 * Use `create(RunSchema)` to create a new message.
 */
export declare const RunSchema: GenMessage<Run>;
/**
 * Why a run or task failed.
 *
 * @generated from message taskloom.v1.RunError
 */
export type RunError = Message<"taskloom.v1.RunError"> & {
    /**
     * Human-readable message.
     *
     * @generated from field: string message = 1;
     */
    message: string;
    /**
     * The task that failed, if any.
     *
     * @generated from field: string task_id = 2;
     */
    taskId: string;
    /**
     * Machine-readable reason, e.g. `MAX_STEPS_EXCEEDED`, `NO_BRANCH_MATCHED`,
     * `TASK_FAILED`, `TIMEOUT`.
     *
     * @generated from field: string reason = 3;
     */
    reason: string;
};
/**
 * Describes the message taskloom.v1.RunError.
 * Use `create(RunErrorSchema)` to create a new message.
 */
export declare const RunErrorSchema: GenMessage<RunError>;
/**
 * What a `human_input` task asks for.
 *
 * @generated from message taskloom.v1.InputRequest
 */
export type InputRequest = Message<"taskloom.v1.InputRequest"> & {
    /**
     * The waiting task.
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
    /**
     * The rendered prompt shown to the human.
     *
     * @generated from field: string prompt = 2;
     */
    prompt: string;
};
/**
 * Describes the message taskloom.v1.InputRequest.
 * Use `create(InputRequestSchema)` to create a new message.
 */
export declare const InputRequestSchema: GenMessage<InputRequest>;
/**
 * Start a run.
 *
 * @generated from message taskloom.v1.StartRunRequest
 */
export type StartRunRequest = Message<"taskloom.v1.StartRunRequest"> & {
    /**
     * Stored chain id (or use `chain`).
     *
     * @generated from field: string chain_id = 1;
     */
    chainId: string;
    /**
     * Pinned version; 0 means the latest.
     *
     * @generated from field: int64 chain_version = 2;
     */
    chainVersion: bigint;
    /**
     * An inline chain, stored as a new version when it differs from the stored
     * one with the same id.
     *
     * @generated from field: taskloom.v1.Chain chain = 3;
     */
    chain?: Chain | undefined;
    /**
     * The run's input.
     *
     * @generated from oneof taskloom.v1.StartRunRequest.run_input
     */
    runInput: {
        /**
         * Input as JSON, interpreted by `input_type` (contenox style).
         *
         * @generated from field: google.protobuf.Value input = 4;
         */
        value: Value$1;
        case: "input";
    } | {
        /**
         * Input as a typed value.
         *
         * @generated from field: taskloom.v1.Value typed_input = 5;
         */
        value: Value;
        case: "typedInput";
    } | {
        case: undefined;
        value?: undefined;
    };
    /**
     * For `input`: `string`/`text`, `number`, `integer`, `boolean`, `json`,
     * `chat_history` or `vector`. Empty infers from the JSON.
     *
     * @generated from field: string input_type = 6;
     */
    inputType: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 7;
     */
    requestId: string;
    /**
     * Labels, at most 64.
     *
     * @generated from field: map<string, string> labels = 8;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * Dispatch priority, -100..100.
     *
     * @generated from field: int32 priority = 9;
     */
    priority: number;
    /**
     * Tenant for accounting and concurrency caps.
     *
     * @generated from field: string tenant = 10;
     */
    tenant: string;
};
/**
 * Describes the message taskloom.v1.StartRunRequest.
 * Use `create(StartRunRequestSchema)` to create a new message.
 */
export declare const StartRunRequestSchema: GenMessage<StartRunRequest>;
/**
 * Start a run and wait for it.
 *
 * @generated from message taskloom.v1.ExecuteChainRequest
 */
export type ExecuteChainRequest = Message<"taskloom.v1.ExecuteChainRequest"> & {
    /**
     * Stored chain id (or use `chain`).
     *
     * @generated from field: string chain_id = 1;
     */
    chainId: string;
    /**
     * Pinned version; 0 means the latest.
     *
     * @generated from field: int64 chain_version = 2;
     */
    chainVersion: bigint;
    /**
     * An inline chain (contenox style).
     *
     * @generated from field: taskloom.v1.Chain chain = 3;
     */
    chain?: Chain | undefined;
    /**
     * The run's input.
     *
     * @generated from oneof taskloom.v1.ExecuteChainRequest.run_input
     */
    runInput: {
        /**
         * Input as JSON, interpreted by `input_type` (contenox style).
         *
         * @generated from field: google.protobuf.Value input = 4;
         */
        value: Value$1;
        case: "input";
    } | {
        /**
         * Input as a typed value.
         *
         * @generated from field: taskloom.v1.Value typed_input = 5;
         */
        value: Value;
        case: "typedInput";
    } | {
        case: undefined;
        value?: undefined;
    };
    /**
     * As in StartRunRequest.
     *
     * @generated from field: string input_type = 6;
     */
    inputType: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 7;
     */
    requestId: string;
    /**
     * Labels, at most 64.
     *
     * @generated from field: map<string, string> labels = 8;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * Dispatch priority, -100..100.
     *
     * @generated from field: int32 priority = 9;
     */
    priority: number;
    /**
     * Tenant for accounting and concurrency caps.
     *
     * @generated from field: string tenant = 10;
     */
    tenant: string;
    /**
     * How long to wait; the run goes on after the deadline. Default 5 minutes.
     *
     * @generated from field: google.protobuf.Duration wait_timeout = 11;
     */
    waitTimeout?: Duration | undefined;
};
/**
 * Describes the message taskloom.v1.ExecuteChainRequest.
 * Use `create(ExecuteChainRequestSchema)` to create a new message.
 */
export declare const ExecuteChainRequestSchema: GenMessage<ExecuteChainRequest>;
/**
 * Result of ExecuteChain.
 *
 * @generated from message taskloom.v1.ExecuteChainResponse
 */
export type ExecuteChainResponse = Message<"taskloom.v1.ExecuteChainResponse"> & {
    /**
     * The run as it ended.
     *
     * @generated from field: taskloom.v1.Run run = 1;
     */
    run?: Run | undefined;
    /**
     * The output.
     *
     * @generated from field: taskloom.v1.Value output = 2;
     */
    output?: Value | undefined;
    /**
     * The output's type.
     *
     * @generated from field: taskloom.v1.ValueType output_type = 3;
     */
    outputType: ValueType;
    /**
     * Every task execution in order.
     *
     * @generated from field: repeated taskloom.v1.TaskTrace trace = 4;
     */
    trace: TaskTrace[];
};
/**
 * Describes the message taskloom.v1.ExecuteChainResponse.
 * Use `create(ExecuteChainResponseSchema)` to create a new message.
 */
export declare const ExecuteChainResponseSchema: GenMessage<ExecuteChainResponse>;
/**
 * One task execution in a run's trace.
 *
 * @generated from message taskloom.v1.TaskTrace
 */
export type TaskTrace = Message<"taskloom.v1.TaskTrace"> & {
    /**
     * The task.
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
    /**
     * Its handler.
     *
     * @generated from field: string handler = 2;
     */
    handler: string;
    /**
     * Type of the value the task received.
     *
     * @generated from field: taskloom.v1.ValueType input_type = 3;
     */
    inputType: ValueType;
    /**
     * Type of the value it produced.
     *
     * @generated from field: taskloom.v1.ValueType output_type = 4;
     */
    outputType: ValueType;
    /**
     * The transition taken: a task id, several for a fan-out, or `end`.
     *
     * @generated from field: repeated string next = 5;
     */
    next: string[];
    /**
     * Wall time of the successful (or last) attempt.
     *
     * @generated from field: google.protobuf.Duration duration = 6;
     */
    duration?: Duration | undefined;
    /**
     * Attempts made.
     *
     * @generated from field: int32 attempts = 7;
     */
    attempts: number;
    /**
     * Errors of failed attempts.
     *
     * @generated from field: repeated string errors = 8;
     */
    errors: string[];
    /**
     * The backend that served a model task.
     *
     * @generated from field: string backend_id = 9;
     */
    backendId: string;
    /**
     * The model that served a model task.
     *
     * @generated from field: string model = 10;
     */
    model: string;
    /**
     * Tokens spent.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 11;
     */
    usage?: TokenUsage | undefined;
    /**
     * When the task started.
     *
     * @generated from field: google.protobuf.Timestamp start_time = 12;
     */
    startTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.TaskTrace.
 * Use `create(TaskTraceSchema)` to create a new message.
 */
export declare const TaskTraceSchema: GenMessage<TaskTrace>;
/**
 * Request for RunService.GetRun.
 *
 * @generated from message taskloom.v1.GetRunRequest
 */
export type GetRunRequest = Message<"taskloom.v1.GetRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.GetRunRequest.
 * Use `create(GetRunRequestSchema)` to create a new message.
 */
export declare const GetRunRequestSchema: GenMessage<GetRunRequest>;
/**
 * Request for RunService.ListRuns.
 *
 * @generated from message taskloom.v1.ListRunsRequest
 */
export type ListRunsRequest = Message<"taskloom.v1.ListRunsRequest"> & {
    /**
     * Maximum results (default 50, at most 1000).
     *
     * @generated from field: int32 page_size = 1;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 2;
     */
    pageToken: string;
    /**
     * Only runs in these states.
     *
     * @generated from field: repeated taskloom.v1.RunStatus statuses = 3;
     */
    statuses: RunStatus[];
    /**
     * Only runs of this chain.
     *
     * @generated from field: string chain_id = 4;
     */
    chainId: string;
    /**
     * Only runs carrying all of these labels.
     *
     * @generated from field: map<string, string> labels = 5;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * Only runs of this tenant.
     *
     * @generated from field: string tenant = 6;
     */
    tenant: string;
    /**
     * Only runs created at or after this time.
     *
     * @generated from field: google.protobuf.Timestamp create_time_after = 7;
     */
    createTimeAfter?: Timestamp | undefined;
    /**
     * Only runs created before this time.
     *
     * @generated from field: google.protobuf.Timestamp create_time_before = 8;
     */
    createTimeBefore?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.ListRunsRequest.
 * Use `create(ListRunsRequestSchema)` to create a new message.
 */
export declare const ListRunsRequestSchema: GenMessage<ListRunsRequest>;
/**
 * Response of RunService.ListRuns.
 *
 * @generated from message taskloom.v1.ListRunsResponse
 */
export type ListRunsResponse = Message<"taskloom.v1.ListRunsResponse"> & {
    /**
     * The runs, newest first.
     *
     * @generated from field: repeated taskloom.v1.Run runs = 1;
     */
    runs: Run[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListRunsResponse.
 * Use `create(ListRunsResponseSchema)` to create a new message.
 */
export declare const ListRunsResponseSchema: GenMessage<ListRunsResponse>;
/**
 * Request for RunService.WatchRun.
 *
 * @generated from message taskloom.v1.WatchRunRequest
 */
export type WatchRunRequest = Message<"taskloom.v1.WatchRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string run_id = 1;
     */
    runId: string;
    /**
     * Deliver events with a sequence number greater than this (0 = all).
     *
     * @generated from field: int64 after_seq = 2;
     */
    afterSeq: bigint;
    /**
     * Also deliver live token deltas of streaming model calls. A model call
     * already streaming when the watch joins is caught up first: one
     * `TOKEN_DELTA` with `catch_up` set holds its text so far.
     *
     * @generated from field: bool include_deltas = 3;
     */
    includeDeltas: boolean;
};
/**
 * Describes the message taskloom.v1.WatchRunRequest.
 * Use `create(WatchRunRequestSchema)` to create a new message.
 */
export declare const WatchRunRequestSchema: GenMessage<WatchRunRequest>;
/**
 * Request for RunService.StartAndWatchRun.
 *
 * @generated from message taskloom.v1.StartAndWatchRunRequest
 */
export type StartAndWatchRunRequest = Message<"taskloom.v1.StartAndWatchRunRequest"> & {
    /**
     * The run to start. A `request_id` already used starts nothing: the run it
     * started is watched.
     *
     * @generated from field: taskloom.v1.StartRunRequest start = 1;
     */
    start?: StartRunRequest | undefined;
    /**
     * Deliver events with a sequence number greater than this (0 = all): a
     * client retrying with the same `request_id` resumes where it was.
     *
     * @generated from field: int64 after_seq = 2;
     */
    afterSeq: bigint;
    /**
     * Also deliver token deltas, as WatchRun's `include_deltas`.
     *
     * @generated from field: bool include_deltas = 3;
     */
    includeDeltas: boolean;
};
/**
 * Describes the message taskloom.v1.StartAndWatchRunRequest.
 * Use `create(StartAndWatchRunRequestSchema)` to create a new message.
 */
export declare const StartAndWatchRunRequestSchema: GenMessage<StartAndWatchRunRequest>;
/**
 * Something that happened in a run.
 *
 * @generated from message taskloom.v1.RunEvent
 */
export type RunEvent = Message<"taskloom.v1.RunEvent"> & {
    /**
     * The run.
     *
     * @generated from field: string run_id = 1;
     */
    runId: string;
    /**
     * Per-run sequence number, from 1, without gaps. Token deltas carry the
     * sequence number of the last stored event.
     *
     * @generated from field: int64 seq = 2;
     */
    seq: bigint;
    /**
     * What happened.
     *
     * @generated from field: taskloom.v1.RunEventType type = 3;
     */
    type: RunEventType;
    /**
     * When.
     *
     * @generated from field: google.protobuf.Timestamp time = 4;
     */
    time?: Timestamp | undefined;
    /**
     * The task concerned, if any.
     *
     * @generated from field: string task_id = 5;
     */
    taskId: string;
    /**
     * The attempt concerned, if any.
     *
     * @generated from field: string attempt_id = 6;
     */
    attemptId: string;
    /**
     * Attempt number, from 1.
     *
     * @generated from field: int32 attempt = 7;
     */
    attempt: number;
    /**
     * A task's or the run's output.
     *
     * @generated from field: taskloom.v1.Value output = 8;
     */
    output?: Value | undefined;
    /**
     * Human-readable detail (error message, print text, progress note).
     *
     * @generated from field: string message = 9;
     */
    message: string;
    /**
     * Token text for `TOKEN_DELTA`.
     *
     * @generated from field: string delta = 10;
     */
    delta: string;
    /**
     * Tokens spent by the attempt.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 11;
     */
    usage?: TokenUsage | undefined;
    /**
     * Structured detail (transition targets, progress payload, backend, ...).
     *
     * @generated from field: google.protobuf.Struct data = 12;
     */
    data?: JsonObject | undefined;
    /**
     * For `TOKEN_DELTA`: how much of the attempt's streamed text comes before
     * `delta`, in UTF-8 bytes. The delta covers bytes
     * [delta_offset, delta_offset + UTF-8 length of `delta`) of the attempt's
     * text; a watch delivers each attempt's text in order, without gap or
     * repetition.
     *
     * @generated from field: int64 delta_offset = 13;
     */
    deltaOffset: bigint;
    /**
     * For `TOKEN_DELTA`: this delta catches a watcher up that joined while the
     * model call was streaming. It holds the attempt's whole text so far
     * (`delta_offset` is 0); live deltas follow it.
     *
     * @generated from field: bool catch_up = 14;
     */
    catchUp: boolean;
};
/**
 * Describes the message taskloom.v1.RunEvent.
 * Use `create(RunEventSchema)` to create a new message.
 */
export declare const RunEventSchema: GenMessage<RunEvent>;
/**
 * Request for RunService.ListRunEvents.
 *
 * @generated from message taskloom.v1.ListRunEventsRequest
 */
export type ListRunEventsRequest = Message<"taskloom.v1.ListRunEventsRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string run_id = 1;
     */
    runId: string;
    /**
     * Return events with a sequence number greater than this.
     *
     * @generated from field: int64 after_seq = 2;
     */
    afterSeq: bigint;
    /**
     * Maximum results (default 100, at most 1000).
     *
     * @generated from field: int32 page_size = 3;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 4;
     */
    pageToken: string;
};
/**
 * Describes the message taskloom.v1.ListRunEventsRequest.
 * Use `create(ListRunEventsRequestSchema)` to create a new message.
 */
export declare const ListRunEventsRequestSchema: GenMessage<ListRunEventsRequest>;
/**
 * Response of RunService.ListRunEvents.
 *
 * @generated from message taskloom.v1.ListRunEventsResponse
 */
export type ListRunEventsResponse = Message<"taskloom.v1.ListRunEventsResponse"> & {
    /**
     * The events in sequence order.
     *
     * @generated from field: repeated taskloom.v1.RunEvent events = 1;
     */
    events: RunEvent[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListRunEventsResponse.
 * Use `create(ListRunEventsResponseSchema)` to create a new message.
 */
export declare const ListRunEventsResponseSchema: GenMessage<ListRunEventsResponse>;
/**
 * One attempt at one task.
 *
 * @generated from message taskloom.v1.TaskAttempt
 */
export type TaskAttempt = Message<"taskloom.v1.TaskAttempt"> & {
    /**
     * Attempt id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * The run.
     *
     * @generated from field: string run_id = 2;
     */
    runId: string;
    /**
     * The task.
     *
     * @generated from field: string task_id = 3;
     */
    taskId: string;
    /**
     * Attempt number, from 1.
     *
     * @generated from field: int32 attempt = 4;
     */
    attempt: number;
    /**
     * State.
     *
     * @generated from field: taskloom.v1.AttemptStatus status = 5;
     */
    status: AttemptStatus;
    /**
     * The queue it was dispatched on (`internal` for built-in handlers).
     *
     * @generated from field: string queue = 6;
     */
    queue: string;
    /**
     * Not leased before this time.
     *
     * @generated from field: google.protobuf.Timestamp available_time = 7;
     */
    availableTime?: Timestamp | undefined;
    /**
     * Who holds or held the lease.
     *
     * @generated from field: string lease_owner = 8;
     */
    leaseOwner: string;
    /**
     * When the lease expires.
     *
     * @generated from field: google.protobuf.Timestamp lease_expire_time = 9;
     */
    leaseExpireTime?: Timestamp | undefined;
    /**
     * Lease expiries so far.
     *
     * @generated from field: int32 lease_expiries = 10;
     */
    leaseExpiries: number;
    /**
     * The output, if it succeeded.
     *
     * @generated from field: taskloom.v1.Value output = 11;
     */
    output?: Value | undefined;
    /**
     * The error, if it failed.
     *
     * @generated from field: string error = 12;
     */
    error: string;
    /**
     * True when it failed for good with no retry left.
     *
     * @generated from field: bool dead_lettered = 13;
     */
    deadLettered: boolean;
    /**
     * The backend that served it.
     *
     * @generated from field: string backend_id = 14;
     */
    backendId: string;
    /**
     * The model that served it.
     *
     * @generated from field: string model = 15;
     */
    model: string;
    /**
     * Tokens spent.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 16;
     */
    usage?: TokenUsage | undefined;
    /**
     * Created.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 17;
     */
    createTime?: Timestamp | undefined;
    /**
     * Leased.
     *
     * @generated from field: google.protobuf.Timestamp start_time = 18;
     */
    startTime?: Timestamp | undefined;
    /**
     * Ended.
     *
     * @generated from field: google.protobuf.Timestamp end_time = 19;
     */
    endTime?: Timestamp | undefined;
    /**
     * What the task was given.
     *
     * @generated from field: taskloom.v1.Value input = 20;
     */
    input?: Value | undefined;
    /**
     * The task's prompt template as rendered for this attempt; empty for
     * tasks without one.
     *
     * @generated from field: string prompt = 21;
     */
    prompt: string;
};
/**
 * Describes the message taskloom.v1.TaskAttempt.
 * Use `create(TaskAttemptSchema)` to create a new message.
 */
export declare const TaskAttemptSchema: GenMessage<TaskAttempt>;
/**
 * Request for RunService.ListRunAttempts.
 *
 * @generated from message taskloom.v1.ListRunAttemptsRequest
 */
export type ListRunAttemptsRequest = Message<"taskloom.v1.ListRunAttemptsRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string run_id = 1;
     */
    runId: string;
    /**
     * Maximum results (default 100, at most 1000).
     *
     * @generated from field: int32 page_size = 2;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 3;
     */
    pageToken: string;
};
/**
 * Describes the message taskloom.v1.ListRunAttemptsRequest.
 * Use `create(ListRunAttemptsRequestSchema)` to create a new message.
 */
export declare const ListRunAttemptsRequestSchema: GenMessage<ListRunAttemptsRequest>;
/**
 * Response of RunService.ListRunAttempts.
 *
 * @generated from message taskloom.v1.ListRunAttemptsResponse
 */
export type ListRunAttemptsResponse = Message<"taskloom.v1.ListRunAttemptsResponse"> & {
    /**
     * The attempts in creation order.
     *
     * @generated from field: repeated taskloom.v1.TaskAttempt attempts = 1;
     */
    attempts: TaskAttempt[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListRunAttemptsResponse.
 * Use `create(ListRunAttemptsResponseSchema)` to create a new message.
 */
export declare const ListRunAttemptsResponseSchema: GenMessage<ListRunAttemptsResponse>;
/**
 * Request for RunService.CancelRun.
 *
 * @generated from message taskloom.v1.CancelRunRequest
 */
export type CancelRunRequest = Message<"taskloom.v1.CancelRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Why, recorded in the run's events.
     *
     * @generated from field: string reason = 2;
     */
    reason: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 3;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CancelRunRequest.
 * Use `create(CancelRunRequestSchema)` to create a new message.
 */
export declare const CancelRunRequestSchema: GenMessage<CancelRunRequest>;
/**
 * Request for RunService.PauseRun.
 *
 * @generated from message taskloom.v1.PauseRunRequest
 */
export type PauseRunRequest = Message<"taskloom.v1.PauseRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Also cancel attempts that are executing; they are re-run on resume.
     *
     * @generated from field: bool cancel_running = 2;
     */
    cancelRunning: boolean;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 3;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.PauseRunRequest.
 * Use `create(PauseRunRequestSchema)` to create a new message.
 */
export declare const PauseRunRequestSchema: GenMessage<PauseRunRequest>;
/**
 * Request for RunService.ResumeRun.
 *
 * @generated from message taskloom.v1.ResumeRunRequest
 */
export type ResumeRunRequest = Message<"taskloom.v1.ResumeRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.ResumeRunRequest.
 * Use `create(ResumeRunRequestSchema)` to create a new message.
 */
export declare const ResumeRunRequestSchema: GenMessage<ResumeRunRequest>;
/**
 * Request for RunService.SubmitInput.
 *
 * @generated from message taskloom.v1.SubmitInputRequest
 */
export type SubmitInputRequest = Message<"taskloom.v1.SubmitInputRequest"> & {
    /**
     * The run waiting for input.
     *
     * @generated from field: string run_id = 1;
     */
    runId: string;
    /**
     * The `human_input` task being answered.
     *
     * @generated from field: string task_id = 2;
     */
    taskId: string;
    /**
     * The answer.
     *
     * @generated from oneof taskloom.v1.SubmitInputRequest.answer
     */
    answer: {
        /**
         * The answer as JSON (text when a string).
         *
         * @generated from field: google.protobuf.Value input = 3;
         */
        value: Value$1;
        case: "input";
    } | {
        /**
         * The answer as a typed value.
         *
         * @generated from field: taskloom.v1.Value typed_input = 4;
         */
        value: Value;
        case: "typedInput";
    } | {
        case: undefined;
        value?: undefined;
    };
    /**
     * Idempotency key (AIP-155): the same id returns the same answer.
     *
     * @generated from field: string request_id = 5;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.SubmitInputRequest.
 * Use `create(SubmitInputRequestSchema)` to create a new message.
 */
export declare const SubmitInputRequestSchema: GenMessage<SubmitInputRequest>;
/**
 * Request for RunService.RetryRun.
 *
 * @generated from message taskloom.v1.RetryRunRequest
 */
export type RetryRunRequest = Message<"taskloom.v1.RetryRunRequest"> & {
    /**
     * A failed run.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.RetryRunRequest.
 * Use `create(RetryRunRequestSchema)` to create a new message.
 */
export declare const RetryRunRequestSchema: GenMessage<RetryRunRequest>;
/**
 * Request for RunService.ReplayRun.
 *
 * @generated from message taskloom.v1.ReplayRunRequest
 */
export type ReplayRunRequest = Message<"taskloom.v1.ReplayRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.ReplayRunRequest.
 * Use `create(ReplayRunRequestSchema)` to create a new message.
 */
export declare const ReplayRunRequestSchema: GenMessage<ReplayRunRequest>;
/**
 * One difference between a replay and the recorded run.
 *
 * @generated from message taskloom.v1.Divergence
 */
export type Divergence = Message<"taskloom.v1.Divergence"> & {
    /**
     * Step index, from 0.
     *
     * @generated from field: int32 step = 1;
     */
    step: number;
    /**
     * The task at that step.
     *
     * @generated from field: string task_id = 2;
     */
    taskId: string;
    /**
     * What the record says.
     *
     * @generated from field: string recorded = 3;
     */
    recorded: string;
    /**
     * What the replay derived.
     *
     * @generated from field: string replayed = 4;
     */
    replayed: string;
};
/**
 * Describes the message taskloom.v1.Divergence.
 * Use `create(DivergenceSchema)` to create a new message.
 */
export declare const DivergenceSchema: GenMessage<Divergence>;
/**
 * Result of RunService.ReplayRun.
 *
 * @generated from message taskloom.v1.ReplayRunResponse
 */
export type ReplayRunResponse = Message<"taskloom.v1.ReplayRunResponse"> & {
    /**
     * Fingerprint of the replayed path (hex SHA-256 over chain version, input,
     * and each step's task, output and transition).
     *
     * @generated from field: string fingerprint = 1;
     */
    fingerprint: string;
    /**
     * Task ids in the replayed order.
     *
     * @generated from field: repeated string path = 2;
     */
    path: string[];
    /**
     * True when the replay differs from the record.
     *
     * @generated from field: bool diverged = 3;
     */
    diverged: boolean;
    /**
     * Every difference found.
     *
     * @generated from field: repeated taskloom.v1.Divergence divergences = 4;
     */
    divergences: Divergence[];
};
/**
 * Describes the message taskloom.v1.ReplayRunResponse.
 * Use `create(ReplayRunResponseSchema)` to create a new message.
 */
export declare const ReplayRunResponseSchema: GenMessage<ReplayRunResponse>;
/**
 * Request for RunService.DeleteRun.
 *
 * @generated from message taskloom.v1.DeleteRunRequest
 */
export type DeleteRunRequest = Message<"taskloom.v1.DeleteRunRequest"> & {
    /**
     * The run id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.DeleteRunRequest.
 * Use `create(DeleteRunRequestSchema)` to create a new message.
 */
export declare const DeleteRunRequestSchema: GenMessage<DeleteRunRequest>;
/**
 * The state of a run.
 *
 * @generated from enum taskloom.v1.RunStatus
 */
export declare enum RunStatus {
    /**
     * Not set.
     *
     * @generated from enum value: RUN_STATUS_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Accepted, no task dispatched yet.
     *
     * @generated from enum value: RUN_STATUS_QUEUED = 1;
     */
    QUEUED = 1,
    /**
     * Tasks are being dispatched and executed.
     *
     * @generated from enum value: RUN_STATUS_RUNNING = 2;
     */
    RUNNING = 2,
    /**
     * Waiting for `SubmitInput`.
     *
     * @generated from enum value: RUN_STATUS_WAITING_INPUT = 3;
     */
    WAITING_INPUT = 3,
    /**
     * Paused by `PauseRun`.
     *
     * @generated from enum value: RUN_STATUS_PAUSED = 4;
     */
    PAUSED = 4,
    /**
     * Ended with an output.
     *
     * @generated from enum value: RUN_STATUS_SUCCEEDED = 5;
     */
    SUCCEEDED = 5,
    /**
     * Ended with an error.
     *
     * @generated from enum value: RUN_STATUS_FAILED = 6;
     */
    FAILED = 6,
    /**
     * Ended by `CancelRun`.
     *
     * @generated from enum value: RUN_STATUS_CANCELLED = 7;
     */
    CANCELLED = 7
}
/**
 * Describes the enum taskloom.v1.RunStatus.
 */
export declare const RunStatusSchema: GenEnum<RunStatus>;
/**
 * The state of one task attempt.
 *
 * @generated from enum taskloom.v1.AttemptStatus
 */
export declare enum AttemptStatus {
    /**
     * Not set.
     *
     * @generated from enum value: ATTEMPT_STATUS_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Waiting to be leased (possibly not before `available_time`).
     *
     * @generated from enum value: ATTEMPT_STATUS_READY = 1;
     */
    READY = 1,
    /**
     * Leased by an executor or worker.
     *
     * @generated from enum value: ATTEMPT_STATUS_LEASED = 2;
     */
    LEASED = 2,
    /**
     * Completed with an output.
     *
     * @generated from enum value: ATTEMPT_STATUS_SUCCEEDED = 3;
     */
    SUCCEEDED = 3,
    /**
     * Failed.
     *
     * @generated from enum value: ATTEMPT_STATUS_FAILED = 4;
     */
    FAILED = 4,
    /**
     * Cancelled with its run.
     *
     * @generated from enum value: ATTEMPT_STATUS_CANCELLED = 5;
     */
    CANCELLED = 5,
    /**
     * Exceeded its timeout.
     *
     * @generated from enum value: ATTEMPT_STATUS_TIMED_OUT = 6;
     */
    TIMED_OUT = 6
}
/**
 * Describes the enum taskloom.v1.AttemptStatus.
 */
export declare const AttemptStatusSchema: GenEnum<AttemptStatus>;
/**
 * Kinds of run events.
 *
 * @generated from enum taskloom.v1.RunEventType
 */
export declare enum RunEventType {
    /**
     * Not set.
     *
     * @generated from enum value: RUN_EVENT_TYPE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * The run was accepted.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_CREATED = 1;
     */
    RUN_CREATED = 1,
    /**
     * The run's first task was dispatched.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_STARTED = 2;
     */
    RUN_STARTED = 2,
    /**
     * A task attempt became ready.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_READY = 3;
     */
    TASK_READY = 3,
    /**
     * A task attempt was leased.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_STARTED = 4;
     */
    TASK_STARTED = 4,
    /**
     * A worker reported progress.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_PROGRESS = 5;
     */
    TASK_PROGRESS = 5,
    /**
     * A task attempt succeeded.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_SUCCEEDED = 6;
     */
    TASK_SUCCEEDED = 6,
    /**
     * A task attempt failed.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_FAILED = 7;
     */
    TASK_FAILED = 7,
    /**
     * A retry was scheduled.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_RETRY_SCHEDULED = 8;
     */
    TASK_RETRY_SCHEDULED = 8,
    /**
     * A task attempt timed out.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_TIMED_OUT = 9;
     */
    TASK_TIMED_OUT = 9,
    /**
     * A lease expired and the attempt returned to ready.
     *
     * @generated from enum value: RUN_EVENT_TYPE_LEASE_EXPIRED = 10;
     */
    LEASE_EXPIRED = 10,
    /**
     * A transition was taken.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TRANSITION = 11;
     */
    TRANSITION = 11,
    /**
     * Live token delta of a streaming model call (never stored).
     *
     * @generated from enum value: RUN_EVENT_TYPE_TOKEN_DELTA = 12;
     */
    TOKEN_DELTA = 12,
    /**
     * The run waits for human input.
     *
     * @generated from enum value: RUN_EVENT_TYPE_INPUT_REQUESTED = 13;
     */
    INPUT_REQUESTED = 13,
    /**
     * Human input arrived.
     *
     * @generated from enum value: RUN_EVENT_TYPE_INPUT_RECEIVED = 14;
     */
    INPUT_RECEIVED = 14,
    /**
     * The run was paused.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_PAUSED = 15;
     */
    RUN_PAUSED = 15,
    /**
     * The run was resumed.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_RESUMED = 16;
     */
    RUN_RESUMED = 16,
    /**
     * A `print` or `alert_on_match` message.
     *
     * @generated from enum value: RUN_EVENT_TYPE_MESSAGE = 17;
     */
    MESSAGE = 17,
    /**
     * A failed run was retried.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_RETRIED = 18;
     */
    RUN_RETRIED = 18,
    /**
     * Terminal: the run succeeded.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_SUCCEEDED = 19;
     */
    RUN_SUCCEEDED = 19,
    /**
     * Terminal: the run failed.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_FAILED = 20;
     */
    RUN_FAILED = 20,
    /**
     * Terminal: the run was cancelled.
     *
     * @generated from enum value: RUN_EVENT_TYPE_RUN_CANCELLED = 21;
     */
    RUN_CANCELLED = 21,
    /**
     * A task attempt waits (`READY`) for capacity under a backend or model
     * limit, or a provider's `Retry-After`; `message` names what held it. Said
     * once per attempt and limit, however often it is tried again.
     *
     * @generated from enum value: RUN_EVENT_TYPE_TASK_THROTTLED = 22;
     */
    TASK_THROTTLED = 22
}
/**
 * Describes the enum taskloom.v1.RunEventType.
 */
export declare const RunEventTypeSchema: GenEnum<RunEventType>;
/**
 * RunService starts, observes and steers durable runs of chains.
 *
 * @generated from service taskloom.v1.RunService
 */
export declare const RunService: GenService<{
    /**
     * Starts a run of a stored chain (latest or pinned version) or of an inline
     * chain. Idempotent by `request_id`.
     *
     * @generated from rpc taskloom.v1.RunService.StartRun
     */
    startRun: {
        methodKind: "unary";
        input: typeof StartRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Starts a run and waits for it to end; returns its output and a per-task
     * trace (contenox `POST /tasks`).
     *
     * @generated from rpc taskloom.v1.RunService.ExecuteChain
     */
    executeChain: {
        methodKind: "unary";
        input: typeof ExecuteChainRequestSchema;
        output: typeof ExecuteChainResponseSchema;
    };
    /**
     * Returns a run.
     *
     * @generated from rpc taskloom.v1.RunService.GetRun
     */
    getRun: {
        methodKind: "unary";
        input: typeof GetRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Lists runs, newest first, with filters.
     *
     * @generated from rpc taskloom.v1.RunService.ListRuns
     */
    listRuns: {
        methodKind: "unary";
        input: typeof ListRunsRequestSchema;
        output: typeof ListRunsResponseSchema;
    };
    /**
     * Streams a run's events after `after_seq`, then live ones, and ends after
     * the terminal event.
     *
     * @generated from rpc taskloom.v1.RunService.WatchRun
     */
    watchRun: {
        methodKind: "server_streaming";
        input: typeof WatchRunRequestSchema;
        output: typeof RunEventSchema;
    };
    /**
     * Starts a run (as StartRun, idempotent by `start.request_id`) and streams
     * its events from the first, as WatchRun: the watch is open before the run
     * exists, so no event or token delta can be missed.
     *
     * @generated from rpc taskloom.v1.RunService.StartAndWatchRun
     */
    startAndWatchRun: {
        methodKind: "server_streaming";
        input: typeof StartAndWatchRunRequestSchema;
        output: typeof RunEventSchema;
    };
    /**
     * Lists a run's stored events in sequence order.
     *
     * @generated from rpc taskloom.v1.RunService.ListRunEvents
     */
    listRunEvents: {
        methodKind: "unary";
        input: typeof ListRunEventsRequestSchema;
        output: typeof ListRunEventsResponseSchema;
    };
    /**
     * Lists a run's task attempts in creation order.
     *
     * @generated from rpc taskloom.v1.RunService.ListRunAttempts
     */
    listRunAttempts: {
        methodKind: "unary";
        input: typeof ListRunAttemptsRequestSchema;
        output: typeof ListRunAttemptsResponseSchema;
    };
    /**
     * Cancels a run. Cancel wins over a racing completion.
     *
     * @generated from rpc taskloom.v1.RunService.CancelRun
     */
    cancelRun: {
        methodKind: "unary";
        input: typeof CancelRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Stops dispatching new tasks of a run.
     *
     * @generated from rpc taskloom.v1.RunService.PauseRun
     */
    pauseRun: {
        methodKind: "unary";
        input: typeof PauseRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Resumes a paused run.
     *
     * @generated from rpc taskloom.v1.RunService.ResumeRun
     */
    resumeRun: {
        methodKind: "unary";
        input: typeof ResumeRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Answers a `human_input` task the run is waiting on. Idempotent by
     * `request_id`.
     *
     * @generated from rpc taskloom.v1.RunService.SubmitInput
     */
    submitInput: {
        methodKind: "unary";
        input: typeof SubmitInputRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Continues a failed run from the task that failed.
     *
     * @generated from rpc taskloom.v1.RunService.RetryRun
     */
    retryRun: {
        methodKind: "unary";
        input: typeof RetryRunRequestSchema;
        output: typeof RunSchema;
    };
    /**
     * Re-derives a run's path from its recorded outputs without calling any
     * model, hook or worker, and reports whether it diverges.
     *
     * @generated from rpc taskloom.v1.RunService.ReplayRun
     */
    replayRun: {
        methodKind: "unary";
        input: typeof ReplayRunRequestSchema;
        output: typeof ReplayRunResponseSchema;
    };
    /**
     * Deletes a finished run with its attempts and events.
     * `FAILED_PRECONDITION` while the run has not finished.
     *
     * @generated from rpc taskloom.v1.RunService.DeleteRun
     */
    deleteRun: {
        methodKind: "unary";
        input: typeof DeleteRunRequestSchema;
        output: typeof EmptySchema;
    };
}>;
//# sourceMappingURL=run_pb.d.ts.map