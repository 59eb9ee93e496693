// RunService helpers: `client.runs`, including a `watch` that survives
// dropped streams and a `wait` built on it.

import { randomUUID } from "node:crypto";
import { fromJson, isMessage } from "@bufbuild/protobuf";
import { ValueSchema as JsonValueSchema, durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Backoff, sleep } from "./backoff.js";
import type { BackoffOptions } from "./backoff.js";
import type { ChainInput, PageOptions, RequestIdOption } from "./chains.js";
import {
  Aborted,
  Cancelled,
  Code,
  DeadlineExceeded,
  Internal,
  ResourceExhausted,
  TaskloomError,
  Unavailable,
  Unknown,
} from "./errors.js";
import { ValueSchema } from "./gen/taskloom/v1/common_pb.js";
import { RunEventType, RunService, RunStatus } from "./gen/taskloom/v1/run_pb.js";
import type {
  ExecuteChainResponse,
  ReplayRunResponse,
  Run,
  RunEvent,
  TaskAttempt,
} from "./gen/taskloom/v1/run_pb.js";
import { toJsonValue, toValue } from "./values.js";
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

const terminalEvents: ReadonlySet<RunEventType> = new Set([
  RunEventType.RUN_SUCCEEDED,
  RunEventType.RUN_FAILED,
  RunEventType.RUN_CANCELLED,
]);

const terminalStatuses: ReadonlySet<RunStatus> = new Set([
  RunStatus.SUCCEEDED,
  RunStatus.FAILED,
  RunStatus.CANCELLED,
]);

/** True for a run that has ended (succeeded, failed or cancelled). */
export function isTerminal(run: Run): boolean {
  return terminalStatuses.has(run.status);
}

/**
 * Errors after which a watch reconnects: the server went away or the
 * connection broke. A killed server surfaces as UNAVAILABLE, or as CANCELLED
 * when node resets the HTTP/2 stream (code CANCEL) — the caller's own abort
 * is told apart by its signal before this is asked.
 */
function isTransient(error: unknown): boolean {
  return (
    error instanceof Unavailable ||
    error instanceof Cancelled ||
    error instanceof Internal ||
    error instanceof Unknown ||
    error instanceof Aborted ||
    error instanceof ResourceExhausted ||
    error instanceof DeadlineExceeded
  );
}

/** RunService helpers: `client.runs`. */
export class RunsClient {
  constructor(private readonly service: Client<typeof RunService>) {}

  /** Starts a run (idempotent by `requestId`, a fresh one when omitted). */
  start(options: StartRunOptions): Promise<Run> {
    return this.service.startRun(startRequest(options), traceHeaders(options));
  }

  /** Starts a run and waits (server side) for it to end; output plus per-task trace. */
  execute(options: ExecuteOptions): Promise<ExecuteChainResponse> {
    const { waitTimeoutMs, ...start } = options;
    return this.service.executeChain(
      {
        ...startRequest(start),
        waitTimeout: waitTimeoutMs === undefined ? undefined : durationFromMs(waitTimeoutMs),
      },
      traceHeaders(start),
    );
  }

  get(runId: string): Promise<Run> {
    return this.service.getRun({ id: runId });
  }

