import type { JsonObject } from "@bufbuild/protobuf";
import type { BackoffOptions } from "./backoff.js";
import type { TaskloomClient } from "./client.js";
import type { Value } from "./gen/taskloom/v1/common_pb.js";
import type { PlainValue, ValueInput } from "./values.js";
/** The SDK identification sent in Hello. */
export declare const SDK_VERSION: string;
/** One leased task, as a handler sees it. */
export interface WorkerTask {
    /** The task's input as a plain value (see `fromValue`). */
    readonly input: PlainValue;
    /** The task's input as the typed Value it arrived as. */
    readonly value: Value;
    /** The rendered prompt template ("" when the task has none). */
    readonly prompt: string;
    readonly systemInstruction: string;
    /** Rendered hook arguments, for `hook` tasks routed to a queue. */
    readonly args: Readonly<Record<string, string>>;
    readonly runId: string;
    readonly taskId: string;
    readonly attemptId: string;
    /** Attempt number, from 1. */
    readonly attempt: number;
    readonly queue: string;
    readonly chainId: string;
    readonly chainVersion: bigint;
    /** `worker`, or `hook` for hooks routed to a queue. */
    readonly handler: string;
    /** The task's own deadline, when it has a timeout. */
    readonly deadline: Date | undefined;
    /**
     * W3C trace context of this attempt's span, in the run's trace (the
     * trace of the `traceparent` the run was started with, if any): pass it
     * as the parent of the handler's own spans, e.g. with OpenTelemetry's
     * `propagation.extract(context.active(), { traceparent: task.traceparent })`.
     */
    readonly traceparent: string;
    /**
     * Aborted when the server cancels the lease (run cancelled, paused with
     * `cancelRunning`, timed out, lease lost) or the worker shuts down past
     * its grace. The handler's result is then dropped.
     */
    readonly signal: AbortSignal;
    /** Reports progress, stored as a TASK_PROGRESS event (dropped while disconnected). */
    progress(message: string, data?: JsonObject): Promise<void>;
}
/** What a handler returns: the task's output (`undefined` is JSON null). */
export type TaskHandler = (task: WorkerTask) => Promise<ValueInput | undefined | void> | ValueInput | undefined | void;
/**
 * Thrown by a handler to control how its failure is treated. Any other
 * error is a retryable failure with its message.
 */
export declare class TaskFailure extends Error {
    /** False makes the failure final regardless of the task's retry policy. */
    readonly retryable: boolean;
    /** Overrides the retry policy's delay before the next attempt. */
    readonly retryDelayMs: number | undefined;
    constructor(message: string, options?: {
        retryable?: boolean;
        retryDelayMs?: number;
        cause?: unknown;
    });
}
export interface WorkerLogger {
    warn(message: string): void;
}
export interface WorkerOptions {
    /** Handlers run at once (1–10,000; default 10). */
    slots?: number;
    /** Stable id across reconnects (default: a fresh UUID per Worker). */
    workerId?: string;
    /** Human-readable name (default `host:pid`). */
    name?: string;
    labels?: Record<string, string>;
    /** Heartbeat period used until the server's Welcome names one (default 5 s). */
    heartbeatIntervalMs?: number;
    /** Reconnect pacing: full jitter, doubling from initialMs to maxMs (default 100 ms → 10 s). */
    backoff?: BackoffOptions;
    /** Where refused results and handler problems are reported (default: console). */
    logger?: WorkerLogger;
}
export interface ShutdownOptions {
    /** How long running handlers may take to finish and report (default 30 s). */
    graceMs?: number;
}
export declare class Worker {
    readonly workerId: string;
    readonly name: string;
    readonly slots: number;
    private readonly labels;
    private readonly backoff;
    private readonly heartbeatIntervalMs;
    private readonly logger;
    private readonly service;
    private readonly handlers;
    private readonly running;
    private readonly pending;
    private readonly changeListeners;
    private session;
    private started;
    private draining;
    /** Aborted to end the connection loop for good. */
    private readonly stop;
    /** Aborted to drop the current stream. */
    private connection;
    constructor(client: TaskloomClient, options?: WorkerOptions);
    /** Serves `queue` with `handler`. Call before `run()`. */
    handle(queue: string, handler: TaskHandler): this;
    /** Leases currently being executed. */
    get activeTasks(): number;
    /**
     * Connects and serves until `shutdown()`; reconnects forever on stream
     * loss. Rejects only on errors retrying cannot fix (e.g. the server
     * refusing the Hello as invalid).
     */
    run(): Promise<void>;
    /**
     * Stops taking work (SetSlots 0), lets running handlers finish and report
     * for up to `graceMs`, then aborts the rest and releases their leases
     * (back to READY without spending a retry), and closes the stream.
     */
    shutdown(options?: ShutdownOptions): Promise<void>;
    private serveOneStream;
    private onWelcome;
    /**
     * Heartbeats every interval the Welcome names; a server silent past its
     * heartbeat timeout (it pings every interval) is treated as gone: the
     * stream is dropped and the worker reconnects.
     */
    private startHeartbeats;
    private onServerMessage;
    private onOffer;
    private execute;
    private taskFor;
    /** Sends on the current stream; false when disconnected (the caller keeps what must survive). */
    private send;
    private abortAll;
    private notifyChange;
    /** Resolves when `condition` holds or after `timeoutMs`. */
    private waitUntil;
}
//# sourceMappingURL=worker.d.ts.map