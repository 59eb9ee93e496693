// The client helpers against a real server: chains, runs, typed errors,
// idempotency, watch/wait, and the read-only services.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  AlreadyExists,
  BackendType,
  Code,
  FailedPrecondition,
  InvalidArgument,
  ModelCapability,
  NotFound,
  RunEventType,
  RunStatus,
  TaskloomError,
  fromValue,
  loadChain,
  toValue,
} from "../dist/index.js";
import type { TaskloomClient } from "../dist/index.js";
import { approvalChain, goto, noopChain, workerChain } from "./chains.js";
import { TestServer, eventually, uniqueId } from "./harness.js";

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

describe("chains", () => {
  test("create, get, list, versions, update, delete, validate", async () => {
    const id = uniqueId("crud");
    const created = await client.chains.create(noopChain(id));
    assert.equal(created.id, id);
    assert.equal(created.version, 1n);
    assert.notEqual(created.etag, "");

    const fetched = await client.chains.get(id);
    assert.equal(fetched.tasks[0].handler, "noop");

    const updated = await client.chains.update(
      { ...noopChain(id), description: "second" },
      { etag: created.etag },
    );
    assert.equal(updated.version, 2n);
    assert.equal((await client.chains.get(id, { version: 1 })).description, "");
    assert.equal((await client.chains.get(id)).description, "second");

    const versions = await client.chains.versions(id);
    assert.deepEqual(
      versions.chains.map((c) => c.version),
      [2n, 1n],
    );
    const listed = await client.chains.list({ pageSize: 1000 });
    assert.ok(listed.chains.some((c) => c.id === id && c.version === 2n));

    const valid = await client.chains.validate(noopChain("fine"));
    assert.equal(valid.valid, true);
    const invalid = await client.chains.validate({ id: "bad", tasks: [{ id: "t", handler: "telepathy" }] });
    assert.equal(invalid.valid, false);
    assert.ok(invalid.violations.some((v) => v.field === "chain.tasks[0].handler"));

    await client.chains.delete(id);
    await assert.rejects(client.chains.get(id), NotFound);
  });

  test("loadChain reads JSON (camelCase, wrapped) and YAML (snake_case)", async () => {
    const json = join(server.dir, "chain.json");
    writeFileSync(
      json,
      JSON.stringify({
        input: "ignored",
        chain: {
          id: "from-json",
          tasks: [{ id: "ask", handler: "human_input", promptTemplate: "Ok {{ input }}?", transition: goto("end") }],
        },
      }),
    );
    const fromJsonFile = await loadChain(json);
    assert.equal(fromJsonFile.id, "from-json");
    assert.equal(fromJsonFile.tasks[0].promptTemplate, "Ok {{ input }}?");

    const yaml = join(server.dir, "chain.yaml");
    writeFileSync(
      yaml,
      [
        "id: from-yaml",
        "max_steps: 7",
        "tasks:",
        "  - id: remote",
        "    handler: worker",
        "    queue: q1",
        "    prompt_template: 'do {{ input }}'",
        "    transition:",
        "      branches:",
        "        - operator: default",
        "          goto: end",
        "",
      ].join("\n"),
    );
    const fromYaml = await loadChain(yaml);
    assert.equal(fromYaml.maxSteps, 7);
    assert.equal(fromYaml.tasks[0].queue, "q1");
    assert.equal(fromYaml.tasks[0].promptTemplate, "do {{ input }}");
    const stored = await client.chains.create(fromYaml);
    assert.equal(stored.id, "from-yaml");

    const bad = join(server.dir, "chain.txt");
    writeFileSync(bad, "{}");
    await assert.rejects(loadChain(bad), /\.json, \.yaml or \.yml/);
  });
});

