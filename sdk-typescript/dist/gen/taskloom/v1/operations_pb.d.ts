import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/operations.proto.
 */
export declare const file_taskloom_v1_operations: GenFile;
/**
 * One queue of attempts.
 *
 * @generated from message taskloom.v1.Queue
 */
export type Queue = Message<"taskloom.v1.Queue"> & {
    /**
     * The queue name (`internal` is the server's own handlers).
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Attempts ready to be leased now.
     *
     * @generated from field: int64 ready = 2;
     */
    ready: bigint;
    /**
     * How long the oldest ready attempt has waited; unset when none is ready.
     *
     * @generated from field: google.protobuf.Duration oldest_ready_age = 3;
     */
    oldestReadyAge?: Duration | undefined;
    /**
     * Attempts leased now.
     *
     * @generated from field: int64 leased = 4;
     */
    leased: bigint;
    /**
     * Attempts scheduled for later (retry backoff, throttling).
     *
     * @generated from field: int64 scheduled = 5;
     */
    scheduled: bigint;
    /**
     * Whether the queue is paused.
     *
     * @generated from field: bool paused = 6;
     */
    paused: boolean;
    /**
     * Who paused it (the audit actor), while paused.
     *
     * @generated from field: string paused_by = 7;
     */
    pausedBy: string;
    /**
     * When it was paused, while paused.
     *
     * @generated from field: google.protobuf.Timestamp pause_time = 8;
     */
    pauseTime?: Timestamp | undefined;
    /**
     * The concurrency cap (`--queue-concurrency`); 0 means none.
     *
     * @generated from field: uint32 concurrency_cap = 9;
     */
    concurrencyCap: number;
};
/**
 * Describes the message taskloom.v1.Queue.
 * Use `create(QueueSchema)` to create a new message.
 */
export declare const QueueSchema: GenMessage<Queue>;
/**
 * Request for OperationsService.ListQueues.
 *
 * @generated from message taskloom.v1.ListQueuesRequest
 */
export type ListQueuesRequest = Message<"taskloom.v1.ListQueuesRequest"> & {};
/**
 * Describes the message taskloom.v1.ListQueuesRequest.
 * Use `create(ListQueuesRequestSchema)` to create a new message.
 */
export declare const ListQueuesRequestSchema: GenMessage<ListQueuesRequest>;
/**
 * Response of OperationsService.ListQueues.
 *
 * @generated from message taskloom.v1.ListQueuesResponse
 */
export type ListQueuesResponse = Message<"taskloom.v1.ListQueuesResponse"> & {
    /**
     * The queues.
     *
     * @generated from field: repeated taskloom.v1.Queue queues = 1;
     */
    queues: Queue[];
};
/**
 * Describes the message taskloom.v1.ListQueuesResponse.
 * Use `create(ListQueuesResponseSchema)` to create a new message.
 */
export declare const ListQueuesResponseSchema: GenMessage<ListQueuesResponse>;
/**
 * Request for OperationsService.PauseQueue.
 *
 * @generated from message taskloom.v1.PauseQueueRequest
 */
