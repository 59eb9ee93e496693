// RunService helpers: `client.runs`, including a `watch` that survives
// dropped streams and a `wait` built on it.
import { fromJson, isMessage } from "@bufbuild/protobuf";
import { ValueSchema as JsonValueSchema, durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Backoff, sleep } from "./backoff.js";
import { Aborted, Cancelled, Code, DeadlineExceeded, Internal, ResourceExhausted, Unavailable, Unknown, } from "./errors.js";
import { ValueSchema } from "./gen/taskloom/v1/common_pb.js";
import { RunEventType, RunStatus } from "./gen/taskloom/v1/run_pb.js";
import { toJsonValue, toValue } from "./values.js";
const terminalEvents = new Set([
    RunEventType.RUN_SUCCEEDED,
    RunEventType.RUN_FAILED,
    RunEventType.RUN_CANCELLED,
]);
const terminalStatuses = new Set([
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
]);
/** True for a run that has ended (succeeded, failed or cancelled). */
export function isTerminal(run) {
    return terminalStatuses.has(run.status);
}
/**
 * Errors after which a watch reconnects: the server went away or the
 * connection broke. A killed server surfaces as UNAVAILABLE, or as CANCELLED
 * when node resets the HTTP/2 stream (code CANCEL) — the caller's own abort
 * is told apart by its signal before this is asked.
 */