  /** One page of runs, newest first. */
  async list(options: ListRunsOptions = {}): Promise<{ runs: Run[]; nextPageToken: string }> {
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
  async events(
    runId: string,
    options: PageOptions & { afterSeq?: number | bigint } = {},
  ): Promise<{ events: RunEvent[]; nextPageToken: string }> {
    const { events, nextPageToken } = await this.service.listRunEvents({
      runId,
      afterSeq: BigInt(options.afterSeq ?? 0),
      pageSize: options.pageSize,
      pageToken: options.pageToken,
    });
    return { events, nextPageToken };
  }

  /** One page of a run's task attempts in creation order. */
  async attempts(
    runId: string,
    options: PageOptions = {},
  ): Promise<{ attempts: TaskAttempt[]; nextPageToken: string }> {
    const { attempts, nextPageToken } = await this.service.listRunAttempts({ runId, ...options });
    return { attempts, nextPageToken };
  }

  cancel(runId: string, options: RequestIdOption & { reason?: string } = {}): Promise<Run> {
    return this.service.cancelRun({ id: runId, reason: options.reason, requestId: options.requestId });
  }

  /** Stops dispatching new tasks; `cancelRunning` also cancels executing attempts. */
  pause(runId: string, options: RequestIdOption & { cancelRunning?: boolean } = {}): Promise<Run> {
    return this.service.pauseRun({
      id: runId,
      cancelRunning: options.cancelRunning,
      requestId: options.requestId,
    });
  }

  resume(runId: string, options: RequestIdOption = {}): Promise<Run> {
    return this.service.resumeRun({ id: runId, requestId: options.requestId });
  }

  /** Continues a failed run from the task that failed. */
  retry(runId: string, options: RequestIdOption = {}): Promise<Run> {
    return this.service.retryRun({ id: runId, requestId: options.requestId });
  }

  /** Deletes a finished run with its attempts and events (`FailedPrecondition` before it ends). */
  async delete(runId: string, options: RequestIdOption = {}): Promise<void> {
    await this.service.deleteRun({ id: runId, requestId: options.requestId });
  }

  /** Re-derives a run's path from its recorded outputs and reports divergence. */
  replay(runId: string): Promise<ReplayRunResponse> {
    return this.service.replayRun({ id: runId });
  }

  /** Answers the `human_input` task `taskId` the run waits on. */
  submitInput(
    runId: string,
    taskId: string,
    answer: ValueInput,
    options: RequestIdOption = {},
  ): Promise<Run> {
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
  watch(runId: string, options: WatchOptions = {}): AsyncIterable<RunEvent> {
    const { signal, includeDeltas = false } = options;
    return this.follow(
      (afterSeq) => this.service.watchRun({ runId, afterSeq, includeDeltas }, { signal }),
      (lastSeq) => this.endedBefore(runId, lastSeq, signal),
      BigInt(options.afterSeq ?? 0),
      options,
    );
  }

  /**
   * Starts a run (as `start`) and watches it (as `watch`) in one call: the
   * watch exists before the run, so its first events and token deltas
   * cannot be missed, however fast the model answers. The start is
   * idempotent by `requestId` (one is made up when omitted): a dropped
   * stream is resumed by the same request, which starts nothing new and
   * watches on after the last stored event seen.
   */
  startAndWatch(options: StartRunOptions & Omit<WatchOptions, "afterSeq">): AsyncIterable<RunEvent> {
    const { signal, includeDeltas = false } = options;
    const start = startRequest({ ...options, requestId: options.requestId ?? randomUUID() });
    let runId = "";
    return this.follow(
      (afterSeq) => {
        const trace = traceHeaders(options);
        return this.service.startAndWatchRun(
          { start, afterSeq, includeDeltas },
          { signal, headers: trace?.headers },
        );
      },
      (lastSeq) => (runId ? this.endedBefore(runId, lastSeq, signal) : Promise.resolve(false)),
      0n,
      options,
      (event) => {
        runId = event.runId;
      },
    );
  }

  /** Whether the run ended with no stored event after `lastSeq`. */
  private async endedBefore(runId: string, lastSeq: bigint, signal: AbortSignal | undefined): Promise<boolean> {
    const run = await this.service.getRun({ id: runId }, { signal });
    return isTerminal(run) && run.lastEventSeq <= lastSeq;
  }

  /**
   * Events of the streams `open(lastSeq)` opens, reopened after the last
   * stored event delivered whenever one drops, until the terminal event:
   * stored events once each, token deltas continuing their attempt's text.
   */
  private async *follow(
    open: (afterSeq: bigint) => AsyncIterable<RunEvent>,
    ended: (lastSeq: bigint) => Promise<boolean>,
    afterSeq: bigint,
    options: { signal?: AbortSignal; reconnectBackoff?: BackoffOptions },
    seen: (event: RunEvent) => void = () => {},
  ): AsyncGenerator<RunEvent> {
    const { signal } = options;
    let lastSeq = afterSeq;
    const streamed = new Map<string, number>();
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
      } catch (error) {
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
  async wait(runId: string, options: WaitOptions = {}): Promise<Run> {
    const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)]
      .filter((s): s is AbortSignal => s !== undefined);
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
    } catch (error) {
      if (options.timeoutMs !== undefined && signal?.aborted && !options.signal?.aborted) {
        throw new DeadlineExceeded(
          Code.DeadlineExceeded,
          `run ${runId} did not end within ${options.timeoutMs} ms`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}

function abortError(signal: AbortSignal): TaskloomError {
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
function continuation(event: RunEvent, streamed: Map<string, number>): RunEvent | undefined {
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
  private readonly texts = new Map<string, string>();
  /** The attempt that spoke last. */
  lastAttemptId = "";

  /** Takes an event; returns the text it added, if any. */
  add(event: RunEvent): string | undefined {
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
  text(attemptId = ""): string {
    return this.texts.get(attemptId || this.lastAttemptId) ?? "";
  }
}

function traceHeaders(options: StartRunOptions) {
  return options.traceparent ? { headers: { traceparent: options.traceparent } } : undefined;
}

function startRequest(options: StartRunOptions) {
  const { input, inputType } = options;
  let runInput;
  if (input === undefined) {
    runInput = undefined;
  } else if (inputType && !isMessage(input, ValueSchema)) {
    runInput = { case: "input" as const, value: fromJson(JsonValueSchema, toJsonValue(input)) };
  } else {
    runInput = { case: "typedInput" as const, value: toValue(input) };
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