describe("typed errors", () => {
  test("NotFound for a missing run and chain, with ResourceInfo", async () => {
    const error = await client.runs.get("no-such-run").catch((e: unknown) => e);
    assert.ok(error instanceof NotFound);
    assert.ok(error instanceof TaskloomError);
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.reason, "NOT_FOUND");
    assert.equal(error.resourceType, "run");
    assert.equal(error.resourceName, "no-such-run");
    const chainError = await client.chains.get("no-such-chain").catch((e: unknown) => e);
    assert.ok(chainError instanceof NotFound);
    assert.equal(chainError.resourceType, "chain");
    assert.equal(chainError.resourceName, "no-such-chain");
  });

  test("InvalidArgument carries field violations", async () => {
    const error = await client.chains
      .create({ id: uniqueId("bad"), tasks: [{ id: "end", handler: "telepathy" }] })
      .catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgument);
    assert.equal(error.code, Code.InvalidArgument);
    const fields = error.fieldViolations.map((v) => v.field);
    assert.ok(fields.includes("chain.tasks[0].id"), fields.join());
    assert.ok(fields.includes("chain.tasks[0].handler"), fields.join());
    assert.ok(error.fieldViolations.every((v) => v.description.length > 0));
  });

  test("AlreadyExists for a taken chain id", async () => {
    const id = uniqueId("taken");
    await client.chains.create(noopChain(id));
    const error = await client.chains.create(noopChain(id)).catch((e: unknown) => e);
    assert.ok(error instanceof AlreadyExists);
    assert.equal(error.code, Code.AlreadyExists);
  });

  test("FailedPrecondition for input to a run that is not waiting, and a stale lease token", async () => {
    const run = await client.runs.execute({ chain: noopChain(uniqueId("done")), input: "x" });
    assert.equal(run.run?.status, RunStatus.SUCCEEDED);
    const error = await client.runs.submitInput(run.run!.id, "only", "late").catch((e: unknown) => e);
    assert.ok(error instanceof FailedPrecondition, String(error));
    assert.equal(error.code, Code.FailedPrecondition);

    const attempt = (await client.runs.attempts(run.run!.id)).attempts[0];
    const stale = await client.raw.workers
      .completeTask({ attemptId: attempt.id, leaseToken: "stale", output: toValue("x") })
      .catch((e: unknown) => e);
    assert.ok(stale instanceof FailedPrecondition, String(stale));
    for (const call of [
      () => client.workers.complete(attempt.id, "stale", "x"),
      () => client.workers.fail(attempt.id, "stale", "no", { retryable: false }),
      () => client.workers.extendLease(attempt.id, "stale", 1_000),
    ]) {
      const refused = await call().catch((e: unknown) => e);
      assert.ok(refused instanceof FailedPrecondition, String(refused));
    }
    const missing = await client.workers.complete("no-such-attempt", "t", "x").catch((e: unknown) => e);
    assert.ok(missing instanceof NotFound, String(missing));
  });
});

