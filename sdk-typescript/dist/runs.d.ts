import type { Client } from "@connectrpc/connect";
import type { BackoffOptions } from "./backoff.js";
import type { ChainInput, PageOptions, RequestIdOption } from "./chains.js";
import { RunService, RunStatus } from "./gen/taskloom/v1/run_pb.js";
import type { ExecuteChainResponse, ReplayRunResponse, Run, RunEvent, TaskAttempt } from "./gen/taskloom/v1/run_pb.js";
import type { ValueInput } from "./values.js";
/** What starts a run: a stored chain (`chainId`) or an inline `chain`. */
export interface StartRunOptions extends RequestIdOption {
    chainId?: string;
    /** Pinned version of `chainId`; latest when omitted. */
    chainVersion?: number | bigint;
    /** An inline chain, stored as a new version when it differs. */
    chain?: ChainInput;
    /**
     * The run's input. Without `inputType` it is sent typed (see `toValue`);
     * with it, as JSON that the server interprets by `inputType`.
     */
    input?: ValueInput;
    /** `string`/`text`, `number`, `integer`, `boolean`, `json`, `chat_history` or `vector`. */
    inputType?: string;
    labels?: Record<string, string>;
    /** -100..100; higher runs are dispatched first. */
    priority?: number;
    tenant?: string;
    /**
     * A W3C `traceparent` (sent as metadata): the run's span becomes its
     * child, so the run, its attempts and its workers' tasks join the
     * caller's trace. An invalid value is ignored by the server.
     */
    traceparent?: string;
}
export interface ExecuteOptions extends StartRunOptions {
    /** How long the server waits for the run to end (default 5 minutes). */
    waitTimeoutMs?: number;
}
export interface ListRunsOptions extends PageOptions {
    statuses?: RunStatus[];
    chainId?: string;
    labels?: Record<string, string>;
    tenant?: string;
    createdAfter?: Date;
    createdBefore?: Date;
}
export interface WatchOptions {
    /** Deliver events with a sequence number greater than this (default 0: all). */
    afterSeq?: number | bigint;
    /** Also deliver live token deltas of streaming model calls. */
    includeDeltas?: boolean;
    /** Stops the watch; the iteration then throws `Cancelled`. */
    signal?: AbortSignal;
    /** Reconnect pacing after a dropped stream (default 100 ms doubling to 5 s, jittered). */
    reconnectBackoff?: BackoffOptions;
}
export interface WaitOptions {
    /** Give up after this long with `DeadlineExceeded` (the run goes on). */
    timeoutMs?: number;
    signal?: AbortSignal;
}
/** True for a run that has ended (succeeded, failed or cancelled). */
export declare function isTerminal(run: Run): boolean;
/** RunService helpers: `client.runs`. */
export declare class RunsClient {
    private readonly service;
    constructor(service: Client<typeof RunService>);
    /** Starts a run (idempotent by `requestId`, a fresh one when omitted). */
    start(options: StartRunOptions): Promise<Run>;
    /** Starts a run and waits (server side) for it to end; output plus per-task trace. */
    execute(options: ExecuteOptions): Promise<ExecuteChainResponse>;
    get(runId: string): Promise<Run>;
    /** One page of runs, newest first. */
    list(options?: ListRunsOptions): Promise<{
        runs: Run[];
        nextPageToken: string;
    }>;
    /** One page of a run's stored events after `afterSeq`, in order. */
    events(runId: string, options?: PageOptions & {
        afterSeq?: number | bigint;
    }): Promise<{
        events: RunEvent[];
        nextPageToken: string;
    }>;
    /** One page of a run's task attempts in creation order. */
    attempts(runId: string, options?: PageOptions): Promise<{
        attempts: TaskAttempt[];
        nextPageToken: string;
    }>;
    cancel(runId: string, options?: RequestIdOption & {
        reason?: string;
    }): Promise<Run>;
    /** Stops dispatching new tasks; `cancelRunning` also cancels executing attempts. */
    pause(runId: string, options?: RequestIdOption & {
        cancelRunning?: boolean;
    }): Promise<Run>;
    resume(runId: string, options?: RequestIdOption): Promise<Run>;
    /** Continues a failed run from the task that failed. */
    retry(runId: string, options?: RequestIdOption): Promise<Run>;
    /** Deletes a finished run with its attempts and events (`FailedPrecondition` before it ends). */
    delete(runId: string, options?: RequestIdOption): Promise<void>;
    /** Re-derives a run's path from its recorded outputs and reports divergence. */
    replay(runId: string): Promise<ReplayRunResponse>;
    /** Answers the `human_input` task `taskId` the run waits on. */
    submitInput(runId: string, taskId: string, answer: ValueInput, options?: RequestIdOption): Promise<Run>;
    /**
     * The run's events after `afterSeq` (stored ones, then live ones), ending
     * after the terminal event. When the stream drops it reconnects and
     * resumes after the last stored event seen, so no stored event is lost or
     * repeated.
     *
     * Token deltas (with `includeDeltas`) carry the seq of the last stored
     * event and never move it. Per attempt, the deltas delivered concatenate
     * to the model's text, whenever the watch joined: a watch that joins (or
     * reconnects) while a call streams first gets its text so far (one delta
     * with `catchUp` set), then the live deltas; after a reconnect the
     * catch-up is trimmed to what was missed. Once the attempt's output is
     * stored (`TASK_SUCCEEDED`) that is the whole answer. See `AnswerText`.
     */
    watch(runId: string, options?: WatchOptions): AsyncIterable<RunEvent>;
    /**
     * Starts a run (as `start`) and watches it (as `watch`) in one call: the
     * watch exists before the run, so its first events and token deltas
     * cannot be missed, however fast the model answers. The start is
     * idempotent by `requestId` (one is made up when omitted): a dropped
     * stream is resumed by the same request, which starts nothing new and
     * watches on after the last stored event seen.
     */
    startAndWatch(options: StartRunOptions & Omit<WatchOptions, "afterSeq">): AsyncIterable<RunEvent>;
    /** Whether the run ended with no stored event after `lastSeq`. */
    private endedBefore;
    /**
     * Events of the streams `open(lastSeq)` opens, reopened after the last
     * stored event delivered whenever one drops, until the terminal event:
     * stored events once each, token deltas continuing their attempt's text.
     */
    private follow;
    /** Waits for the run to end and returns it (built on `watch`). */
    wait(runId: string, options?: WaitOptions): Promise<Run>;
}
/**
 * The text of each attempt's model call as a watch delivers it: feed it
 * every event (`add`); `text(attemptId)` is the answer so far, and the
 * stored output once the attempt succeeded.
 */
export declare class AnswerText {
    private readonly texts;
    /** The attempt that spoke last. */
    lastAttemptId: string;
    /** Takes an event; returns the text it added, if any. */
    add(event: RunEvent): string | undefined;
    /** An attempt's text (default: the last one that spoke). */
    text(attemptId?: string): string;
}
//# sourceMappingURL=runs.d.ts.map