import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Code } from "../../google/rpc/code_pb.js";
import type { Value } from "./common_pb.js";
import type { TaskAttempt } from "./run_pb.js";
import type { JsonObject, Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/worker.proto.
 */
export declare const file_taskloom_v1_worker: GenFile;
/**
 * A message from a worker.
 *
 * @generated from message taskloom.v1.WorkerMessage
 */
export type WorkerMessage = Message<"taskloom.v1.WorkerMessage"> & {
    /**
     * Exactly one is set.
     *
     * @generated from oneof taskloom.v1.WorkerMessage.msg
     */
    msg: {
        /**
         * First message on a stream.
         *
         * @generated from field: taskloom.v1.Hello hello = 1;
         */
        value: Hello;
        case: "hello";
    } | {
        /**
         * Lease renewal.
         *
         * @generated from field: taskloom.v1.Heartbeat heartbeat = 2;
         */
        value: Heartbeat;
        case: "heartbeat";
    } | {
        /**
         * Progress of a leased attempt.
         *
         * @generated from field: taskloom.v1.Progress progress = 3;
         */
        value: Progress;
        case: "progress";
    } | {
        /**
         * A finished attempt.
         *
         * @generated from field: taskloom.v1.Completion complete = 4;
         */
        value: Completion;
        case: "complete";
    } | {
        /**
         * A failed attempt.
         *
         * @generated from field: taskloom.v1.Failure fail = 5;
         */
        value: Failure;
        case: "fail";
    } | {
        /**
         * Change the number of free slots (0 stops offers, e.g. while draining).
         *
         * @generated from field: taskloom.v1.SetSlots set_slots = 6;
         */
        value: SetSlots;
        case: "setSlots";
    } | {
        /**
         * Give a lease back without spending a retry (graceful shutdown).
         *
         * @generated from field: taskloom.v1.Release release = 7;
         */
        value: Release;
        case: "release";
    } | {
        /**
         * Answer to a server `Ping`; required within the heartbeat timeout.
         *
         * @generated from field: taskloom.v1.Pong pong = 8;
         */
        value: Pong;
        case: "pong";
    } | {
        case: undefined;
        value?: undefined;
    };
};
/**
 * Describes the message taskloom.v1.WorkerMessage.
 * Use `create(WorkerMessageSchema)` to create a new message.
 */
export declare const WorkerMessageSchema: GenMessage<WorkerMessage>;
/**
 * Opens a worker session.
 *
 * @generated from message taskloom.v1.Hello
 */
export type Hello = Message<"taskloom.v1.Hello"> & {
    /**
     * Stable id of the worker process (survives reconnects).
     *
     * @generated from field: string worker_id = 1;
     */
    workerId: string;
    /**
     * Human name.
     *
     * @generated from field: string name = 2;
     */
    name: string;
    /**
     * Queues served; at least one.
     *
     * @generated from field: repeated string queues = 3;
     */
    queues: string[];
    /**
     * Attempts the worker runs at once; 0 receives nothing.
     *
     * @generated from field: int32 slots = 4;
     */
    slots: number;
    /**
     * Free-form labels.
     *
     * @generated from field: map<string, string> labels = 5;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * SDK name and version, e.g. `taskloom-python/0.1.0`.
     *
     * @generated from field: string sdk_version = 6;
     */
    sdkVersion: string;
    /**
     * Leases still held after a reconnect, to re-attach.
     *
     * @generated from field: repeated taskloom.v1.LeaseRef held_leases = 7;
     */
    heldLeases: LeaseRef[];
};
/**
 * Describes the message taskloom.v1.Hello.
 * Use `create(HelloSchema)` to create a new message.
 */
export declare const HelloSchema: GenMessage<Hello>;
/**
 * Names a lease.
 *
 * @generated from message taskloom.v1.LeaseRef
 */
export type LeaseRef = Message<"taskloom.v1.LeaseRef"> & {
    /**
     * The attempt.
     *
     * @generated from field: string attempt_id = 1;
     */
    attemptId: string;
    /**
     * The fencing token it was offered with.
     *
     * @generated from field: string lease_token = 2;
     */
    leaseToken: string;
};
/**
 * Describes the message taskloom.v1.LeaseRef.
 * Use `create(LeaseRefSchema)` to create a new message.
 */
export declare const LeaseRefSchema: GenMessage<LeaseRef>;
/**
 * Lease renewal from a worker. A heartbeat does not prove the worker reads
 * its stream: only a `Pong` does.
 *
 * @generated from message taskloom.v1.Heartbeat
 */
export type Heartbeat = Message<"taskloom.v1.Heartbeat"> & {
    /**
     * Attempts the worker is executing; their leases are extended. One that
     * is not the sender's under that token is answered with a `CancelLease`
     * and changes nothing.
     *
     * @generated from field: repeated taskloom.v1.LeaseRef active = 1;
     */
    active: LeaseRef[];
};
/**
 * Describes the message taskloom.v1.Heartbeat.
 * Use `create(HeartbeatSchema)` to create a new message.
 */
export declare const HeartbeatSchema: GenMessage<Heartbeat>;
/**
 * Progress of a leased attempt, shown to run watchers.
 *
 * @generated from message taskloom.v1.Progress
 */
export type Progress = Message<"taskloom.v1.Progress"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
    /**
     * Note.
     *
     * @generated from field: string message = 2;
     */
    message: string;
    /**
     * Optional structured payload.
     *
     * @generated from field: google.protobuf.Struct payload = 3;
     */
    payload?: JsonObject | undefined;
};
/**
 * Describes the message taskloom.v1.Progress.
 * Use `create(ProgressSchema)` to create a new message.
 */
