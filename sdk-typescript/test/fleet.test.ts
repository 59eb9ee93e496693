// Backends as a fleet: backends.sync, observed state and backends.pull
// against a real server and a fake Ollama on loopback.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import {
  BackendHealth,
  BackendType,
  FailedPrecondition,
  ModelCapability,
  NotFound,
  Unavailable,
} from "../dist/index.js";
import type { PullModelProgress, TaskloomClient } from "../dist/index.js";
import { TestServer, uniqueId } from "./harness.js";

/** `/api/tags`, `/api/show` and `/api/pull` the way Ollama answers them. */
class FakeOllama {
  models = ["llama3:latest"];
  pulls: string[] = [];
  private readonly server: Server;

  constructor() {
    this.server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        const json = (status: number, value: unknown, type = "application/json") => {
          response.writeHead(status, { "content-type": type });
          response.end(typeof value === "string" ? value : JSON.stringify(value));
        };
        if (request.method === "GET" && request.url === "/api/tags") {
          json(200, { models: this.models.map((name) => ({ name, size: 1234 })) });
        } else if (request.url === "/api/show") {
          json(200, { model_info: { "llama.context_length": 8192 }, capabilities: ["completion"] });
        } else if (request.url === "/api/pull") {
          const model = (JSON.parse(body) as { model: string }).model;
          this.pulls.push(model);
          const lines =
            model === "missing"
              ? [{ error: "pull model manifest: file does not exist" }]
              : [
                  { status: "pulling manifest" },
                  { status: "pulling abc", total: 200, completed: 100 },
                  { status: "pulling abc", total: 200, completed: 200 },
                  { status: "success" },
                ];
          if (model !== "missing") this.models.push(model);
          json(200, lines.map((line) => JSON.stringify(line) + "\n").join(""), "application/x-ndjson");
        } else {
          json(404, {});
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function collect(progress: AsyncIterable<PullModelProgress>): Promise<PullModelProgress[]> {
  const messages: PullModelProgress[] = [];
  for await (const message of progress) messages.push(message);
  return messages;
}

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

describe("backends as a fleet", () => {
  test("sync and observed state", async () => {
    const ollama = new FakeOllama();
    await ollama.listen();
    const backend = await client.backends.createBackend({
      name: uniqueId("local"),
      type: BackendType.OLLAMA,
      baseUrl: ollama.url,
    });
    const synced = await client.backends.sync(backend.id);
    assert.equal(synced.state?.health, BackendHealth.HEALTHY);
    assert.deepEqual(synced.state?.models, ["llama3:latest"]);
    const state = await client.backends.state(backend.id);
    const [model] = state?.observedModels ?? [];
    assert.equal(model?.name, "llama3:latest");
    assert.equal(model?.contextLength, 8192);
    assert.equal(model?.sizeBytes, 1234n);
    assert.deepEqual(model?.capabilities, [ModelCapability.CHAT, ModelCapability.PROMPT]);

    await ollama.close();
    const down = await client.backends.sync(backend.id);
    assert.equal(down.state?.health, BackendHealth.UNHEALTHY);
    assert.ok(down.state?.lastError);
    await assert.rejects(client.backends.sync("no-such-backend"), NotFound);
  });

  test("pull yields progress then done", async () => {
    const ollama = new FakeOllama();
    await ollama.listen();
    const backend = await client.backends.createBackend({
      name: uniqueId("local"),
      type: BackendType.OLLAMA,
      baseUrl: ollama.url,
    });
    const progress = await collect(client.backends.pull(backend.id, "qwen"));
    assert.equal(progress[0]?.status, "pulling manifest");
    assert.deepEqual(
      progress.filter((p) => p.totalBytes > 0n && !p.done).map((p) => [p.completedBytes, p.totalBytes]),
      [
        [100n, 200n],
        [200n, 200n],
      ],
    );
    const last = progress[progress.length - 1];
    assert.ok(last?.done && last.status === "success");
    assert.deepEqual(ollama.pulls, ["qwen"]);
    assert.ok((await client.backends.state(backend.id))?.models.includes("qwen"));

    await assert.rejects(collect(client.backends.pull(backend.id, "missing")), NotFound);
    const cloud = await client.backends.createBackend({
      name: uniqueId("cloud"),
      type: BackendType.OPENAI,
      baseUrl: ollama.url,
      apiKey: "k",
    });
    await assert.rejects(collect(client.backends.pull(cloud.id, "gpt-4o")), FailedPrecondition);
    await ollama.close();
    await assert.rejects(collect(client.backends.pull(backend.id, "qwen")), Unavailable);
  });
});