function isTransient(error) {
    return (error instanceof Unavailable ||
        error instanceof Cancelled ||
        error instanceof Internal ||
        error instanceof Unknown ||
        error instanceof Aborted ||
        error instanceof ResourceExhausted ||
        error instanceof DeadlineExceeded);
}
/** RunService helpers: `client.runs`. */
export class RunsClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /** Starts a run (idempotent by `requestId`, a fresh one when omitted). */
    start(options) {
        return this.service.startRun(startRequest(options), traceHeaders(options));
    }
    /** Starts a run and waits (server side) for it to end; output plus per-task trace. */
    execute(options) {
        const { waitTimeoutMs, ...start } = options;
        return this.service.executeChain({
            ...startRequest(start),
            waitTimeout: waitTimeoutMs === undefined ? undefined : durationFromMs(waitTimeoutMs),
        }, traceHeaders(start));
    }
    get(runId) {
        return this.service.getRun({ id: runId });
    }
    /** One page of runs, newest first. */
    async list(options = {}) {
        const { runs, nextPageToken } = await this.service.listRuns({
            pageSize: options.pageSize,
            pageToken: options.pageToken,
            statuses: options.statuses,
            chainId: options.chainId,
            labels: options.labels,
            tenant: options.tenant,
            createTimeAfter: options.createdAfter && timestampFromDate(options.createdAfter),
            createTimeBefore: options.createdBefore && timestampFromDate(options.createdBefore),
        });
        return { runs, nextPageToken };
    }
    /** One page of a run's stored events after `afterSeq`, in order. */
    async events(runId, options = {}) {
        const { events, nextPageToken } = await this.service.listRunEvents({
            runId,
            afterSeq: BigInt(options.afterSeq ?? 0),
            pageSize: options.pageSize,
            pageToken: options.pageToken,
        });
        return { events, nextPageToken };
    }
    /** One page of a run's task attempts in creation order. */
    async attempts(runId, options = {}) {
        const { attempts, nextPageToken } = await this.service.listRunAttempts({ runId, ...options });
        return { attempts, nextPageToken };
    }
    cancel(runId, options = {}) {
        return this.service.cancelRun({ id: runId, reason: options.reason, requestId: options.requestId });
    }
    /** Stops dispatching new tasks; `cancelRunning` also cancels executing attempts. */
    pause(runId, options = {}) {
        return this.service.pauseRun({
            id: runId,
            cancelRunning: options.cancelRunning,
            requestId: options.requestId,
        });
    }
    resume(runId, options = {}) {
        return this.service.resumeRun({ id: runId, requestId: options.requestId });
    }
    /** Continues a failed run from the task that failed. */
    retry(runId, options = {}) {
        return this.service.retryRun({ id: runId, requestId: options.requestId });
    }
    /** Deletes a finished run with its attempts and events (`FailedPrecondition` before it ends). */
    async delete(runId, options = {}) {
        await this.service.deleteRun({ id: runId, requestId: options.requestId });
    }
    /** Re-derives a run's path from its recorded outputs and reports divergence. */
    replay(runId) {
        return this.service.replayRun({ id: runId });
    }
    /** Answers the `human_input` task `taskId` the run waits on. */
    submitInput(runId, taskId, answer, options = {}) {
        return this.service.submitInput({
            runId,
            taskId,
            answer: { case: "typedInput", value: toValue(answer) },
            requestId: options.requestId,
        });
    }
    /**
     * The run's events after `afterSeq` (stored ones, then live ones), ending
     * after the terminal event. When the stream drops it reconnects and
     * resumes after the last stored event seen, so no stored event is lost or
     * repeated. Token deltas (with `includeDeltas`) are delivered live only:
     * they carry the seq of the last stored event and never move it.
     */
    watch(runId, options = {}) {
        return this.watchEvents(runId, options);
    }
    async *watchEvents(runId, options) {
        const { signal, includeDeltas = false } = options;
        let lastSeq = BigInt(options.afterSeq ?? 0);
        const backoff = new Backoff(options.reconnectBackoff ?? { initialMs: 100, maxMs: 5_000 });
        for (;;) {
            try {
                const stream = this.service.watchRun({ runId, afterSeq: lastSeq, includeDeltas }, { signal });
                for await (const event of stream) {
                    backoff.reset();
                    if (event.type === RunEventType.TOKEN_DELTA) {
                        yield event;
                        continue;
                    }
                    if (event.seq <= lastSeq) {
                        continue; // already delivered before a reconnect
                    }
                    lastSeq = event.seq;
                    yield event;
                    if (terminalEvents.has(event.type)) {
                        return;
                    }
                }
                // The server ended the stream without a terminal event (e.g. it
                // is shutting down). If the run already ended and we saw all of
                // it there is nothing left to wait for.
                const run = await this.service.getRun({ id: runId }, { signal });
                if (isTerminal(run) && run.lastEventSeq <= lastSeq) {
                    return;
                }
            }
            catch (error) {
                if (signal?.aborted) {
                    throw abortError(signal);
                }
                if (!isTransient(error)) {
                    throw error;
                }
            }
            await sleep(backoff.next(), signal);
            if (signal?.aborted) {
                throw abortError(signal);
            }
        }
    }
    /** Waits for the run to end and returns it (built on `watch`). */
    async wait(runId, options = {}) {
        const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)]
            .filter((s) => s !== undefined);
        const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
        try {
            let run = await this.service.getRun({ id: runId }, { signal });
            if (isTerminal(run)) {
                return run;
            }
            for await (const _event of this.watch(runId, { afterSeq: run.lastEventSeq, signal })) {
                // Only the end matters; watch stops after the terminal event.
            }
            run = await this.service.getRun({ id: runId }, { signal });
            return run;
        }
        catch (error) {
            if (options.timeoutMs !== undefined && signal?.aborted && !options.signal?.aborted) {
                throw new DeadlineExceeded(Code.DeadlineExceeded, `run ${runId} did not end within ${options.timeoutMs} ms`, { cause: error });
            }
            throw error;
        }
    }
}
function abortError(signal) {
    return new Cancelled(Code.Canceled, "watch aborted", { cause: signal.reason });
}
/** The `traceparent` metadata of a start, if it names one. */
function traceHeaders(options) {
    return options.traceparent ? { headers: { traceparent: options.traceparent } } : undefined;
}
function startRequest(options) {
    const { input, inputType } = options;
    let runInput;
    if (input === undefined) {
        runInput = undefined;
    }
    else if (inputType && !isMessage(input, ValueSchema)) {
        runInput = { case: "input", value: fromJson(JsonValueSchema, toJsonValue(input)) };
    }
    else {
        runInput = { case: "typedInput", value: toValue(input) };
    }
    return {
        chainId: options.chainId,
        chainVersion: BigInt(options.chainVersion ?? 0),
        chain: options.chain,
        runInput,
        inputType,
        requestId: options.requestId,
        labels: options.labels,
        priority: options.priority,
        tenant: options.tenant,
    };
}
//# sourceMappingURL=runs.js.map