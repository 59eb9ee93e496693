// A remote worker: holds one WorkerService.Connect stream, runs a handler
// per lease offer with at most `slots` at once, heartbeats the leases it
// runs, and survives reconnects: results are queued and re-sent on the next
// stream, and running leases are named in the next Hello so the server
// re-attaches them. See docs/workers.md for the protocol.

import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { AsyncQueue } from "./async-queue.js";
import { Backoff, sleep } from "./backoff.js";
import type { BackoffOptions } from "./backoff.js";
import type { TaskloomClient } from "./client.js";
import { InvalidArgument, PermissionDenied, toTaskloomError, Unauthenticated, Unimplemented } from "./errors.js";
import type { Value } from "./gen/taskloom/v1/common_pb.js";
import {
  WorkerMessageSchema,
  WorkerService,
} from "./gen/taskloom/v1/worker_pb.js";
import type { LeaseOffer, LeaseRef, ServerMessage, Welcome } from "./gen/taskloom/v1/worker_pb.js";
import { fromValue, toValue } from "./values.js";
import type { PlainValue, ValueInput } from "./values.js";

const packageVersion = (createRequire(import.meta.url)("../package.json") as { version: string })
  .version;

/** The SDK identification sent in Hello. */
export const SDK_VERSION = `typescript/${packageVersion}`;

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const MAX_SLOTS = 10_000;

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
export class TaskFailure extends Error {
  /** False makes the failure final regardless of the task's retry policy. */
  readonly retryable: boolean;
  /** Overrides the retry policy's delay before the next attempt. */
  readonly retryDelayMs: number | undefined;