describe("runs", () => {
  test("request ids: an explicit id is idempotent, omitted ids are fresh", async () => {
    const chain = noopChain(uniqueId("idem"));
    await client.chains.create(chain);
    const requestId = `req-${uniqueId("r")}`;
    const first = await client.runs.start({ chainId: chain.id, input: "a", requestId });
    const again = await client.runs.start({ chainId: chain.id, input: "a", requestId });
    assert.equal(first.id, again.id);
    assert.equal(first.requestId, requestId);
    const one = await client.runs.start({ chainId: chain.id, input: "a" });
    const two = await client.runs.start({ chainId: chain.id, input: "a" });
    assert.notEqual(one.id, two.id);
    assert.notEqual(one.requestId, "");
    assert.notEqual(one.requestId, two.requestId);
  });

  test("start, get, list, events, attempts, watch, wait, replay", async () => {
    const chain = noopChain(uniqueId("flow"));
    await client.chains.create(chain);
    const run = await client.runs.start({
      chainId: chain.id,
      input: { question: "why?" },
      labels: { suite: "ts" },
      priority: 5,
      tenant: "acme",
    });
    const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
    assert.equal(done.status, RunStatus.SUCCEEDED);
    assert.deepEqual(fromValue(done.output), { question: "why?" });
    assert.deepEqual(done.labels, { suite: "ts" });

    const got = await client.runs.get(run.id);
    assert.equal(got.lastEventSeq, done.lastEventSeq);

    const listed = await client.runs.list({ chainId: chain.id, labels: { suite: "ts" }, tenant: "acme" });
    assert.deepEqual(listed.runs.map((r) => r.id), [run.id]);
    const none = await client.runs.list({ chainId: chain.id, statuses: [RunStatus.FAILED] });
    assert.equal(none.runs.length, 0);

    const { events } = await client.runs.events(run.id);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => BigInt(i + 1)),
    );
    assert.equal(events.at(-1)?.type, RunEventType.RUN_SUCCEEDED);
    const later = await client.runs.events(run.id, { afterSeq: 2 });
    assert.equal(later.events[0].seq, 3n);

    const watched = [];
    for await (const event of client.runs.watch(run.id)) {
      watched.push(event);
    }
    assert.deepEqual(
      watched.map((e) => e.seq),
      events.map((e) => e.seq),
    );
    const tail = [];
    for await (const event of client.runs.watch(run.id, { afterSeq: events.length - 1 })) {
      tail.push(event.type);
    }
    assert.deepEqual(tail, [RunEventType.RUN_SUCCEEDED]);

    const { attempts } = await client.runs.attempts(run.id);
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0].taskId, "only");

    const replay = await client.runs.replay(run.id);
    assert.equal(replay.diverged, false);
    assert.deepEqual(replay.path, ["only"]);
  });

  test("execute returns output and trace; inputType sends JSON input", async () => {
    const result = await client.runs.execute({
      chain: noopChain(uniqueId("exec")),
      input: 42,
      inputType: "number",
      waitTimeoutMs: 10_000,
    });
    assert.equal(result.run?.status, RunStatus.SUCCEEDED);
    assert.equal(fromValue(result.output), 42);
    assert.deepEqual(result.trace.map((t) => t.taskId), ["only"]);
  });

  test("human input: waiting, submitInput, output", async () => {
    const chain = approvalChain(uniqueId("approve"));
    const run = await client.runs.start({ chain, input: "deploy" });
    const waiting = await eventually("WAITING_INPUT", async () => {
      const current = await client.runs.get(run.id);
      return current.status === RunStatus.WAITING_INPUT ? current : undefined;
    });
    assert.equal(waiting.inputRequest?.taskId, "ask");
    assert.equal(waiting.inputRequest?.prompt, "Approve deploy?");
    await client.runs.submitInput(run.id, "ask", "approved");
    const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
    assert.equal(done.status, RunStatus.SUCCEEDED);
    assert.equal(fromValue(done.output), "approved");
  });

  test("pause, resume, cancel, and wait timing out", async () => {
    const run = await client.runs.start({ chain: workerChain(uniqueId("steer"), "nobody-serves-this"), input: "x" });
    const paused = await client.runs.pause(run.id);
    assert.equal(paused.status, RunStatus.PAUSED);
    const resumed = await client.runs.resume(run.id);
    assert.notEqual(resumed.status, RunStatus.PAUSED);
    await assert.rejects(client.runs.wait(run.id, { timeoutMs: 300 }), (e: unknown) => {
      assert.ok(e instanceof TaskloomError);
      assert.equal(e.code, Code.DeadlineExceeded);
      return true;
    });
    const cancelled = await client.runs.cancel(run.id, { reason: "test over" });
    assert.equal(cancelled.status, RunStatus.CANCELLED);
    const done = await client.runs.wait(run.id);
    assert.equal(done.status, RunStatus.CANCELLED);
  });

  test("retry continues a failed run", async () => {
    const chain = {
      id: uniqueId("retry"),
      tasks: [{ id: "boom", handler: "raise_error", errorMessage: "nope", transition: goto("end") }],
    };
    const run = await client.runs.start({ chain, input: "x" });
    const failed = await client.runs.wait(run.id, { timeoutMs: 10_000 });
    assert.equal(failed.status, RunStatus.FAILED);
    assert.equal(failed.error?.taskId, "boom");
    const retried = await client.runs.retry(run.id);
    assert.equal(retried.id, run.id);
    assert.notEqual(retried.status, RunStatus.FAILED);
    const again = await client.runs.wait(run.id, { timeoutMs: 10_000 });
    assert.equal(again.status, RunStatus.FAILED);
    const { attempts } = await client.runs.attempts(run.id);
    assert.equal(attempts.length, 2);
  });
});

