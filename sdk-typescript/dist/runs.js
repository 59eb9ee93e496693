// RunService helpers: `client.runs`, including a `watch` that survives
// dropped streams and a `wait` built on it.
import { randomUUID } from "node:crypto";
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
    watch(runId, options = {}) {
        const { signal, includeDeltas = false } = options;
        return this.follow((afterSeq) => this.service.watchRun({ runId, afterSeq, includeDeltas }, { signal }), (lastSeq) => this.endedBefore(runId, lastSeq, signal), BigInt(options.afterSeq ?? 0), options);
    }
    /**
     * Starts a run (as `start`) and watches it (as `watch`) in one call: the
     * watch exists before the run, so its first events and token deltas
     * cannot be missed, however fast the model answers. The start is
     * idempotent by `requestId` (one is made up when omitted): a dropped
     * stream is resumed by the same request, which starts nothing new and
     * watches on after the last stored event seen.
     */
    startAndWatch(options) {
        const { signal, includeDeltas = false } = options;
        const start = startRequest({ ...options, requestId: options.requestId ?? randomUUID() });
        let runId = "";
        return this.follow((afterSeq) => {
            const trace = traceHeaders(options);
            return this.service.startAndWatchRun({ start, afterSeq, includeDeltas }, { signal, headers: trace?.headers });
        }, (lastSeq) => (runId ? this.endedBefore(runId, lastSeq, signal) : Promise.resolve(false)), 0n, options, (event) => {
            runId = event.runId;
        });
    }
    /** Whether the run ended with no stored event after `lastSeq`. */
    async endedBefore(runId, lastSeq, signal) {
        const run = await this.service.getRun({ id: runId }, { signal });
        return isTerminal(run) && run.lastEventSeq <= lastSeq;
    }
    /**
     * Events of the streams `open(lastSeq)` opens, reopened after the last
     * stored event delivered whenever one drops, until the terminal event:
     * stored events once each, token deltas continuing their attempt's text.
     */
    async *follow(open, ended, afterSeq, options, seen = () => { }) {
        const { signal } = options;
        let lastSeq = afterSeq;
        const streamed = new Map();
        const backoff = new Backoff(options.reconnectBackoff ?? { initialMs: 100, maxMs: 5_000 });
        for (;;) {
            try {
                for await (const event of open(lastSeq)) {
                    backoff.reset();
                    seen(event);
                    if (event.type === RunEventType.TOKEN_DELTA) {
                        const delta = continuation(event, streamed);
                        if (delta) {
                            yield delta;
                        }
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
                if (await ended(lastSeq)) {
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
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
/**
 * What a token delta adds to its attempt's text as this watch already
 * delivered it (`streamed`: UTF-8 bytes per attempt id), or undefined. One
 * server stream never repeats text; after a reconnect its catch-up holds the
 * text from the start, so the part delivered before is cut off.
 */
function continuation(event, streamed) {
    const bytes = utf8.encode(event.delta);
    const offset = Number(event.deltaOffset);
    const end = offset + bytes.length;
    const have = streamed.get(event.attemptId);
    if (have === undefined || (event.catchUp && have === 0)) {
        streamed.set(event.attemptId, end);
        return event;
    }
    if (end <= have) {
        return undefined;
    }
    streamed.set(event.attemptId, end);
    if (offset >= have) {
        return event;
    }
    return {
        ...event,
        delta: fromUtf8.decode(bytes.subarray(have - offset)),
        deltaOffset: BigInt(have),
        catchUp: false,
    };
}
/**
 * The text of each attempt's model call as a watch delivers it: feed it
 * every event (`add`); `text(attemptId)` is the answer so far, and the
 * stored output once the attempt succeeded.
 */
export class AnswerText {
    texts = new Map();
    /** The attempt that spoke last. */
    lastAttemptId = "";
    /** Takes an event; returns the text it added, if any. */
    add(event) {
        if (event.type === RunEventType.TOKEN_DELTA) {
            this.lastAttemptId = event.attemptId;
            const before = this.texts.get(event.attemptId) ?? "";
            this.texts.set(event.attemptId, event.catchUp ? event.delta : before + event.delta);
            return event.delta;
        }
        if (event.type === RunEventType.TASK_SUCCEEDED && event.output?.kind.case === "text") {
            const output = event.output.kind.value;
            const before = this.texts.get(event.attemptId) ?? "";
            this.texts.set(event.attemptId, output);
            this.lastAttemptId = event.attemptId;
            const rest = output.startsWith(before) ? output.slice(before.length) : "";
            return rest || undefined;
        }
        return undefined;
    }
    /** An attempt's text (default: the last one that spoke). */
    text(attemptId = "") {
        return this.texts.get(attemptId || this.lastAttemptId) ?? "";
    }
}
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