  constructor(message: string, options: { retryable?: boolean; retryDelayMs?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "TaskFailure";
    this.retryable = options.retryable ?? true;
    this.retryDelayMs = options.retryDelayMs;
  }
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

type WorkerMessageInit = MessageInitShape<typeof WorkerMessageSchema>;

interface RunningTask {
  lease: LeaseRef;
  abort: AbortController;
}

/** A message about a lease waiting for the server's Ack. */
interface PendingResult {
  lease: LeaseRef;
  message: WorkerMessageInit;
}

/** One open stream, from Welcome until it ends. */
interface Session {
  outbound: AsyncQueue<WorkerMessageInit>;
  welcome: Welcome;
}

export class Worker {
  readonly workerId: string;
  readonly name: string;
  readonly slots: number;
  private readonly labels: Record<string, string>;
  private readonly backoff: Backoff;
  private readonly heartbeatIntervalMs: number;
  private readonly logger: WorkerLogger;
  private readonly service: Client<typeof WorkerService>;
  private readonly handlers = new Map<string, TaskHandler>();
  private readonly running = new Map<string, RunningTask>();
  private readonly pending = new Map<string, PendingResult>();
  private readonly changeListeners = new Set<() => void>();
  private session: Session | undefined;
  private started = false;
  private draining = false;
  /** Aborted to end the connection loop for good. */
  private readonly stop = new AbortController();
  /** Aborted to drop the current stream. */
  private connection: AbortController | undefined;

  constructor(client: TaskloomClient, options: WorkerOptions = {}) {
    const slots = options.slots ?? 10;
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
      throw new RangeError(`Worker: slots must be an integer from 1 to ${MAX_SLOTS}, got ${slots}`);
    }
    if (options.workerId !== undefined && options.workerId.trim() === "") {
      throw new TypeError("Worker: workerId must not be empty");
    }
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 5_000;
    if (!(heartbeatIntervalMs > 0)) {
      throw new RangeError(`Worker: heartbeatIntervalMs must be positive, got ${heartbeatIntervalMs}`);
    }
    this.service = client.raw.workers;
    this.slots = slots;
    this.workerId = options.workerId ?? randomUUID();
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    this.labels = { ...options.labels };
    this.heartbeatIntervalMs = heartbeatIntervalMs;
    this.backoff = new Backoff(options.backoff ?? { initialMs: 100, maxMs: 10_000 });
    this.logger = options.logger ?? console;
  }

  /** Serves `queue` with `handler`. Call before `run()`. */
  handle(queue: string, handler: TaskHandler): this {
    if (this.started) {
      throw new Error("Worker.handle: register handlers before run()");
    }
    if (!QUEUE_NAME.test(queue) || queue === "internal") {
      throw new TypeError(
        `Worker.handle: invalid queue name ${JSON.stringify(queue)} (expected [A-Za-z0-9_.-]{1,128}, not "internal")`,
      );
    }
    if (typeof handler !== "function") {
      throw new TypeError(`Worker.handle: the handler of queue ${queue} is not a function`);
    }
    if (this.handlers.has(queue)) {
      throw new Error(`Worker.handle: queue ${queue} already has a handler`);
    }
    this.handlers.set(queue, handler);
    return this;
  }

  /** Leases currently being executed. */
  get activeTasks(): number {
    return this.running.size;
  }

  /**
   * Connects and serves until `shutdown()`; reconnects forever on stream
   * loss. Rejects only on errors retrying cannot fix (e.g. the server
   * refusing the Hello as invalid).
   */
  async run(): Promise<void> {
    if (this.started) {
      throw new Error("Worker.run: already running (a Worker runs once)");
    }
    if (this.handlers.size === 0) {
      throw new Error("Worker.run: no handlers; call worker.handle(queue, handler) first");
    }
    this.started = true;
    while (!this.stop.signal.aborted) {
      try {
        await this.serveOneStream();
      } catch (error) {
        const typed = toTaskloomError(error);
        // The server refused this worker's hello or key: retrying cannot
        // change its answer.
        if (
          typed instanceof InvalidArgument ||
          typed instanceof Unimplemented ||
          typed instanceof Unauthenticated ||
          typed instanceof PermissionDenied
        ) {
          this.stop.abort();
          this.abortAll("worker stopped: " + typed.message);
          throw typed;
        }
      }
      if (this.stop.signal.aborted) {
        break;
      }
      await sleep(this.backoff.next(), this.stop.signal);
    }
  }

  /**
   * Stops taking work (SetSlots 0), lets running handlers finish and report
   * for up to `graceMs`, then aborts the rest and releases their leases
   * (back to READY without spending a retry), and closes the stream.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    const graceMs = options.graceMs ?? 30_000;
    if (this.stop.signal.aborted) {
      return;
    }
    this.draining = true;
    this.send({ msg: { case: "setSlots", value: { slots: 0 } } });
    await this.waitUntil(() => this.running.size === 0 && this.pending.size === 0, graceMs);
    for (const [attemptId, task] of this.running) {
      this.running.delete(attemptId);
      task.abort.abort(new Error("worker shutting down"));
      const release: WorkerMessageInit = { msg: { case: "release", value: { lease: task.lease } } };
      this.pending.set(attemptId, { lease: task.lease, message: release });
      this.send(release);
    }
    // Give releases (and late results) a moment to be acknowledged.
    await this.waitUntil(() => this.pending.size === 0, this.session ? 2_000 : 0);
    this.stop.abort();
    this.session?.outbound.close();
    this.connection?.abort();
  }

  private async serveOneStream(): Promise<void> {
    const outbound = new AsyncQueue<WorkerMessageInit>();
    const connection = new AbortController();
    this.connection = connection;
    const heldLeases = [...this.running.values(), ...this.pending.values()].map((t) => t.lease);
    outbound.push({
      msg: {
        case: "hello",
        value: {
          workerId: this.workerId,
          name: this.name,
          queues: [...this.handlers.keys()],
          slots: this.slots,
          labels: this.labels,
          sdkVersion: SDK_VERSION,
          heldLeases,
        },
      },
    });
    let heartbeat: NodeJS.Timeout | undefined;
    let lastHeard = Date.now();
    try {
      const responses = this.service.connect(outbound, { signal: connection.signal });
      for await (const message of responses) {
        lastHeard = Date.now();
        if (message.msg.case === "welcome") {
          this.session = { outbound, welcome: message.msg.value };
          heartbeat = this.startHeartbeats(message.msg.value, () => lastHeard, connection);
          this.onWelcome(message.msg.value);
        } else {
          this.onServerMessage(message);
        }
      }
    } finally {
      clearInterval(heartbeat);
      outbound.close();
      this.session = undefined;
      if (this.connection === connection) {
        this.connection = undefined;
      }
    }
  }

  private onWelcome(welcome: Welcome): void {
    this.backoff.reset();
    // The server gave these leases to someone else: stop their handlers
    // and forget their results.
    for (const lease of welcome.rejected) {
      this.running.get(lease.attemptId)?.abort.abort(new Error("lease rejected at re-attach"));
      this.running.delete(lease.attemptId);
      this.pending.delete(lease.attemptId);
    }
    if (this.draining) {
      this.send({ msg: { case: "setSlots", value: { slots: 0 } } });
    }
    // Results that were not acknowledged on the previous stream.
    for (const { message } of this.pending.values()) {
      this.send(message);
    }
    this.notifyChange();
  }

  /**
   * Heartbeats every interval the Welcome names; a server silent past its
   * heartbeat timeout (it pings every interval) is treated as gone: the
   * stream is dropped and the worker reconnects.
   */
  private startHeartbeats(welcome: Welcome, lastHeard: () => number, connection: AbortController): NodeJS.Timeout {
    const ms = welcome.heartbeatInterval ? durationMs(welcome.heartbeatInterval) : 0;
    const timeoutMs = (welcome.heartbeatTimeout ? durationMs(welcome.heartbeatTimeout) : 0) || 15_000;
    return setInterval(
      () => {
        if (Date.now() - lastHeard() > timeoutMs) {
          this.logger.warn(`taskloom worker: no message from the server for ${timeoutMs} ms; reconnecting`);
          connection.abort(new Error("server silent past the heartbeat timeout"));
          return;
        }
        const active = [...this.running.values(), ...this.pending.values()].map((t) => t.lease);
        this.send({ msg: { case: "heartbeat", value: { active } } });
      },
      ms > 0 ? ms : this.heartbeatIntervalMs,
    );
  }

  private onServerMessage(message: ServerMessage): void {
    const msg = message.msg;
    switch (msg.case) {
      case "lease":
        this.onOffer(msg.value);
        break;
      case "cancel": {
        const attemptId = msg.value.lease?.attemptId ?? "";
        const task = this.running.get(attemptId);
        if (task) {
          this.running.delete(attemptId);
          task.abort.abort(new Error(msg.value.reason || "lease cancelled"));
          this.notifyChange();
        }
        break;
      }
      case "ping":
        this.send({ msg: { case: "pong", value: { nonce: msg.value.nonce } } });
        break;
      case "ack": {
        const attemptId = msg.value.lease?.attemptId ?? "";
        const pending = this.pending.get(attemptId);
        if (pending && pending.lease.leaseToken === msg.value.lease?.leaseToken) {
          this.pending.delete(attemptId);
          if (!msg.value.accepted) {
            this.logger.warn(
              `taskloom worker: the server refused the ${pending.message.msg?.case} of attempt ${attemptId}: ${msg.value.code} ${msg.value.message}`,
            );
          }
          this.notifyChange();
        }
        break;
      }
      default:
        break;
    }
  }

  private onOffer(offer: LeaseOffer): void {
    const lease: LeaseRef = { $typeName: "taskloom.v1.LeaseRef", attemptId: offer.attemptId, leaseToken: offer.leaseToken };
    const handler = this.handlers.get(offer.queue);
    if (!handler || this.draining || this.running.size >= this.slots || this.running.has(offer.attemptId)) {
      // Beyond our slots (or not ours): hand it back without spending a retry.
      const release: WorkerMessageInit = { msg: { case: "release", value: { lease } } };
      this.pending.set(offer.attemptId, { lease, message: release });
      this.send(release);
      return;
    }
    const abort = new AbortController();
    this.running.set(offer.attemptId, { lease, abort });
    void this.execute(handler, offer, lease, abort);
  }

  private async execute(handler: TaskHandler, offer: LeaseOffer, lease: LeaseRef, abort: AbortController): Promise<void> {
    const task = this.taskFor(offer, lease, abort.signal);
    let result: WorkerMessageInit;
    try {
      const output = await handler(task);
      result = { msg: { case: "complete", value: { lease, output: toOutput(output) } } };
    } catch (error) {
      result = { msg: { case: "fail", value: failureOf(lease, error) } };
    }
    // A cancelled (or re-attach-rejected) lease is no longer ours: drop the result.
    if (abort.signal.aborted || this.running.get(offer.attemptId)?.abort !== abort) {
      return;
    }
    this.running.delete(offer.attemptId);
    this.pending.set(offer.attemptId, { lease, message: result });
    this.send(result);
    this.notifyChange();
  }

  private taskFor(offer: LeaseOffer, lease: LeaseRef, signal: AbortSignal): WorkerTask {
    const value = offer.input ?? toValue(null);
    return {
      input: fromValue(value),
      value,
      prompt: offer.prompt,
      systemInstruction: offer.systemInstruction,
      args: { ...offer.args },
      runId: offer.runId,
      taskId: offer.taskId,
      attemptId: offer.attemptId,
      attempt: offer.attempt,
      queue: offer.queue,
      chainId: offer.chainId,
      chainVersion: offer.chainVersion,
      handler: offer.handler,
      deadline: offer.deadline ? timestampDate(offer.deadline) : undefined,
      traceparent: offer.traceparent,
      signal,
      progress: async (message: string, data?: JsonObject) => {
        if (typeof message !== "string") {
          throw new TypeError("task.progress: message must be a string");
        }
        if (!signal.aborted) {
          this.send({ msg: { case: "progress", value: { lease, message, payload: data } } });
        }
      },
    };
  }

  /** Sends on the current stream; false when disconnected (the caller keeps what must survive). */
  private send(message: WorkerMessageInit): boolean {
    return this.session?.outbound.push(message) ?? false;
  }

  private abortAll(reason: string): void {
    for (const task of this.running.values()) {
      task.abort.abort(new Error(reason));
    }
    this.running.clear();
  }

  private notifyChange(): void {
    for (const listener of this.changeListeners) {
      listener();
    }
  }

  /** Resolves when `condition` holds or after `timeoutMs`. */
  private waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
    if (condition() || timeoutMs <= 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.changeListeners.delete(listener);
        resolve();
      };
      const listener = (): void => {
        if (condition()) {
          finish();
        }
      };
      const timer = setTimeout(finish, timeoutMs);
      this.changeListeners.add(listener);
    });
  }
}

function toOutput(output: ValueInput | undefined | void): Value {
  try {
    return toValue(output === undefined ? null : output);
  } catch (error) {
    throw new TaskFailure(`the handler returned a value that cannot be sent: ${(error as Error).message}`, {
      retryable: false,
      cause: error,
    });
  }
}

function failureOf(lease: LeaseRef, error: unknown) {
  if (error instanceof TaskFailure) {
    return {
      lease,
      message: error.message,
      retryable: error.retryable,
      retryDelay: error.retryDelayMs === undefined ? undefined : durationFromMs(error.retryDelayMs),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { lease, message: message || "handler failed", retryable: true };
}