export type PauseQueueRequest = Message<"taskloom.v1.PauseQueueRequest"> & {
    /**
     * The queue name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.PauseQueueRequest.
 * Use `create(PauseQueueRequestSchema)` to create a new message.
 */
export declare const PauseQueueRequestSchema: GenMessage<PauseQueueRequest>;
/**
 * Request for OperationsService.ResumeQueue.
 *
 * @generated from message taskloom.v1.ResumeQueueRequest
 */
export type ResumeQueueRequest = Message<"taskloom.v1.ResumeQueueRequest"> & {
    /**
     * The queue name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.ResumeQueueRequest.
 * Use `create(ResumeQueueRequestSchema)` to create a new message.
 */
export declare const ResumeQueueRequestSchema: GenMessage<ResumeQueueRequest>;
/**
 * One server process sharing the store.
 *
 * @generated from message taskloom.v1.Replica
 */
export type Replica = Message<"taskloom.v1.Replica"> & {
    /**
     * The replica id (new at every start).
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * The address it serves gRPC on.
     *
     * @generated from field: string listen_address = 2;
     */
    listenAddress: string;
    /**
     * The server version.
     *
     * @generated from field: string version = 3;
     */
    version: string;
    /**
     * When it started.
     *
     * @generated from field: google.protobuf.Timestamp start_time = 4;
     */
    startTime?: Timestamp | undefined;
    /**
     * When it last wrote its heartbeat.
     *
     * @generated from field: google.protobuf.Timestamp heartbeat_time = 5;
     */
    heartbeatTime?: Timestamp | undefined;
    /**
     * Its state.
     *
     * @generated from field: taskloom.v1.ReplicaState state = 6;
     */
    state: ReplicaState;
    /**
     * Runs with an attempt leased by it or its workers.
     *
     * @generated from field: int64 runs_held = 7;
     */
    runsHeld: bigint;
    /**
     * Attempts leased by it or its workers.
     *
     * @generated from field: int64 leases_held = 8;
     */
    leasesHeld: bigint;
    /**
     * Worker sessions connected to it.
     *
     * @generated from field: int64 worker_sessions = 9;
     */
    workerSessions: bigint;
    /**
     * When it stopped, once `GONE`.
     *
     * @generated from field: google.protobuf.Timestamp stop_time = 10;
     */
    stopTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Replica.
 * Use `create(ReplicaSchema)` to create a new message.
 */
export declare const ReplicaSchema: GenMessage<Replica>;
/**
 * Request for OperationsService.ListReplicas.
 *
 * @generated from message taskloom.v1.ListReplicasRequest
 */
export type ListReplicasRequest = Message<"taskloom.v1.ListReplicasRequest"> & {};
/**
 * Describes the message taskloom.v1.ListReplicasRequest.
 * Use `create(ListReplicasRequestSchema)` to create a new message.
 */
export declare const ListReplicasRequestSchema: GenMessage<ListReplicasRequest>;
/**
 * Response of OperationsService.ListReplicas.
 *
 * @generated from message taskloom.v1.ListReplicasResponse
 */
export type ListReplicasResponse = Message<"taskloom.v1.ListReplicasResponse"> & {
    /**
     * The replicas.
     *
     * @generated from field: repeated taskloom.v1.Replica replicas = 1;
     */
    replicas: Replica[];
};
/**
 * Describes the message taskloom.v1.ListReplicasResponse.
 * Use `create(ListReplicasResponseSchema)` to create a new message.
 */
export declare const ListReplicasResponseSchema: GenMessage<ListReplicasResponse>;
/**
 * Request for OperationsService.DrainReplica.
 *
 * @generated from message taskloom.v1.DrainReplicaRequest
 */
export type DrainReplicaRequest = Message<"taskloom.v1.DrainReplicaRequest"> & {
    /**
     * The replica id.
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
 * Describes the message taskloom.v1.DrainReplicaRequest.
 * Use `create(DrainReplicaRequestSchema)` to create a new message.
 */
export declare const DrainReplicaRequestSchema: GenMessage<DrainReplicaRequest>;
/**
 * A replica's state.
 *
 * @generated from enum taskloom.v1.ReplicaState
 */
export declare enum ReplicaState {
    /**
     * Unknown.
     *
     * @generated from enum value: REPLICA_STATE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Serving and taking work.
     *
     * @generated from enum value: REPLICA_STATE_ACTIVE = 1;
     */
    ACTIVE = 1,
    /**
     * Finishing or handing back what it holds; takes no new work.
     *
     * @generated from enum value: REPLICA_STATE_DRAINING = 2;
     */
    DRAINING = 2,
    /**
     * Stopped, or missed its heartbeats; its leases were released.
     *
     * @generated from enum value: REPLICA_STATE_GONE = 3;
     */
    GONE = 3
}
/**
 * Describes the enum taskloom.v1.ReplicaState.
 */
export declare const ReplicaStateSchema: GenEnum<ReplicaState>;
/**
 * OperationsService is for the people who run Taskloom: queues (depth,
 * pause, resume) and the server's replicas (list, drain). Every change is
 * recorded in the audit log.
 *
 * @generated from service taskloom.v1.OperationsService
 */
export declare const OperationsService: GenService<{
    /**
     * Lists the queues that have work, are paused or have a concurrency cap,
     * ordered by name.
     *
     * @generated from rpc taskloom.v1.OperationsService.ListQueues
     */
    listQueues: {
        methodKind: "unary";
        input: typeof ListQueuesRequestSchema;
        output: typeof ListQueuesResponseSchema;
    };
    /**
     * Pauses a queue on every replica: it offers nothing until resumed;
     * leases in flight finish. A queue may be paused before it has work.
     *
     * @generated from rpc taskloom.v1.OperationsService.PauseQueue
     */
    pauseQueue: {
        methodKind: "unary";
        input: typeof PauseQueueRequestSchema;
        output: typeof QueueSchema;
    };
    /**
     * Resumes a paused queue.
     *
     * @generated from rpc taskloom.v1.OperationsService.ResumeQueue
     */
    resumeQueue: {
        methodKind: "unary";
        input: typeof ResumeQueueRequestSchema;
        output: typeof QueueSchema;
    };
    /**
     * Lists the live replicas (and those that stopped lately), ordered by id.
     *
     * @generated from rpc taskloom.v1.OperationsService.ListReplicas
     */
    listReplicas: {
        methodKind: "unary";
        input: typeof ListReplicasRequestSchema;
        output: typeof ListReplicasResponseSchema;
    };
    /**
     * Drains a replica: it stops taking new work and hands back or finishes
     * what it holds within its grace period, then stops serving.
     *
     * @generated from rpc taskloom.v1.OperationsService.DrainReplica
     */
    drainReplica: {
        methodKind: "unary";
        input: typeof DrainReplicaRequestSchema;
        output: typeof ReplicaSchema;
    };
}>;
//# sourceMappingURL=operations_pb.d.ts.map