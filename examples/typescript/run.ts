// Starts a run of examples/research.json, watches it to the end and prints
// its events, and the model's answer token by token as it streams (the twin
// of examples/python/run.py). The `search` task needs a worker
// (dist/worker.js or examples/python/worker.py), the `answer` task a model
// backend.
//
//   node dist/run.js "Why is the sky blue?" [--address http://127.0.0.1:50051]
//       [--model-url http://127.0.0.1:8080 --model smollm2]
//   node dist/run.js --join RUN_ID        # watch a run already going
//
// With --model-url, an OpenAI-compatible backend at that URL is registered
// first and put in the built-in pools (skip it if the server has one). The
// run is started and watched in one call, so no token is missed; a watch
// that joins mid-answer (--join) is caught up with the text so far first.

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  AlreadyExists,
  AnswerText,
  BackendType,
  ModelCapability,
  RunEventType,
  RunStatus,
  createClient,
  fromValue,
  loadChain,
} from "@taskloom/sdk";
import type { TaskloomClient, Value } from "@taskloom/sdk";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    address: { type: "string", default: "http://127.0.0.1:50051" },
    "model-url": { type: "string" },
    model: { type: "string", default: "smollm2" },
    join: { type: "string" },
  },
});
const question = positionals[0] ?? "Why is the sky blue?";
const CHAIN = fileURLToPath(new URL("../../research.json", import.meta.url));

async function registerBackend(client: TaskloomClient, url: string, model: string): Promise<void> {
  let backendId: string;
  try {
    const backend = await client.backends.createBackend({
      name: "example-model",
      type: BackendType.OPENAI_COMPATIBLE,
      baseUrl: url,
    });
    backendId = backend.id;
  } catch (error) {
    if (error instanceof AlreadyExists) return;
    throw error;
  }
  for (const pool of ["internal_tasks_pool", "internal_chat_pool"]) {
    await client.backends.assignBackendToPool(pool, backendId);
  }
  await client.backends.createModel({
    name: model,
    contextLength: 8192,
    capabilities: [ModelCapability.CHAT, ModelCapability.PROMPT],
  });
  await client.backends.assignModelToPool("internal_tasks_pool", model);
}

/** A value as Python's `str()` prints it, so both examples print alike. */
function show(value: Value | undefined): string {
  const plain = fromValue(value);
  return typeof plain === "string" ? plain : JSON.stringify(plain, (_, v) => (typeof v === "bigint" ? v.toString() : v));
}

const client = createClient({ address: options.address, apiKey: process.env.TASKLOOM_API_KEY });
try {
  if (options["model-url"]) {
    await registerBackend(client, options["model-url"], options.model);
  }
  const events = options.join
    ? client.runs.watch(options.join, { includeDeltas: true })
    : client.runs.startAndWatch({ chain: await loadChain(CHAIN), input: question, includeDeltas: true });
  const answer = new AnswerText();
  let streaming = false;
  let runId = options.join ?? "";
  for await (const event of events) {
    if (!runId) {
      runId = event.runId;
      console.log(`run ${runId} started`);
    }
    if (event.type === RunEventType.TOKEN_DELTA) {
      // The answer as it streams, on a line of its own.
      if (!streaming) {
        process.stdout.write(`${"".padStart(3)} ${"TOKENS".padEnd(16)} ${event.taskId.padEnd(8)} `);
        streaming = true;
      }
      process.stdout.write((answer.add(event) ?? "").replaceAll("\n", " "));
      continue;
    }
    answer.add(event);
    if (streaming) {
      process.stdout.write("\n");
      streaming = false;
    }
    const kind = RunEventType[event.type];
    const detail = event.message || (event.output ? show(event.output) : "");
    console.log(`${String(event.seq).padStart(3)} ${kind.padEnd(16)} ${event.taskId.padEnd(8)} ${detail}`.trimEnd());
  }
  const finished = await client.runs.get(runId);
  console.log(`answer: ${answer.text()}`);
  console.log(`status: RUN_STATUS_${RunStatus[finished.status]}`);
  console.log(`output: ${show(finished.output)}`);
  console.log(`tokens: ${finished.usage?.inputTokens ?? 0} in, ${finished.usage?.outputTokens ?? 0} out`);
  if (finished.status !== RunStatus.SUCCEEDED) process.exitCode = 1;
} finally {
  client.close();
}
