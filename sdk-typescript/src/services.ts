// Wraps a generated service into a Connect client whose calls throw
// `TaskloomError`s and whose mutating calls are idempotent: a request with a
// `request_id` field gets a fresh UUID unless the caller set one, and is
// retried with that same id when the server is unavailable, so a retry can
// never start a second run or create a second resource. Reads (Get, List,
// Validate) are retried as they are.

import { randomUUID } from "node:crypto";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { CallOptions, Client, Transport } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { Cancelled, toTaskloomError, Unavailable } from "./errors.js";
import type { TaskloomError } from "./errors.js";
import { sleep } from "./backoff.js";

/** How often and how patiently idempotent calls are retried on UNAVAILABLE. */
export interface RetryOptions {
  /** Retries after the first try (default 4). */
  maxRetries: number;
  /** Delay before the first retry, doubled each time (default 100 ms). */
  initialDelayMs: number;
  /** Cap on the delay (default 2 s). */
  maxDelayMs: number;
}

export const defaultRetryOptions: RetryOptions = {
  maxRetries: 4,
  initialDelayMs: 100,
  maxDelayMs: 2_000,
};

type AnyFunction = (request: unknown, options?: CallOptions) => unknown;
type RequestRecord = Record<string, unknown>;

/** A Connect client of `service` with typed errors and idempotent retries. */
export function createServiceClient<S extends DescService>(
  service: S,
  transport: Transport,
  retry: RetryOptions = defaultRetryOptions,
): Client<S> {
  const raw = createClient(service, transport) as unknown as Record<string, AnyFunction>;
  const wrapped: Record<string, AnyFunction> = {};
  for (const method of service.methods) {
    const call = raw[method.localName];
    wrapped[method.localName] =
      method.methodKind === "unary"
        ? unaryWithRetries(method, call, retry)
        : (request, options) => rethrowTyped(call(request, options) as AsyncIterable<unknown>, options);
  }
  return wrapped as unknown as Client<S>;
}

function unaryWithRetries(method: DescMethod, call: AnyFunction, retry: RetryOptions): AnyFunction {
  const hasRequestId = method.input.fields.some((field) => field.localName === "requestId");
  // Reads change nothing, so they are safe to retry too.
  const idempotent = hasRequestId || /^(Get|List|Validate)/.test(method.name);
  return async (request, options) => {
    if (!idempotent) {
      return callTyped(call, request, options);
    }
    const given = (request ?? {}) as RequestRecord;
    const withId =
      !hasRequestId || (typeof given.requestId === "string" && given.requestId !== "")
        ? given
        : { ...given, requestId: randomUUID() };
    for (let attempt = 0; ; attempt++) {
      try {
        return await callTyped(call, withId, options);
      } catch (error) {
        if (!(error instanceof Unavailable) || attempt >= retry.maxRetries || options?.signal?.aborted) {
          throw error;
        }
        const delay = Math.min(retry.initialDelayMs * 2 ** attempt, retry.maxDelayMs);
        await sleep(delay, options?.signal);
      }
    }
  };
}

async function callTyped(call: AnyFunction, request: unknown, options?: CallOptions): Promise<unknown> {
  try {
    return await call(request, options);
  } catch (error) {
    throw typedError(error, options);
  }
}

async function* rethrowTyped<T>(stream: AsyncIterable<T>, options?: CallOptions): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (error) {
    throw typedError(error, options);
  }
}

/**
 * The typed error of a failed call. Node reports a connection that died
 * under a call (a killed server) as an HTTP/2 stream reset, which Connect
 * maps to CANCELLED; unless the caller's own signal aborted, that is a lost
 * connection: UNAVAILABLE, as gRPC's own transports and the Python SDK say.
 */
function typedError(error: unknown, options?: CallOptions): TaskloomError {
  const typed = toTaskloomError(error);
  if (typed instanceof Cancelled && !options?.signal?.aborted) {
    return new Unavailable(Code.Unavailable, typed.message, { details: [...typed.details], cause: typed });
  }
  return typed;
}
