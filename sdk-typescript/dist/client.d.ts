import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { BackendService } from "./gen/taskloom/v1/backend_pb.js";
import type { Backend, BackendState, Model, Pool, PullModelProgress } from "./gen/taskloom/v1/backend_pb.js";
import { ChainService } from "./gen/taskloom/v1/chain_pb.js";
import { HookService } from "./gen/taskloom/v1/hook_pb.js";
import type { Hook } from "./gen/taskloom/v1/hook_pb.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import { InfoService } from "./gen/taskloom/v1/info_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import { KeyService, NamespaceService } from "./gen/taskloom/v1/security_pb.js";
import type { GetVersionResponse } from "./gen/taskloom/v1/info_pb.js";
import { RunService } from "./gen/taskloom/v1/run_pb.js";
import type { TaskAttempt } from "./gen/taskloom/v1/run_pb.js";
import { WorkerService } from "./gen/taskloom/v1/worker_pb.js";
import type { WorkerSession } from "./gen/taskloom/v1/worker_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ValueInput } from "./values.js";
import { ChainsClient } from "./chains.js";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditClient, KeysClient, NamespacesClient, QueuesClient, ReplicasClient } from "./operations.js";
import { RunsClient } from "./runs.js";
import type { RetryOptions } from "./services.js";
/** PEM material for TLS; strings or Buffers as node's tls module takes them. */
export interface TlsOptions {
    /** Trusted CA certificates (default: the system roots). */
    ca?: string | Buffer | Array<string | Buffer>;
    /** Client private key, for mutual TLS. */
    key?: string | Buffer;
    /** Client certificate chain, for mutual TLS. */
    cert?: string | Buffer;
}
export interface ClientOptions {
    /**
     * `http://host:port` (plaintext) or `https://host:port` (TLS). A bare
     * `host:port` is plaintext, or TLS when `tls` is given.
     */
    address: string;
    /** Sent as `authorization: Bearer <key>` on every call. */
    apiKey?: string;
    /**
     * Sent as `x-taskloom-namespace` on every call; the server uses
     * `default` without it.
     */
    namespace?: string;
    /** TLS settings; implies TLS. */
    tls?: TlsOptions;
    /** Extra Connect interceptors, run after the SDK's own. */
    interceptors?: Interceptor[];
    /** Retries of idempotent calls on UNAVAILABLE. */
    retry?: Partial<RetryOptions>;
}
/** The Connect clients of every service, each throwing `TaskloomError`s. */
export interface RawClients {
    chains: Client<typeof ChainService>;
    runs: Client<typeof RunService>;
    backends: Client<typeof BackendService>;
    hooks: Client<typeof HookService>;
    workers: Client<typeof WorkerService>;
    info: Client<typeof InfoService>;
    operations: Client<typeof OperationsService>;
    audit: Client<typeof AuditService>;
    keys: Client<typeof KeyService>;
    namespaces: Client<typeof NamespaceService>;
}
/**
 * BackendService helpers, named after their RPCs: `client.backends` (the
 * rest: `client.raw.backends`).
 */