export declare const ProgressSchema: GenMessage<Progress>;
/**
 * Completes a leased attempt.
 *
 * @generated from message taskloom.v1.Completion
 */
export type Completion = Message<"taskloom.v1.Completion"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
    /**
     * The output.
     *
     * @generated from field: taskloom.v1.Value output = 2;
     */
    output?: Value | undefined;
};
/**
 * Describes the message taskloom.v1.Completion.
 * Use `create(CompletionSchema)` to create a new message.
 */
export declare const CompletionSchema: GenMessage<Completion>;
/**
 * Fails a leased attempt.
 *
 * @generated from message taskloom.v1.Failure
 */
export type Failure = Message<"taskloom.v1.Failure"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
    /**
     * Error message.
     *
     * @generated from field: string message = 2;
     */
    message: string;
    /**
     * False makes the failure final regardless of the retry policy.
     *
     * @generated from field: bool retryable = 3;
     */
    retryable: boolean;
    /**
     * Overrides the policy's backoff for the next attempt.
     *
     * @generated from field: google.protobuf.Duration retry_delay = 4;
     */
    retryDelay?: Duration | undefined;
};
/**
 * Describes the message taskloom.v1.Failure.
 * Use `create(FailureSchema)` to create a new message.
 */
export declare const FailureSchema: GenMessage<Failure>;
/**
 * Sets the number of free slots.
 *
 * @generated from message taskloom.v1.SetSlots
 */
export type SetSlots = Message<"taskloom.v1.SetSlots"> & {
    /**
     * New slot count.
     *
     * @generated from field: int32 slots = 1;
     */
    slots: number;
};
/**
 * Describes the message taskloom.v1.SetSlots.
 * Use `create(SetSlotsSchema)` to create a new message.
 */
export declare const SetSlotsSchema: GenMessage<SetSlots>;
/**
 * Releases a lease.
 *
 * @generated from message taskloom.v1.Release
 */
export type Release = Message<"taskloom.v1.Release"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
};
/**
 * Describes the message taskloom.v1.Release.
 * Use `create(ReleaseSchema)` to create a new message.
 */
export declare const ReleaseSchema: GenMessage<Release>;
/**
 * Answer to a ping.
 *
 * @generated from message taskloom.v1.Pong
 */
