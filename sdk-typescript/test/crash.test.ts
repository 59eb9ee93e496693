// Crashes: a server SIGKILLed and restarted under a watcher, and a worker
// process SIGKILLed mid-task.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { RunEventType, RunStatus, Worker, fromValue } from "../dist/index.js";
import type { RunEvent, TaskloomClient } from "../dist/index.js";
import { approvalChain, workerChain } from "./chains.js";
import { TestServer, eventually, uniqueId } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
let server: TestServer;
let client: TaskloomClient;

before(async () => {
  server = await TestServer.start();
  client = server.client();
});

after(async () => {
  client?.close();
  await server?.stop();
});

describe("crashes", () => {
  test("watch resumes after the server is killed and restarted, every seq exactly once", async () => {
    const queue = uniqueId("resume");
    const run = await client.runs.start({ chain: workerChain(uniqueId("resume"), queue), input: "x" });
    const seen: RunEvent[] = [];
    const watching = (async () => {
      for await (const event of client.runs.watch(run.id, {
        reconnectBackoff: { initialMs: 50, maxMs: 500 },
      })) {
        seen.push(event);
      }
    })();
    await eventually("TASK_READY seen", () =>
      seen.some((e) => e.type === RunEventType.TASK_READY) ? true : undefined,
    );
    const beforeCrash = seen.length;
    await server.kill();
    await server.spawn();
    // The task finishes only after the restart, so the watcher must resume.
    const worker = new Worker(client, { logger: { warn: () => undefined } }).handle(queue, () => "after restart");
    const running = worker.run();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        watching,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("watch did not end")), 20_000);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
    const seqs = seen.map((e) => e.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), `seqs ${seqs.join(",")}`);
    assert.ok(seen.length > beforeCrash);
    assert.equal(seen.at(-1)?.type, RunEventType.RUN_SUCCEEDED);
    const { events } = await client.runs.events(run.id);
    assert.equal(seen.length, events.length);
    const done = await client.runs.get(run.id);
    assert.equal(fromValue(done.output), "after restart");
  });

  test("a worker process killed mid-task: the task finishes exactly once on its successor", async () => {
    const queue = uniqueId("kill");
    const out = join(server.dir, `${queue}.log`);
    writeFileSync(out, "");
    const children: ChildProcess[] = [];
    const startWorkerProcess = (holdMs: number): ChildProcess => {
      const child = spawn(process.execPath, [join(here, "fixtures", "append-worker.js")], {
        env: { ...process.env, TASKLOOM_ADDRESS: server.address, QUEUE: queue, OUT: out, HOLD_MS: String(holdMs) },
        stdio: ["ignore", "inherit", "inherit"],
      });
      children.push(child);
      return child;
    };
    try {
      const doomed = startWorkerProcess(60_000);
      const run = await client.runs.start({ chain: workerChain(uniqueId("kill"), queue, 3), input: "x" });
      await eventually("handler start", () => (readFileSync(out, "utf8").includes("start ") ? true : undefined));
      const exited = new Promise((resolve) => doomed.once("exit", resolve));
      doomed.kill("SIGKILL");
      await exited;
      const successor = startWorkerProcess(100);
      const done = await client.runs.wait(run.id, { timeoutMs: 20_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(fromValue(done.output), `handled by ${successor.pid}`);
      const lines = readFileSync(out, "utf8").trim().split("\n");
      assert.equal(lines.filter((l) => l === `done ${run.id}`).length, 1, lines.join("\n"));
      // Lease expiry returns the same attempt without spending a retry.
      const starts = lines.filter((l) => l.startsWith("start "));
      assert.equal(starts.length, 2);
      assert.equal(starts[0], starts[1]);
    } finally {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once("exit", resolve));
          child.kill("SIGTERM");
          await exited;
        }
      }
    }
  });

  test("a worker leaves a frozen server after the heartbeat timeout and reconnects", async () => {
    const queue = uniqueId("frozen");
    const warnings: string[] = [];
    const worker = new Worker(client, { logger: { warn: (message) => warnings.push(message) } }).handle(
      queue,
      () => "served after the stall",
    );
    const running = worker.run();
    try {
      const sessionOf = async () =>
        (await client.workers.list({ queue })).workers.find((w) => w.workerId === worker.workerId)?.sessionId;
      const first = await eventually("the worker connected", sessionOf);
      // Frozen, not dead: the TCP connection stays up but nothing arrives.
      server.signal("SIGSTOP");
      try {
        await eventually("the worker noticed the silence", () =>
          warnings.some((w) => w.includes("no message from the server")) ? true : undefined,
        );
      } finally {
        server.signal("SIGCONT");
      }
      await eventually("a new session", async () => {
        const session = await sessionOf();
        return session !== undefined && session !== first ? session : undefined;
      });
      const run = await client.runs.start({ chain: workerChain(uniqueId("frozen"), queue) });
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(fromValue(done.output), "served after the stall");
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("a worker re-attaches its running lease after a server restart and reports the result", async () => {
    const queue = uniqueId("reattach");
    let release: (() => void) | undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const worker = new Worker(client, { logger: { warn: () => undefined }, backoff: { initialMs: 50, maxMs: 300 } })
      .handle(queue, async (task) => {
        calls += 1;
        await gate;
        assert.equal(task.signal.aborted, false);
        return "survived the restart";
      });
    const running = worker.run();
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("reattach"), queue), input: "x" });
      await eventually("handler start", () => (calls === 1 ? true : undefined));
      await server.kill();
      await server.spawn();
      // Wait until the worker is connected again, then let the handler finish.
      await eventually("worker reconnected", async () => {
        const { workers } = await client.workers.list({ queue }).catch(() => ({ workers: [] }));
        return workers.length === 1 ? true : undefined;
      });
      release?.();
      const done = await client.runs.wait(run.id, { timeoutMs: 15_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(fromValue(done.output), "survived the restart");
      assert.equal(calls, 1);
    } finally {
      release?.();
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
  });

  test("calls are retried while the server restarts: one request id, one run", async () => {
    const retrying = server.client({ retry: { maxRetries: 60, initialDelayMs: 50, maxDelayMs: 500 } });
    try {
      const chain = await retrying.chains.create(approvalChain(uniqueId("retried")));
      await server.kill();
      const start = retrying.runs.start({ chainId: chain.id, input: "x" });
      const read = retrying.chains.get(chain.id);
      let settled = false;
      void Promise.allSettled([start, read]).then(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(settled, false, "the calls waited for the server");
      await server.spawn();
      const run = await start;
      assert.equal((await read).id, chain.id);
      const { runs } = await retrying.runs.list({ chainId: chain.id });
      assert.deepEqual(
        runs.map((r) => r.id),
        [run.id],
      );
    } finally {
      retrying.close();
    }
  });
});
