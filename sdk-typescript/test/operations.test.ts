// Operations calls against a real server: queues, replicas, the audit log
// and run deletion.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  ReplicaState,
  RunStatus,
  Worker,
} from "../dist/index.js";
import type { TaskloomClient } from "../dist/index.js";
import { workerChain } from "./chains.js";
import { TestServer, sleep, uniqueId } from "./harness.js";

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

describe("operations", () => {
  test("runs.delete removes finished runs only, idempotently", async () => {
    const run = await client.runs.start({ chain: workerChain(uniqueId("held"), "nobody-serves-this"), input: "x" });
    await assert.rejects(client.runs.delete(run.id), FailedPrecondition);
    await client.runs.cancel(run.id);
    const requestId = uniqueId("delete");
    await client.runs.delete(run.id, { requestId });
    await client.runs.delete(run.id, { requestId });
    await assert.rejects(client.runs.get(run.id), NotFound);
    await assert.rejects(client.runs.delete("no-such-run"), NotFound);
  });

  test("a paused queue offers nothing until resumed", async () => {
    const queue = uniqueId("paused-q");
    const paused = await client.queues.pause(queue);
    assert.ok(paused.paused);
    assert.equal(paused.pausedBy, "local");
    const run = await client.runs.start({ chain: workerChain(uniqueId("ops"), queue), input: "x" });
    let handled = 0;
    const worker = new Worker(client, { logger: quiet }).handle(queue, async () => {
      handled += 1;
      return "done";
    });
    const running = worker.run();
    try {
      await sleep(1_500);
      assert.equal(handled, 0);
      const listed = (await client.queues.list()).find((q) => q.name === queue);
      assert.ok(listed?.paused);
      assert.equal(listed?.ready, 1n);
      assert.ok(!(await client.queues.resume(queue)).paused);
      const done = await client.runs.wait(run.id, { timeoutMs: 15_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
      assert.equal(handled, 1);
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
    }
    await assert.rejects(client.queues.pause(""), InvalidArgument);
  });

  test("replicas.list shows this server; draining an unknown replica is NotFound", async () => {
    const replicas = await client.replicas.list();
    assert.equal(replicas.length, 1);
    assert.equal(replicas[0]?.state, ReplicaState.ACTIVE);
    assert.equal(replicas[0]?.version, (await client.info.version()).version);
    await assert.rejects(client.replicas.drain("no-such-replica"), NotFound);
  });

  test("the audit log names actions, actors and outcomes, in pages", async () => {
    const since = new Date(Date.now() - 1_000);
    const queue = uniqueId("audited-q");
    const requestId = uniqueId("pause");
    await client.queues.pause(queue, { requestId });
    await assert.rejects(client.chains.delete("no-such-chain"), NotFound);
    const { events } = await client.audit.list({ action: "PauseQueue", resourceId: queue, resourceType: "queue", startTime: since });
    assert.deepEqual(
      events.map((e) => [e.actor, e.resourceType, e.resourceId, e.requestId, e.outcome]),
      [["local", "queue", queue, requestId, "OK"]],
    );
    const failed = await client.audit.list({ action: "DeleteChain", resourceType: "chain", resourceId: "no-such-chain" });
    assert.deepEqual(failed.events.map((e) => e.outcome), ["NOT_FOUND"]);
    const first = await client.audit.list({ pageSize: 1 });
    assert.equal(first.events.length, 1);
    assert.ok(first.nextPageToken);
    const rest = await client.audit.list({ pageSize: 100, pageToken: first.nextPageToken });
    assert.ok(!rest.events.some((e) => e.id === first.events[0]?.id));
  });
});