export type Pong = Message<"taskloom.v1.Pong"> & {
    /**
     * The ping's nonce. It answers that ping and every earlier one.
     *
     * @generated from field: int64 nonce = 1;
     */
    nonce: bigint;
};
/**
 * Describes the message taskloom.v1.Pong.
 * Use `create(PongSchema)` to create a new message.
 */
export declare const PongSchema: GenMessage<Pong>;
/**
 * A message from the server.
 *
 * @generated from message taskloom.v1.ServerMessage
 */
export type ServerMessage = Message<"taskloom.v1.ServerMessage"> & {
    /**
     * Exactly one is set.
     *
     * @generated from oneof taskloom.v1.ServerMessage.msg
     */
    msg: {
        /**
         * Answer to `Hello`.
         *
         * @generated from field: taskloom.v1.Welcome welcome = 1;
         */
        value: Welcome;
        case: "welcome";
    } | {
        /**
         * A lease on an attempt to execute.
         *
         * @generated from field: taskloom.v1.LeaseOffer lease = 2;
         */
        value: LeaseOffer;
        case: "lease";
    } | {
        /**
         * Stop executing an attempt.
         *
         * @generated from field: taskloom.v1.CancelLease cancel = 3;
         */
        value: CancelLease;
        case: "cancel";
    } | {
        /**
         * Liveness probe: answer with a `Pong`.
         *
         * @generated from field: taskloom.v1.Ping ping = 4;
         */
        value: Ping;
        case: "ping";
    } | {
        /**
         * Outcome of a completion, failure or release sent on the stream.
         *
         * @generated from field: taskloom.v1.Ack ack = 5;
         */
        value: Ack;
        case: "ack";
    } | {
        case: undefined;
        value?: undefined;
    };
};
/**
 * Describes the message taskloom.v1.ServerMessage.
 * Use `create(ServerMessageSchema)` to create a new message.
 */
export declare const ServerMessageSchema: GenMessage<ServerMessage>;
/**
 * Opens a session.
 *
 * @generated from message taskloom.v1.Welcome
 */
export type Welcome = Message<"taskloom.v1.Welcome"> & {
    /**
     * The session id.
     *
     * @generated from field: string session_id = 1;
     */
    sessionId: string;
    /**
     * How often to heartbeat.
     *
     * @generated from field: google.protobuf.Duration heartbeat_interval = 2;
     */
    heartbeatInterval?: Duration | undefined;
    /**
     * How long a ping may go unanswered before the session is closed.
     *
     * @generated from field: google.protobuf.Duration heartbeat_timeout = 3;
     */
    heartbeatTimeout?: Duration | undefined;
    /**
     * Leases from `Hello.held_leases` that were re-attached.
     *
     * @generated from field: repeated taskloom.v1.LeaseRef reattached = 4;
     */
    reattached: LeaseRef[];
    /**
     * Leases from `Hello.held_leases` that are no longer valid.
     *
     * @generated from field: repeated taskloom.v1.LeaseRef rejected = 5;
     */
    rejected: LeaseRef[];
    /**
     * The replica serving the session.
     *
     * @generated from field: string replica = 6;
     */
    replica: string;
};
/**
 * Describes the message taskloom.v1.Welcome.
 * Use `create(WelcomeSchema)` to create a new message.
 */
export declare const WelcomeSchema: GenMessage<Welcome>;
/**
 * A lease on one task attempt.
 *
 * @generated from message taskloom.v1.LeaseOffer
 */
