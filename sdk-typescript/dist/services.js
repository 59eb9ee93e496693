// Wraps a generated service into a Connect client whose calls throw
// `TaskloomError`s and whose mutating calls are idempotent: a request with a
// `request_id` field gets a fresh UUID unless the caller set one, and is
// retried with that same id when the server is unavailable, so a retry can
// never start a second run or create a second resource. Reads (Get, List,
// Validate) are retried as they are.
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { Cancelled, toTaskloomError, Unavailable } from "./errors.js";
import { sleep } from "./backoff.js";
export const defaultRetryOptions = {
    maxRetries: 4,
    initialDelayMs: 100,
    maxDelayMs: 2_000,
};
/** A Connect client of `service` with typed errors and idempotent retries. */
export function createServiceClient(service, transport, retry = defaultRetryOptions) {
    const raw = createClient(service, transport);
    const wrapped = {};
    for (const method of service.methods) {
        const call = raw[method.localName];
        wrapped[method.localName] =
            method.methodKind === "unary"
                ? unaryWithRetries(method, call, retry)
                : (request, options) => rethrowTyped(call(request, options), options);
    }
    return wrapped;
}
function unaryWithRetries(method, call, retry) {
    const hasRequestId = method.input.fields.some((field) => field.localName === "requestId");
    // Reads change nothing, so they are safe to retry too.
    const idempotent = hasRequestId || /^(Get|List|Validate)/.test(method.name);
    return async (request, options) => {
        if (!idempotent) {
            return callTyped(call, request, options);
        }
        const given = (request ?? {});
        const withId = !hasRequestId || (typeof given.requestId === "string" && given.requestId !== "")
            ? given
            : { ...given, requestId: randomUUID() };
        for (let attempt = 0;; attempt++) {
            try {
                return await callTyped(call, withId, options);
            }
            catch (error) {
                if (!(error instanceof Unavailable) || attempt >= retry.maxRetries || options?.signal?.aborted) {
                    throw error;
                }
                const delay = Math.min(retry.initialDelayMs * 2 ** attempt, retry.maxDelayMs);
                await sleep(delay, options?.signal);
            }
        }
    };
}
async function callTyped(call, request, options) {
    try {
        return await call(request, options);
    }
    catch (error) {
        throw typedError(error, options);
    }
}
async function* rethrowTyped(stream, options) {
    try {
        yield* stream;
    }
    catch (error) {
        throw typedError(error, options);
    }
}
/**
 * The typed error of a failed call. Node reports a connection that died
 * under a call (a killed server) as an HTTP/2 stream reset, which Connect
 * maps to CANCELLED; unless the caller's own signal aborted, that is a lost
 * connection: UNAVAILABLE, as gRPC's own transports and the Python SDK say.
 */
function typedError(error, options) {
    const typed = toTaskloomError(error);
    if (typed instanceof Cancelled && !options?.signal?.aborted) {
        return new Unavailable(Code.Unavailable, typed.message, { details: [...typed.details], cause: typed });
    }
    return typed;
}
//# sourceMappingURL=services.js.map