// Namespaces against a real server: `client.namespaces` creates, reads,
// lists, updates and deletes them, and a client's `namespace` option keeps
// its chains, runs, workers and queues apart from every other namespace's.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  AlreadyExists,
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  PermissionDenied,
  RunStatus,
  Worker,
  isTerminal,
} from "../dist/index.js";
import type { TaskloomClient } from "../dist/index.js";
import { approvalChain, noopChain, workerChain } from "./chains.js";
import { TestServer, eventually, sleep } from "./harness.js";

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

const names = async (c: TaskloomClient): Promise<string[]> => (await c.namespaces.list()).map((ns) => ns.name);

describe("namespaces", () => {
  test("create, get, list, update and delete", async () => {
    assert.deepEqual(await names(client), ["default"]);
    assert.equal((await client.namespaces.get("default")).createdBy, "system");

    const created = await client.namespaces.create("life-b", {
      description: "the B team",
      pools: ["internal_tasks_pool"],
    });
    assert.equal(created.name, "life-b");
    assert.equal(created.description, "the B team");
    assert.deepEqual(created.pools, ["internal_tasks_pool"]);
    assert.equal(created.createdBy, "local");
    assert.ok(created.createTime);
    await client.namespaces.create("life-a");
    assert.deepEqual(await names(client), ["default", "life-a", "life-b"]);

    await assert.rejects(client.namespaces.create("life-a"), AlreadyExists);
    await assert.rejects(client.namespaces.create("Life_C"), (error: unknown) => {
      assert.ok(error instanceof InvalidArgument);
      return true;
    });
    await assert.rejects(client.namespaces.create("life-c", { pools: ["no-such-pool"] }), (error: unknown) => {
      assert.ok(error instanceof NotFound || error instanceof InvalidArgument, String(error));
      return true;
    });
    await assert.rejects(client.namespaces.get("life-c"), NotFound);

    const updated = await client.namespaces.update("life-b", { description: "renamed" });
    assert.equal(updated.description, "renamed");
    assert.deepEqual(updated.pools, []);
    await assert.rejects(client.namespaces.update("nobody"), NotFound);

    await assert.rejects(client.namespaces.delete("default"), FailedPrecondition);
    assert.equal(await client.namespaces.delete("life-b"), 0);
    await assert.rejects(client.namespaces.get("life-b"), NotFound);
    const gone = server.client({ namespace: "life-b" });
    await assert.rejects(gone.chains.list(), (error: unknown) => {
      assert.ok(error instanceof NotFound);
      assert.equal(error.reason, "NAMESPACE_NOT_FOUND");
      return true;
    });
    gone.close();
    assert.equal(await client.namespaces.delete("life-a"), 0);
  });

  test("the namespace option isolates chains, runs, workers and queues", async () => {
    await client.namespaces.create("team-a");
    await client.namespaces.create("team-b");
    const a = server.client({ namespace: "team-a" });
    const b = server.client({ namespace: "team-b" });
    try {
      await a.chains.create(noopChain("only-a"));
      await a.chains.create(workerChain("job", "q"));
      await b.chains.create(workerChain("job", "q"));
      assert.deepEqual(
        (await b.chains.list()).chains.map((c) => c.id),
        ["job"],
      );
      assert.deepEqual((await client.chains.list()).chains, []);
      await assert.rejects(b.chains.get("only-a"), NotFound);
      await assert.rejects(b.runs.start({ chainId: "only-a", input: "x" }), NotFound);

      // The same request id starts a run in each namespace.
      const runA = await a.runs.start({ chainId: "job", input: "a", requestId: "same" });
      const runB = await b.runs.start({ chainId: "job", input: "b", requestId: "same" });
      assert.notEqual(runA.id, runB.id);
      await assert.rejects(b.runs.get(runA.id), NotFound);
      await assert.rejects(b.runs.cancel(runA.id), NotFound);
      assert.deepEqual(
        (await b.runs.list()).runs.map((r) => r.id),
        [runB.id],
      );

      // A's q is paused in A alone; a worker in B gets B's task only.
      const paused = await a.queues.pause("q");
      assert.ok(paused.paused);
      assert.equal(paused.ready, 1n);
      assert.ok(!(await b.queues.list()).some((q) => q.paused));
      const handled: string[] = [];
      const worker = new Worker(b, { logger: quiet }).handle("q", async (task) => {
        handled.push(task.runId);
        return "done";
      });
      const running = worker.run();
      try {
        const done = await b.runs.wait(runB.id, { timeoutMs: 15_000 });
        assert.equal(done.status, RunStatus.SUCCEEDED);
        await sleep(1_000);
        assert.deepEqual(handled, [runB.id]);
        assert.equal((await b.workers.list()).workers.length, 1);
        assert.equal((await a.workers.list()).workers.length, 0);
        assert.ok(!isTerminal(await a.runs.get(runA.id)));
      } finally {
        await worker.shutdown({ graceMs: 1_000 });
        await running;
      }

      // A namespace with an unfinished run cannot be deleted.
      await assert.rejects(client.namespaces.delete("team-a"), FailedPrecondition);
      await a.runs.cancel(runA.id);
      await a.runs.wait(runA.id, { timeoutMs: 15_000 });
      assert.equal(await client.namespaces.delete("team-a"), 1);
      await assert.rejects(a.chains.list(), NotFound);
      assert.deepEqual(
        (await b.runs.list()).runs.map((r) => r.id),
        [runB.id],
      );
    } finally {
      a.close();
      b.close();
    }
  });

  test("a waiting run holds its namespace until answered", async () => {
    await client.namespaces.create("held");
    const held = server.client({ namespace: "held" });
    try {
      const run = await held.runs.start({ chain: approvalChain("approval"), input: "deploy" });
      await eventually("the run waits for input", async () =>
        (await held.runs.get(run.id)).status === RunStatus.WAITING_INPUT ? true : undefined,
      );
      await assert.rejects(client.namespaces.delete("held"), FailedPrecondition);
      await held.runs.submitInput(run.id, "ask", "yes");
      const done = await held.runs.wait(run.id, { timeoutMs: 15_000 });
      assert.equal(done.status, RunStatus.SUCCEEDED);
    } finally {
      held.close();
    }
    assert.equal(await client.namespaces.delete("held"), 1);
  });

  // Last: it closes the server with its first key.
  test("keys: only unbound admins manage namespaces; bound keys see their own", async () => {
    const admin = await client.namespaces.create("keys-a").then(() => client.keys.create("admin", "admin"));
    const asAdmin = server.client({ apiKey: admin.secret });
    await asAdmin.namespaces.create("keys-b");
    const bound = await asAdmin.keys.create("team", "operator", { namespace: "keys-a" });
    const operator = await asAdmin.keys.create("ops", "operator");
    const inTeam = server.client({ apiKey: bound.secret, namespace: "keys-a" });
    const asOperator = server.client({ apiKey: operator.secret });
    try {
      assert.deepEqual(await names(inTeam), ["keys-a"]);
      await assert.rejects(inTeam.namespaces.get("keys-b"), NotFound);
      await assert.rejects(asOperator.namespaces.create("keys-c"), PermissionDenied);
      await assert.rejects(asOperator.namespaces.delete("keys-a"), PermissionDenied);
      await assert.rejects(inTeam.namespaces.update("keys-a", { description: "mine" }), PermissionDenied);
    } finally {
      for (const c of [asAdmin, inTeam, asOperator]) c.close();
    }
  });
});