describe("other services", () => {
  test("hooks and backends helpers", async () => {
    const name = uniqueId("hook");
    const created = await client.hooks.create({
      name,
      url: "http://127.0.0.1:9/search",
      method: "post",
      timeout: { seconds: 30n },
      secretHeaders: { Authorization: "Bearer top-secret" },
    });
    assert.deepEqual(created.secretHeaderNames, ["Authorization"]);
    assert.deepEqual(created.secretHeaders, {});
    assert.equal((await client.hooks.get(name)).url, "http://127.0.0.1:9/search");
    assert.ok((await client.hooks.list()).hooks.some((h) => h.name === name));
    const updated = await client.hooks.update(
      { name, timeout: { seconds: 5n } },
      { updateMask: ["timeout"], etag: created.etag },
    );
    assert.equal(updated.timeout?.seconds, 5n);
    await client.hooks.delete(name, { etag: updated.etag });
    await assert.rejects(client.hooks.get(name), NotFound);

    const backend = await client.backends.createBackend({
      name: uniqueId("local"),
      type: BackendType.OLLAMA,
      baseUrl: "http://127.0.0.1:9",
    });
    assert.equal((await client.backends.getBackend(backend.id)).id, backend.id);
    await client.backends.assignBackendToPool("internal_chat_pool", backend.id);
    const model = await client.backends.createModel({
      name: uniqueId("tiny"),
      contextLength: 2048,
      capabilities: [ModelCapability.CHAT],
    });
    await client.backends.assignModelToPool("internal_chat_pool", model.name);
    assert.ok((await client.backends.listModels()).models.some((m) => m.name === model.name));
    const invalid = await client.backends.createBackend({ name: "", baseUrl: "nope" }).catch((e: unknown) => e);
    assert.ok(invalid instanceof InvalidArgument, String(invalid));
    assert.ok(invalid.fieldViolations.some((v) => v.field === "backend.name"));
    await client.backends.deleteBackend(backend.id);
    await assert.rejects(client.backends.getBackend(backend.id), NotFound);
  });

  test("info.version, backends.listBackends, workers.list and deadLetters, raw clients", async () => {
    const version = await client.info.version();
    assert.equal(version.apiVersion, "v1");
    assert.equal(version.store, "sqlite");
    const backends = await client.backends.listBackends();
    assert.ok(Array.isArray(backends.backends));
    const pools = await client.backends.listPools();
    assert.ok(pools.pools.some((p) => p.id === "internal_chat_pool"), JSON.stringify(pools.pools.map((p) => p.id)));
    const workers = await client.workers.list({ queue: "nobody" });
    assert.deepEqual(workers.workers, []);
    const dead = await client.workers.deadLetters();
    assert.ok(Array.isArray(dead.attempts));
    const raw = await client.raw.info.getVersion({});
    assert.equal(raw.version, version.version);
    const hooks = await client.hooks.list();
    assert.ok(Array.isArray(hooks.hooks));
  });
});

describe("values", () => {
  test("toValue and fromValue map kinds both ways", () => {
    assert.equal(toValue("a").kind.case, "text");
    assert.equal(toValue(true).kind.case, "boolean");
    assert.equal(toValue(3).kind.case, "integer");
    assert.equal(toValue(3n).kind.case, "integer");
    assert.equal(toValue(2.5).kind.case, "number");
    assert.equal(toValue(null).kind.case, "json");
    assert.equal(toValue([1, { a: "b" }]).kind.case, "json");
    assert.deepEqual(fromValue(toValue({ a: [1, null, "x"] })), { a: [1, null, "x"] });
    assert.equal(fromValue(toValue(2 ** 60 * 4)), 2 ** 62);
    assert.equal(fromValue(toValue(9007199254740993n)), 9007199254740993n);
    assert.throws(() => toValue(Number.NaN), /finite/);
  });
});
