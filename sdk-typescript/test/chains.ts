// Chain definitions shared by the tests.

import type { ChainInput } from "../dist/index.js";

/** A transition to one task (or `end`). */
export function goto(target: string) {
  return { branches: [{ operator: "default", goto: { kind: { case: "stringValue" as const, value: target } } }] };
}

/** One `worker` task on `queue`, with an optional retry policy. */
export function workerChain(id: string, queue: string, maxAttempts = 1): ChainInput {
  return {
    id,
    tasks: [
      {
        id: "remote",
        handler: "worker",
        queue,
        retry: { maxAttempts, initialDelay: "10ms" },
        transition: goto("end"),
      },
    ],
  };
}

/** A `human_input` task asking for approval, then a noop. */
export function approvalChain(id: string): ChainInput {
  return {
    id,
    tasks: [
      { id: "ask", handler: "human_input", promptTemplate: "Approve {{ input }}?", transition: goto("done") },
      { id: "done", handler: "noop", transition: goto("end") },
    ],
  };
}

export function noopChain(id: string): ChainInput {
  return { id, tasks: [{ id: "only", handler: "noop", transition: goto("end") }] };
}
