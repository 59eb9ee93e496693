// Serves the `search` task of examples/research.json (the twin of
// examples/python/worker.py).
//
//   node dist/worker.js [--address http://127.0.0.1:50051] [--queue search] [--slots 4]
//
// Stop it with Ctrl-C: it finishes (or hands back) what it holds first.

import { parseArgs } from "node:util";
import { TaskFailure, Worker, createClient } from "@taskloom/sdk";

const { values: options } = parseArgs({
  options: {
    address: { type: "string", default: "http://127.0.0.1:50051" },
    queue: { type: "string", default: "search" },
    slots: { type: "string", default: "4" },
  },
});

const NOTES: Record<string, string> = {
  sky: "Sunlight scatters off air molecules; blue light scatters the most (Rayleigh).",
  tea: "Tea leaves release tannins faster in hotter water.",
};

const client = createClient({ address: options.address, apiKey: process.env.TASKLOOM_API_KEY });
const worker = new Worker(client, { slots: Number(options.slots), name: "example-search" });

worker.handle(options.queue, async (task) => {
  const question = typeof task.input === "string" ? task.input : "";
  if (!question.trim()) {
    throw new TaskFailure("an empty question cannot be searched", { retryable: false });
  }
  await task.progress("searching", { question });
  // A real worker would call a search index here.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const found = Object.entries(NOTES)
    .filter(([word]) => question.toLowerCase().includes(word))
    .map(([, note]) => note);
  return found.join(" ") || `No notes about '${question}'.`;
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void worker.shutdown({ graceMs: 10_000 }));
}

console.log(`serving queue '${options.queue}' as ${worker.workerId}`);
await worker.run();
client.close();
