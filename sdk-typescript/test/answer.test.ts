// Token deltas give the whole answer whenever a watch joins: startAndWatch
// from the first token, watch joining mid-answer (caught up first). A real
// server and a fake OpenAI-compatible model on loopback that streams slowly.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { AnswerText, BackendType, RunEventType } from "../dist/index.js";
import type { RunEvent, TaskloomClient } from "../dist/index.js";
import { goto } from "./chains.js";
import { TestServer } from "./harness.js";

const CHUNKS = Array.from({ length: 20 }, (_, i) => `wörd${i}·🙂 `);
const ANSWER = CHUNKS.join("");

/** `/v1/chat/completions`, streamed one chunk every 20 ms. */
class FakeModel {
  private readonly server: Server;

  constructor() {
    this.server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", async () => {
        const usage = { prompt_tokens: 3, completion_tokens: CHUNKS.length };
        if (!(JSON.parse(body) as { stream?: boolean }).stream) {
          response.writeHead(200, { "content-type": "application/json" });
          response.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: ANSWER } }], usage }));
          return;
        }
        response.writeHead(200, { "content-type": "text/event-stream" });
        for (const chunk of CHUNKS) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          response.write(`data: ${JSON.stringify({ choices: [{ delta: { content: chunk } }] })}\n\n`);
        }
        const last = { choices: [{ delta: {}, finish_reason: "stop" }], usage };
        response.end(`data: ${JSON.stringify(last)}\n\ndata: [DONE]\n\n`);
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

const askChain = {
  id: "ask",
  tasks: [
    {
      id: "ask",
      handler: "raw_string",
      promptTemplate: "Say something.",
      executeConfig: { model: "fake-model" },
      transition: goto("end"),
    },
  ],
};

let server: TestServer;
let client: TaskloomClient;
let model: FakeModel;

before(async () => {
  model = new FakeModel();
  await model.listen();
  server = await TestServer.start();
  client = server.client();
  const backend = await client.backends.createBackend({
    name: "fake",
    type: BackendType.OPENAI_COMPATIBLE,
    baseUrl: model.url,
  });
  await client.backends.assignBackendToPool("internal_tasks_pool", backend.id);
});

after(async () => {
  client?.close();
  await server?.stop();
  await model?.close();
});

const deltaText = (events: RunEvent[]) =>
  events
    .filter((e) => e.type === RunEventType.TOKEN_DELTA)
    .map((e) => e.delta)
    .join("");

describe("answers", () => {
  test("startAndWatch sees every token; a watch joining mid-answer is caught up", async () => {
    const first: RunEvent[] = [];
    const answer = new AnswerText();
    for await (const event of client.runs.startAndWatch({ chain: askChain, input: "go", includeDeltas: true })) {
      first.push(event);
      answer.add(event);
      if (event.type === RunEventType.TOKEN_DELTA && answer.text().length >= 30) break;
    }
    const runId = first[0].runId;
    assert.equal(first.find((e) => e.type !== RunEventType.TOKEN_DELTA)?.seq, 1n);
    const late: RunEvent[] = [];
    const joined = new AnswerText();
    for await (const event of client.runs.watch(runId, { includeDeltas: true })) {
      late.push(event);
      joined.add(event);
    }
    const deltas = late.filter((e) => e.type === RunEventType.TOKEN_DELTA);
    assert.ok(deltas.length > 0 && deltas[0].catchUp && deltas[0].deltaOffset === 0n);
    assert.ok(deltas[0].delta.length >= 30);
    assert.equal(deltaText(late), ANSWER);
    assert.equal(joined.text(), ANSWER);
  });
});