export type LeaseOffer = Message<"taskloom.v1.LeaseOffer"> & {
    /**
     * The attempt.
     *
     * @generated from field: string attempt_id = 1;
     */
    attemptId: string;
    /**
     * Fencing token: every completion, failure and extension must name it.
     *
     * @generated from field: string lease_token = 2;
     */
    leaseToken: string;
    /**
     * The task.
     *
     * @generated from field: string task_id = 3;
     */
    taskId: string;
    /**
     * The run.
     *
     * @generated from field: string run_id = 4;
     */
    runId: string;
    /**
     * The chain.
     *
     * @generated from field: string chain_id = 5;
     */
    chainId: string;
    /**
     * The chain version.
     *
     * @generated from field: int64 chain_version = 6;
     */
    chainVersion: bigint;
    /**
     * The task's handler (`worker` or `hook`).
     *
     * @generated from field: string handler = 7;
     */
    handler: string;
    /**
     * The queue.
     *
     * @generated from field: string queue = 8;
     */
    queue: string;
    /**
     * The task's typed input.
     *
     * @generated from field: taskloom.v1.Value input = 9;
     */
    input?: Value | undefined;
    /**
     * The rendered prompt template, if any.
     *
     * @generated from field: string prompt = 10;
     */
    prompt: string;
    /**
     * The task's system instruction, if any.
     *
     * @generated from field: string system_instruction = 11;
     */
    systemInstruction: string;
    /**
     * Hook arguments, rendered.
     *
     * @generated from field: map<string, string> args = 12;
     */
    args: {
        [key: string]: string;
    };
    /**
     * The lease expires unless extended by heartbeats before this.
     *
     * @generated from field: google.protobuf.Timestamp lease_expire_time = 13;
     */
    leaseExpireTime?: Timestamp | undefined;
    /**
     * The task's own deadline, if it has a timeout.
     *
     * @generated from field: google.protobuf.Timestamp deadline = 14;
     */
    deadline?: Timestamp | undefined;
    /**
     * Attempt number, from 1.
     *
     * @generated from field: int32 attempt = 15;
     */
    attempt: number;
    /**
     * W3C trace context of the run.
     *
     * @generated from field: string traceparent = 16;
     */
    traceparent: string;
};
/**
 * Describes the message taskloom.v1.LeaseOffer.
 * Use `create(LeaseOfferSchema)` to create a new message.
 */
export declare const LeaseOfferSchema: GenMessage<LeaseOffer>;
/**
 * Asks a worker to stop an attempt.
 *
 * @generated from message taskloom.v1.CancelLease
 */
export type CancelLease = Message<"taskloom.v1.CancelLease"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
    /**
     * Why, e.g. `run cancelled`.
     *
     * @generated from field: string reason = 2;
     */
    reason: string;
};
/**
 * Describes the message taskloom.v1.CancelLease.
 * Use `create(CancelLeaseSchema)` to create a new message.
 */
export declare const CancelLeaseSchema: GenMessage<CancelLease>;
/**
 * Liveness probe from the server, every heartbeat interval: answer with a
 * `Pong` carrying its nonce within the heartbeat timeout, or the session is
 * closed and its leases end.
 *
 * @generated from message taskloom.v1.Ping
 */
export type Ping = Message<"taskloom.v1.Ping"> & {
    /**
     * Unguessable; echo it in `Pong`.
     *
     * @generated from field: int64 nonce = 1;
     */
    nonce: bigint;
};
/**
 * Describes the message taskloom.v1.Ping.
 * Use `create(PingSchema)` to create a new message.
 */
export declare const PingSchema: GenMessage<Ping>;
/**
 * Outcome of a stream message that names a lease.
 *
 * @generated from message taskloom.v1.Ack
 */
export type Ack = Message<"taskloom.v1.Ack"> & {
    /**
     * The lease.
     *
     * @generated from field: taskloom.v1.LeaseRef lease = 1;
     */
    lease?: LeaseRef | undefined;
    /**
     * True when the message was applied.
     *
     * @generated from field: bool accepted = 2;
     */
    accepted: boolean;
    /**
     * gRPC code name when rejected, e.g. `FAILED_PRECONDITION` (the name of
     * `status_code`).
     *
     * @generated from field: string code = 3;
     */
    code: string;
    /**
     * Why it was rejected.
     *
     * @generated from field: string message = 4;
     */
    message: string;
    /**
     * The code when rejected, as a unary call with the same outcome answers.
     *
     * @generated from field: google.rpc.Code status_code = 5;
     */
    statusCode: Code;
    /**
     * `google.rpc.ErrorInfo.reason` when rejected, as a unary call with the
     * same outcome answers, e.g. `LEASE_FENCED`.
     *
     * @generated from field: string reason = 6;
     */
    reason: string;
};
/**
 * Describes the message taskloom.v1.Ack.
 * Use `create(AckSchema)` to create a new message.
 */
