// The client: one HTTP/2 connection (native gRPC) to a taskloom server and
// a typed client per service.
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { BackendService } from "./gen/taskloom/v1/backend_pb.js";
import { ChainService } from "./gen/taskloom/v1/chain_pb.js";
import { HookService } from "./gen/taskloom/v1/hook_pb.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import { InfoService } from "./gen/taskloom/v1/info_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import { KeyService, NamespaceService } from "./gen/taskloom/v1/security_pb.js";
import { RunService } from "./gen/taskloom/v1/run_pb.js";
import { WorkerService } from "./gen/taskloom/v1/worker_pb.js";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { toValue } from "./values.js";
import { ChainsClient } from "./chains.js";
import { AuditClient, KeysClient, NamespacesClient, QueuesClient, ReplicasClient } from "./operations.js";
import { RunsClient } from "./runs.js";
import { createServiceClient, defaultRetryOptions } from "./services.js";
/**
 * BackendService helpers, named after their RPCs: `client.backends` (the
 * rest: `client.raw.backends`).
 */
export class BackendsClient {
    service;
    constructor(service) {
        this.service = service;
    }
    createBackend(backend, options = {}) {
        return this.service.createBackend({ backend, backendId: options.backendId, requestId: options.requestId });
    }
    getBackend(id) {
        return this.service.getBackend({ id });
    }
    async listBackends(options = {}) {
        const { backends, nextPageToken } = await this.service.listBackends(options);
        return { backends, nextPageToken };
    }
    async deleteBackend(id, options = {}) {
        await this.service.deleteBackend({ id, etag: options.etag });
    }
    /**
     * Syncs a backend now (SyncBackend): checks its health and fetches its
     * model list anew; resolves to the backend with its new observed state (an
     * unreachable backend comes back with `state.health` UNHEALTHY).
     */
    sync(id) {
        return this.service.syncBackend({ id });
    }
    /**
     * What the reconciler last observed of a backend: health, latency, last
     * error, and `observedModels` with their context length, capabilities and
     * size.
     */
    async state(id) {
        return (await this.getBackend(id)).state;
    }
    /**
     * Downloads a model onto an Ollama backend (PullModel), yielding progress;
     * the last message has `done`. A failed download throws (`Unavailable`,
     * or `NotFound` for a model the registry lacks); `FailedPrecondition` for
     * a backend that is not Ollama. Not retried: pull again (Ollama resumes).
     */
    pull(backendId, model, options = {}) {
        return this.service.pullModel({ backendId, model }, { signal: options.signal });
    }
    async listPools(options = {}) {
        const { pools, nextPageToken } = await this.service.listPools(options);
        return { pools, nextPageToken };
    }
    async assignBackendToPool(poolId, backendId) {
        await this.service.assignBackendToPool({ poolId, backendId });
    }
    createModel(model, options = {}) {
        return this.service.createModel({ model, requestId: options.requestId });
    }
    async listModels(options = {}) {
        const { models, nextPageToken } = await this.service.listModels(options);
        return { models, nextPageToken };
    }
    async assignModelToPool(poolId, model) {
        await this.service.assignModelToPool({ poolId, model });
    }
}
/** HookService helpers: `client.hooks`. */
export class HooksClient {
    service;
    constructor(service) {
        this.service = service;
    }
    create(hook, options = {}) {
        return this.service.createHook({ hook, requestId: options.requestId });
    }
    get(name) {
        return this.service.getHook({ name });
    }
    async list(options = {}) {
        const { hooks, nextPageToken } = await this.service.listHooks(options);
        return { hooks, nextPageToken };
    }
    /** Replaces the fields named in `updateMask` (all when empty). */
    update(hook, options = {}) {
        return this.service.updateHook({ hook, updateMask: options.updateMask, etag: options.etag });
    }
    async delete(name, options = {}) {
        await this.service.deleteHook({ name, etag: options.etag });
    }
}
/** WorkerService unary helpers: `client.workers` (the stream is `Worker`). */
export class WorkersClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /** One page of connected worker sessions (every replica's). */
    async list(options = {}) {
        const { workers, nextPageToken } = await this.service.listWorkers(options);
        return { workers, nextPageToken };
    }
    /** One page of attempts that failed for good, newest first. */
    async deadLetters(options = {}) {
        const { attempts, nextPageToken } = await this.service.listDeadLetters(options);
        return { attempts, nextPageToken };
    }
    /** Completes a leased attempt outside a stream. */
    async complete(attemptId, leaseToken, output) {
        await this.service.completeTask({ attemptId, leaseToken, output: toValue(output) });
    }
    /** Fails a leased attempt outside a stream; tells whether another attempt was scheduled. */
    async fail(attemptId, leaseToken, message, options = {}) {
        const { willRetry } = await this.service.failTask({
            attemptId,
            leaseToken,
            message,
            retryable: options.retryable ?? true,
            retryDelay: options.retryDelayMs === undefined ? undefined : durationFromMs(options.retryDelayMs),
        });
        return willRetry;
    }
    /** Extends a lease by `extensionMs` from now; returns the new expiry. */
    async extendLease(attemptId, leaseToken, extensionMs) {
        const { leaseExpireTime } = await this.service.extendLease({
            attemptId,
            leaseToken,
            extension: durationFromMs(extensionMs),
        });
        return leaseExpireTime ? timestampDate(leaseExpireTime) : undefined;
    }
}
/** InfoService helpers: `client.info`. */
export class InfoClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /** Server version, API version, store and feature flags. */
    version() {
        return this.service.getVersion({});
    }
}
/** Connects to a taskloom server (lazily: the first call dials). */
export function createClient(options) {
    const baseUrl = normalizeAddress(options.address, options.tls !== undefined);
    const nodeOptions = { ...options.tls };
    // Our own session manager, so that close() can end the HTTP/2 session.
    const sessionManager = new Http2SessionManager(baseUrl, { pingIntervalMs: 10_000, pingTimeoutMs: 5_000, idleConnectionTimeoutMs: 60_000 }, nodeOptions);
    const interceptors = [];
    if (options.apiKey !== undefined) {
        const authorization = `Bearer ${options.apiKey}`;
        interceptors.push((next) => (request) => {
            request.header.set("authorization", authorization);
            return next(request);
        });
    }
    if (options.namespace !== undefined) {
        const namespace = options.namespace;
        interceptors.push((next) => (request) => {
            request.header.set("x-taskloom-namespace", namespace);
            return next(request);
        });
    }
    interceptors.push(...(options.interceptors ?? []));
    // The gRPC transport of connect-node always speaks HTTP/2 (it has no
    // httpVersion option, unlike the Connect transport).
    const transport = createGrpcTransport({
        baseUrl,
        sessionManager,
        interceptors,
    });
    const retry = { ...defaultRetryOptions, ...options.retry };
    const raw = {
        chains: createServiceClient(ChainService, transport, retry),
        runs: createServiceClient(RunService, transport, retry),
        backends: createServiceClient(BackendService, transport, retry),
        hooks: createServiceClient(HookService, transport, retry),
        workers: createServiceClient(WorkerService, transport, retry),
        info: createServiceClient(InfoService, transport, retry),
        operations: createServiceClient(OperationsService, transport, retry),
        audit: createServiceClient(AuditService, transport, retry),
        keys: createServiceClient(KeyService, transport, retry),
        namespaces: createServiceClient(NamespaceService, transport, retry),
    };
    return {
        chains: new ChainsClient(raw.chains),
        runs: new RunsClient(raw.runs),
        backends: new BackendsClient(raw.backends),
        hooks: new HooksClient(raw.hooks),
        workers: new WorkersClient(raw.workers),
        info: new InfoClient(raw.info),
        queues: new QueuesClient(raw.operations),
        replicas: new ReplicasClient(raw.operations),
        audit: new AuditClient(raw.audit),
        keys: new KeysClient(raw.keys),
        namespaces: new NamespacesClient(raw.namespaces),
        raw,
        transport,
        close: () => sessionManager.abort(),
    };
}
/** `host:port` → `http://host:port` (or `https://` with TLS options). */
function normalizeAddress(address, tls) {
    const trimmed = address.trim();
    if (trimmed === "") {
        throw new TypeError("createClient: address is empty (expected e.g. http://127.0.0.1:50051)");
    }
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)
        ? trimmed
        : `${tls ? "https" : "http"}://${trimmed}`;
    const url = new URL(withScheme);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(`createClient: address must be http:// or https://, got ${address}`);
    }
    if (tls && url.protocol === "http:") {
        throw new TypeError(`createClient: tls options given but the address is http:// (${address})`);
    }
    return url.origin;
}
//# sourceMappingURL=client.js.map