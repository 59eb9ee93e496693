// The Worker against a real server: typed input/output, progress, failures
// and retries, cancellation, slots, graceful shutdown, bad input.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  RunEventType,
  RunStatus,
  TaskFailure,
  Worker,
  fromValue,
} from "../dist/index.js";
import type { TaskHandler, TaskloomClient, WorkerOptions } from "../dist/index.js";
import { workerChain } from "./chains.js";
import { TestServer, eventually, sleep, uniqueId } from "./harness.js";

let server: TestServer;
let client: TaskloomClient;
const quiet = { warn: () => undefined };

before(async () => {
  server = await TestServer.start();
  client = server.client();
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Starts a worker serving `queue`; returns it and its run() promise. */
function startWorker(queue: string, handler: TaskHandler, options: WorkerOptions = {}) {
  const worker = new Worker(client, { logger: quiet, ...options }).handle(queue, handler);
  const running = worker.run();
  return { worker, running };
}

describe("worker", () => {
  test("typed input in, output out, progress as TASK_PROGRESS events", async () => {
    const queue = uniqueId("happy");
    const seen: unknown[] = [];
    const { worker, running } = startWorker(
      queue,
      async (task) => {
        seen.push(task.input);
        assert.equal(task.queue, queue);
        assert.equal(task.attempt, 1);
        assert.equal(task.taskId, "remote");
        assert.equal(task.handler, "worker");
        assert.equal(task.value.kind.case, "json");
        await task.progress("halfway", { pct: 50 });
        return { found: (task.input as { q: string }).q.toUpperCase(), hits: 3 };
      },
      { slots: 2, name: "happy-worker", labels: { zone: "test" } },
    );
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("happy"), queue), input: { q: "rust" } });
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.deepEqual(fromValue(done.output), { found: "RUST", hits: 3 });
      assert.deepEqual(seen, [{ q: "rust" }]);
      const { events } = await client.runs.events(run.id);
      const progress = events.filter((e) => e.type === RunEventType.TASK_PROGRESS);
      assert.equal(progress.length, 1);
      assert.equal(progress[0].message, "halfway");
      assert.deepEqual(progress[0].data, { pct: 50 });

      const { workers } = await client.workers.list({ queue });
      assert.equal(workers.length, 1);
      assert.equal(workers[0].workerId, worker.workerId);
      assert.equal(workers[0].name, "happy-worker");
      assert.equal(workers[0].slots, 2);
      assert.deepEqual(workers[0].labels, { zone: "test" });
      assert.match(workers[0].sdkVersion, /^typescript\/\d+\.\d+\.\d+/);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("a thrown error is a retryable failure; the retry succeeds", async () => {
    const queue = uniqueId("flaky");
    const attempts: number[] = [];
    const { worker, running } = startWorker(queue, (task) => {
      attempts.push(task.attempt);
      if (task.attempt === 1) {
        throw new Error("transient glitch");
      }
      return "second time lucky";
    });
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("flaky"), queue, 3), input: "x" });
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(fromValue(done.output), "second time lucky");
      assert.deepEqual(attempts, [1, 2]);
      const { events } = await client.runs.events(run.id);
      const failed = events.find((e) => e.type === RunEventType.TASK_FAILED);
      assert.match(failed?.message ?? "", /transient glitch/);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("TaskFailure with retryable: false fails the run despite retries left", async () => {
    const queue = uniqueId("fatal");
    let calls = 0;
    const { worker, running } = startWorker(queue, () => {
      calls += 1;
      throw new TaskFailure("input is garbage", { retryable: false });
    });
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("fatal"), queue, 3), input: "x" });
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(done.status, RunStatus.FAILED);
      assert.match(done.error?.message ?? "", /input is garbage/);
      assert.equal(calls, 1);
      const { attempts } = await client.workers.deadLetters({ queue });
      assert.equal(attempts.length, 1);
      assert.equal(attempts[0].runId, run.id);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("CancelRun aborts task.signal within about a heartbeat and drops the result", async () => {
    const queue = uniqueId("cancel");
    let started = false;
    let abortedAfterMs = -1;
    let cancelledAt = 0;
    const { worker, running } = startWorker(queue, async (task) => {
      started = true;
      await new Promise<void>((resolve) => task.signal.addEventListener("abort", () => resolve(), { once: true }));
      abortedAfterMs = Date.now() - cancelledAt;
      return "too late";
    });
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("cancel"), queue), input: "x" });
      await eventually("handler start", () => (started ? true : undefined));
      cancelledAt = Date.now();
      await client.runs.cancel(run.id, { reason: "user changed their mind" });
      await eventually("abort", () => (abortedAfterMs >= 0 ? true : undefined), 5_000);
      assert.ok(abortedAfterMs < 1_500, `aborted after ${abortedAfterMs} ms`);
      await sleep(300);
      const done = await client.runs.get(run.id);
      assert.equal(done.status, RunStatus.CANCELLED);
      assert.equal(done.output, undefined);
      assert.equal(worker.activeTasks, 0);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("a task longer than the heartbeat timeout keeps its session: the worker answers pings", async () => {
    // The server closes a session that leaves a ping unanswered past the
    // heartbeat timeout (1 s here) and ends its leases.
    const queue = uniqueId("long");
    const { worker, running } = startWorker(queue, async () => {
      await sleep(3_000);
      return "done in one go";
    });
    try {
      const sessions = async () => (await client.workers.list({ queue })).workers.map((w) => w.sessionId);
      const first = await eventually("a session", async () => {
        const open = await sessions();
        return open.length === 1 ? open : undefined;
      });
      const run = await client.runs.start({ chain: workerChain(uniqueId("long"), queue), input: "x" });
      const done = await client.runs.wait(run.id, { timeoutMs: 15_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(fromValue(done.output), "done in one go");
      assert.deepEqual(await sessions(), first);
      const { attempts } = await client.runs.attempts(run.id);
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.leaseExpiries]),
        [[1, 0]],
      );
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("slots bound concurrency", async () => {
    const queue = uniqueId("slots");
    let current = 0;
    let peak = 0;
    const { worker, running } = startWorker(
      queue,
      async (task) => {
        current += 1;
        peak = Math.max(peak, current);
        await sleep(200);
        current -= 1;
        return task.input;
      },
      { slots: 2 },
    );
    try {
      const chain = workerChain(uniqueId("slots"), queue);
      await client.chains.create(chain);
      const runs = await Promise.all(
        [1, 2, 3, 4, 5].map((n) => client.runs.start({ chainId: chain.id, input: n })),
      );
      const done = await Promise.all(runs.map((r) => client.runs.wait(r.id, { timeoutMs: 15_000 })));
      assert.deepEqual(done.map((r) => r.status), Array(5).fill(RunStatus.SUCCEEDED));
      assert.deepEqual(done.map((r) => fromValue(r.output)), [1, 2, 3, 4, 5]);
      assert.equal(peak, 2);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("graceful shutdown lets a running handler finish and report", async () => {
    const queue = uniqueId("drain");
    let started = false;
    const { worker, running } = startWorker(queue, async () => {
      started = true;
      await sleep(600);
      return "finished while draining";
    });
    const run = await client.runs.start({ chain: workerChain(uniqueId("drain"), queue), input: "x" });
    await eventually("handler start", () => (started ? true : undefined));
    await worker.shutdown({ graceMs: 5_000 });
    await running;
    const done = await client.runs.get(run.id);
    assert.equal(done.status, RunStatus.SUCCEEDED);
    assert.equal(fromValue(done.output), "finished while draining");
  });

  test("shutdown past its grace aborts and releases; another worker completes the task", async () => {
    const queue = uniqueId("handoff");
    let aborted = false;
    let started = false;
    const first = startWorker(queue, async (task) => {
      started = true;
      await new Promise<void>((resolve) => task.signal.addEventListener("abort", () => resolve(), { once: true }));
      aborted = true;
      return "never recorded";
    });
    const run = await client.runs.start({ chain: workerChain(uniqueId("handoff"), queue), input: "x" });
    await eventually("handler start", () => (started ? true : undefined));
    await first.worker.shutdown({ graceMs: 100 });
    await first.running;
    assert.equal(aborted, true);
    const second = startWorker(queue, (task) => `done by second, attempt ${task.attempt}`);
    try {
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      // Released, not failed: the same attempt (no retry spent) finished it.
      assert.equal(fromValue(done.output), "done by second, attempt 1");
    } finally {
      await second.worker.shutdown({ graceMs: 1_000 });
      await second.running;
    }
  });

  test("bad input throws clear errors", async () => {
    assert.throws(() => new Worker(client, { slots: 0 }), /slots must be an integer from 1/);
    assert.throws(() => new Worker(client, { slots: 1.5 }), /slots/);
    const worker = new Worker(client, { logger: quiet });
    assert.throws(() => worker.handle("", () => 1), /invalid queue name/);
    assert.throws(() => worker.handle("has space", () => 1), /invalid queue name/);
    assert.throws(() => worker.handle("internal", () => 1), /internal/);
    await assert.rejects(worker.run(), /no handlers/);
    const twice = new Worker(client, { logger: quiet }).handle("q", () => 1);
    assert.throws(() => twice.handle("q", () => 2), /already has a handler/);
  });
  test("a task continues the trace its run was started in", async () => {
    const queue = uniqueId("traced");
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const caller = `00-${traceId}-00f067aa0ba902b7-01`;
    const seen: string[] = [];
    const { worker, running } = startWorker(queue, async (task) => {
      seen.push(task.traceparent);
      return "traced";
    });
    try {
      const run = await client.runs.start({
        chain: workerChain(uniqueId("traced"), queue),
        input: "x",
        traceparent: caller,
      });
      assert.equal(run.traceparent, caller);
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(done.traceparent, caller);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
    assert.equal(seen.length, 1);
    const [version, taskTrace, taskSpan, flags] = seen[0].split("-");
    // The task's span is its attempt's, in the caller's trace.
    assert.deepEqual([version, taskTrace, flags], ["00", traceId, "01"]);
    assert.equal(taskSpan.length, 16);
    assert.notEqual(taskSpan, "00f067aa0ba902b7");
    assert.notEqual(taskSpan, "0".repeat(16));
  });
});