export declare const AckSchema: GenMessage<Ack>;
/**
 * Request for WorkerService.CompleteTask.
 *
 * @generated from message taskloom.v1.CompleteTaskRequest
 */
export type CompleteTaskRequest = Message<"taskloom.v1.CompleteTaskRequest"> & {
    /**
     * The attempt.
     *
     * @generated from field: string attempt_id = 1;
     */
    attemptId: string;
    /**
     * The fencing token.
     *
     * @generated from field: string lease_token = 2;
     */
    leaseToken: string;
    /**
     * The output.
     *
     * @generated from field: taskloom.v1.Value output = 3;
     */
    output?: Value | undefined;
};
/**
 * Describes the message taskloom.v1.CompleteTaskRequest.
 * Use `create(CompleteTaskRequestSchema)` to create a new message.
 */
export declare const CompleteTaskRequestSchema: GenMessage<CompleteTaskRequest>;
/**
 * Response of WorkerService.CompleteTask.
 *
 * @generated from message taskloom.v1.CompleteTaskResponse
 */
export type CompleteTaskResponse = Message<"taskloom.v1.CompleteTaskResponse"> & {};
/**
 * Describes the message taskloom.v1.CompleteTaskResponse.
 * Use `create(CompleteTaskResponseSchema)` to create a new message.
 */
export declare const CompleteTaskResponseSchema: GenMessage<CompleteTaskResponse>;
/**
 * Request for WorkerService.FailTask.
 *
 * @generated from message taskloom.v1.FailTaskRequest
 */
export type FailTaskRequest = Message<"taskloom.v1.FailTaskRequest"> & {
    /**
     * The attempt.
     *
     * @generated from field: string attempt_id = 1;
     */
    attemptId: string;
    /**
     * The fencing token.
     *
     * @generated from field: string lease_token = 2;
     */
    leaseToken: string;
    /**
     * Error message.
     *
     * @generated from field: string message = 3;
     */
    message: string;
    /**
     * False makes the failure final regardless of the retry policy.
     *
     * @generated from field: bool retryable = 4;
     */
    retryable: boolean;
    /**
     * Overrides the policy's backoff for the next attempt.
     *
     * @generated from field: google.protobuf.Duration retry_delay = 5;
     */
    retryDelay?: Duration | undefined;
};
/**
 * Describes the message taskloom.v1.FailTaskRequest.
 * Use `create(FailTaskRequestSchema)` to create a new message.
 */
export declare const FailTaskRequestSchema: GenMessage<FailTaskRequest>;
/**
 * Response of WorkerService.FailTask.
 *
 * @generated from message taskloom.v1.FailTaskResponse
 */
export type FailTaskResponse = Message<"taskloom.v1.FailTaskResponse"> & {
    /**
     * True when another attempt was scheduled.
     *
     * @generated from field: bool will_retry = 1;
     */
    willRetry: boolean;
};
/**
 * Describes the message taskloom.v1.FailTaskResponse.
 * Use `create(FailTaskResponseSchema)` to create a new message.
 */
export declare const FailTaskResponseSchema: GenMessage<FailTaskResponse>;
/**
 * Request for WorkerService.ExtendLease.
 *
 * @generated from message taskloom.v1.ExtendLeaseRequest
 */
export type ExtendLeaseRequest = Message<"taskloom.v1.ExtendLeaseRequest"> & {
    /**
     * The attempt.
     *
     * @generated from field: string attempt_id = 1;
     */
    attemptId: string;
    /**
     * The fencing token.
     *
     * @generated from field: string lease_token = 2;
     */
    leaseToken: string;
    /**
     * How long from now; default the server's lease duration.
     *
     * @generated from field: google.protobuf.Duration extension = 3;
     */
    extension?: Duration | undefined;
};
/**
 * Describes the message taskloom.v1.ExtendLeaseRequest.
 * Use `create(ExtendLeaseRequestSchema)` to create a new message.
 */