export declare class BackendsClient {
    private readonly service;
    constructor(service: Client<typeof BackendService>);
    createBackend(backend: MessageInitShape<typeof BackendService.method.createBackend.input>["backend"], options?: RequestIdOption & {
        backendId?: string;
    }): Promise<Backend>;
    getBackend(id: string): Promise<Backend>;
    listBackends(options?: PageOptions): Promise<{
        backends: Backend[];
        nextPageToken: string;
    }>;
    deleteBackend(id: string, options?: {
        etag?: string;
    }): Promise<void>;
    /**
     * Syncs a backend now (SyncBackend): checks its health and fetches its
     * model list anew; resolves to the backend with its new observed state (an
     * unreachable backend comes back with `state.health` UNHEALTHY).
     */
    sync(id: string): Promise<Backend>;
    /**
     * What the reconciler last observed of a backend: health, latency, last
     * error, and `observedModels` with their context length, capabilities and
     * size.
     */
    state(id: string): Promise<BackendState | undefined>;
    /**
     * Downloads a model onto an Ollama backend (PullModel), yielding progress;
     * the last message has `done`. A failed download throws (`Unavailable`,
     * or `NotFound` for a model the registry lacks); `FailedPrecondition` for
     * a backend that is not Ollama. Not retried: pull again (Ollama resumes).
     */
    pull(backendId: string, model: string, options?: {
        signal?: AbortSignal;
    }): AsyncIterable<PullModelProgress>;
    listPools(options?: PageOptions): Promise<{
        pools: Pool[];
        nextPageToken: string;
    }>;
    assignBackendToPool(poolId: string, backendId: string): Promise<void>;
    createModel(model: MessageInitShape<typeof BackendService.method.createModel.input>["model"], options?: RequestIdOption): Promise<Model>;
    listModels(options?: PageOptions): Promise<{
        models: Model[];
        nextPageToken: string;
    }>;
    assignModelToPool(poolId: string, model: string): Promise<void>;
}
/** HookService helpers: `client.hooks`. */
export declare class HooksClient {
    private readonly service;
    constructor(service: Client<typeof HookService>);
    create(hook: MessageInitShape<typeof HookService.method.createHook.input>["hook"], options?: RequestIdOption): Promise<Hook>;
    get(name: string): Promise<Hook>;
    list(options?: PageOptions): Promise<{
        hooks: Hook[];
        nextPageToken: string;
    }>;
    /** Replaces the fields named in `updateMask` (all when empty). */
    update(hook: MessageInitShape<typeof HookService.method.updateHook.input>["hook"], options?: {
        updateMask?: string[];
        etag?: string;
    }): Promise<Hook>;
    delete(name: string, options?: {
        etag?: string;
    }): Promise<void>;
}
/** WorkerService unary helpers: `client.workers` (the stream is `Worker`). */
export declare class WorkersClient {
    private readonly service;
    constructor(service: Client<typeof WorkerService>);
    /** One page of connected worker sessions (every replica's). */
    list(options?: PageOptions & {
        queue?: string;
    }): Promise<{
        workers: WorkerSession[];
        nextPageToken: string;
    }>;
    /** One page of attempts that failed for good, newest first. */
    deadLetters(options?: PageOptions & {
        queue?: string;
    }): Promise<{
        attempts: TaskAttempt[];
        nextPageToken: string;
    }>;
    /** Completes a leased attempt outside a stream. */
    complete(attemptId: string, leaseToken: string, output: ValueInput): Promise<void>;
    /** Fails a leased attempt outside a stream; tells whether another attempt was scheduled. */
    fail(attemptId: string, leaseToken: string, message: string, options?: {
        retryable?: boolean;
        retryDelayMs?: number;
    }): Promise<boolean>;
    /** Extends a lease by `extensionMs` from now; returns the new expiry. */
    extendLease(attemptId: string, leaseToken: string, extensionMs: number): Promise<Date | undefined>;
}
/** InfoService helpers: `client.info`. */
export declare class InfoClient {
    private readonly service;
    constructor(service: Client<typeof InfoService>);
    /** Server version, API version, store and feature flags. */
    version(): Promise<GetVersionResponse>;
}
export interface TaskloomClient {
    chains: ChainsClient;
    runs: RunsClient;
    backends: BackendsClient;
    hooks: HooksClient;
    workers: WorkersClient;
    info: InfoClient;
    queues: QueuesClient;
    replicas: ReplicasClient;
    audit: AuditClient;
    /** KeyService: API keys kept in the server's store (admin only). */
    keys: KeysClient;
    /** NamespaceService: create, get, list, update and delete namespaces. */
    namespaces: NamespacesClient;
    /** Every RPC of every service, as Connect clients (typed errors, idempotent retries). */
    raw: RawClients;
    /** The Connect transport, for `createClient` of your own. */
    transport: Transport;
    /** Closes the connection; calls in flight fail. */
    close(): void;
}
/** Connects to a taskloom server (lazily: the first call dials). */
export declare function createClient(options: ClientOptions): TaskloomClient;
//# sourceMappingURL=client.d.ts.map