export declare const ExtendLeaseRequestSchema: GenMessage<ExtendLeaseRequest>;
/**
 * Response of WorkerService.ExtendLease.
 *
 * @generated from message taskloom.v1.ExtendLeaseResponse
 */
export type ExtendLeaseResponse = Message<"taskloom.v1.ExtendLeaseResponse"> & {
    /**
     * The new expiry.
     *
     * @generated from field: google.protobuf.Timestamp lease_expire_time = 1;
     */
    leaseExpireTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.ExtendLeaseResponse.
 * Use `create(ExtendLeaseResponseSchema)` to create a new message.
 */
export declare const ExtendLeaseResponseSchema: GenMessage<ExtendLeaseResponse>;
/**
 * Request for WorkerService.ListWorkers.
 *
 * @generated from message taskloom.v1.ListWorkersRequest
 */
export type ListWorkersRequest = Message<"taskloom.v1.ListWorkersRequest"> & {
    /**
     * Only workers serving this queue.
     *
     * @generated from field: string queue = 1;
     */
    queue: string;
    /**
     * Maximum results (default 50, at most 1000).
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
 * Describes the message taskloom.v1.ListWorkersRequest.
 * Use `create(ListWorkersRequestSchema)` to create a new message.
 */
export declare const ListWorkersRequestSchema: GenMessage<ListWorkersRequest>;
/**
 * A connected worker session.
 *
 * @generated from message taskloom.v1.WorkerSession
 */
export type WorkerSession = Message<"taskloom.v1.WorkerSession"> & {
    /**
     * The session id.
     *
     * @generated from field: string session_id = 1;
     */
    sessionId: string;
    /**
     * The worker's id.
     *
     * @generated from field: string worker_id = 2;
     */
    workerId: string;
    /**
     * The worker's name.
     *
     * @generated from field: string name = 3;
     */
    name: string;
    /**
     * Queues served.
     *
     * @generated from field: repeated string queues = 4;
     */
    queues: string[];
    /**
     * Slots offered.
     *
     * @generated from field: int32 slots = 5;
     */
    slots: number;
    /**
     * Leases held now.
     *
     * @generated from field: int32 leases_held = 6;
     */
    leasesHeld: number;
    /**
     * Labels.
     *
     * @generated from field: map<string, string> labels = 7;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * SDK version.
     *
     * @generated from field: string sdk_version = 8;
     */
    sdkVersion: string;
    /**
     * The replica the stream is connected to.
     *
     * @generated from field: string replica = 9;
     */
    replica: string;
    /**
     * When the session opened.
     *
     * @generated from field: google.protobuf.Timestamp connect_time = 10;
     */
    connectTime?: Timestamp | undefined;
    /**
     * The last heartbeat.
     *
     * @generated from field: google.protobuf.Timestamp last_heartbeat_time = 11;
     */
    lastHeartbeatTime?: Timestamp | undefined;
    /**
     * Lease operations of this session refused because their lease token was
     * stale or foreign (fencing), since it connected.
     *
     * @generated from field: int64 fenced_operations = 12;
     */
    fencedOperations: bigint;
};
/**
 * Describes the message taskloom.v1.WorkerSession.
 * Use `create(WorkerSessionSchema)` to create a new message.
 */
export declare const WorkerSessionSchema: GenMessage<WorkerSession>;
/**
 * Response of WorkerService.ListWorkers.
 *
 * @generated from message taskloom.v1.ListWorkersResponse
 */
export type ListWorkersResponse = Message<"taskloom.v1.ListWorkersResponse"> & {
    /**
     * The sessions.
     *
     * @generated from field: repeated taskloom.v1.WorkerSession workers = 1;
     */
    workers: WorkerSession[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListWorkersResponse.
 * Use `create(ListWorkersResponseSchema)` to create a new message.
 */
export declare const ListWorkersResponseSchema: GenMessage<ListWorkersResponse>;
/**
 * Request for WorkerService.ListDeadLetters.
 *
 * @generated from message taskloom.v1.ListDeadLettersRequest
 */
export type ListDeadLettersRequest = Message<"taskloom.v1.ListDeadLettersRequest"> & {
    /**
     * Only attempts of this queue.
     *
     * @generated from field: string queue = 1;
     */
    queue: string;
    /**
     * Maximum results (default 50, at most 1000).
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
 * Describes the message taskloom.v1.ListDeadLettersRequest.
 * Use `create(ListDeadLettersRequestSchema)` to create a new message.
 */
export declare const ListDeadLettersRequestSchema: GenMessage<ListDeadLettersRequest>;
/**
 * Response of WorkerService.ListDeadLetters.
 *
 * @generated from message taskloom.v1.ListDeadLettersResponse
 */
export type ListDeadLettersResponse = Message<"taskloom.v1.ListDeadLettersResponse"> & {
    /**
     * The attempts, newest first.
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
 * Describes the message taskloom.v1.ListDeadLettersResponse.
 * Use `create(ListDeadLettersResponseSchema)` to create a new message.
 */
export declare const ListDeadLettersResponseSchema: GenMessage<ListDeadLettersResponse>;
/**
 * WorkerService connects remote workers: processes in any language that run
 * `worker` tasks (and hooks routed to a queue) under fenced leases.
 *
 * @generated from service taskloom.v1.WorkerService
 */
export declare const WorkerService: GenService<{
    /**
     * One bidirectional stream per worker process. The worker sends `Hello`
     * first; the server answers `Welcome` and then offers leases up to the
     * worker's free slots. Liveness is reading the stream: the server pings
     * every heartbeat interval, and a session that leaves a ping unanswered
     * past the heartbeat timeout is closed (`UNAVAILABLE`) and its leases end
     * at once (counted as lease expiries), so other workers get their tasks.
     * A session whose stream merely breaks keeps its leases until they
     * expire, so a worker that reconnects in time re-attaches them.
     *
     * @generated from rpc taskloom.v1.WorkerService.Connect
     */
    connect: {
        methodKind: "bidi_streaming";
        input: typeof WorkerMessageSchema;
        output: typeof ServerMessageSchema;
    };
    /**
     * Completes a leased attempt from outside a stream.
     *
     * @generated from rpc taskloom.v1.WorkerService.CompleteTask
     */
    completeTask: {
        methodKind: "unary";
        input: typeof CompleteTaskRequestSchema;
        output: typeof CompleteTaskResponseSchema;
    };
    /**
     * Fails a leased attempt from outside a stream.
     *
     * @generated from rpc taskloom.v1.WorkerService.FailTask
     */
    failTask: {
        methodKind: "unary";
        input: typeof FailTaskRequestSchema;
        output: typeof FailTaskResponseSchema;
    };
    /**
     * Extends a lease.
     *
     * @generated from rpc taskloom.v1.WorkerService.ExtendLease
     */
    extendLease: {
        methodKind: "unary";
        input: typeof ExtendLeaseRequestSchema;
        output: typeof ExtendLeaseResponseSchema;
    };
    /**
     * Lists connected worker sessions.
     *
     * @generated from rpc taskloom.v1.WorkerService.ListWorkers
     */
    listWorkers: {
        methodKind: "unary";
        input: typeof ListWorkersRequestSchema;
        output: typeof ListWorkersResponseSchema;
    };
    /**
     * Lists attempts that failed for good with no retry left.
     *
     * @generated from rpc taskloom.v1.WorkerService.ListDeadLetters
     */
    listDeadLetters: {
        methodKind: "unary";
        input: typeof ListDeadLettersRequestSchema;
        output: typeof ListDeadLettersResponseSchema;
    };
}>;
//# sourceMappingURL=worker_pb.d.ts.map