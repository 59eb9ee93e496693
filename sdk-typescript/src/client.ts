// The client: one HTTP/2 connection (native gRPC) to a taskloom server and
// a typed client per service.

import type { SecureClientSessionOptions } from "node:http2";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { BackendService } from "./gen/taskloom/v1/backend_pb.js";
import type { Backend, BackendState, Model, Pool, PullModelProgress } from "./gen/taskloom/v1/backend_pb.js";
import { ChainService } from "./gen/taskloom/v1/chain_pb.js";
import { HookService } from "./gen/taskloom/v1/hook_pb.js";
import type { Hook } from "./gen/taskloom/v1/hook_pb.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import { InfoService } from "./gen/taskloom/v1/info_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import { KeyService, NamespaceService } from "./gen/taskloom/v1/security_pb.js";
import type { GetVersionResponse } from "./gen/taskloom/v1/info_pb.js";
import { RunService } from "./gen/taskloom/v1/run_pb.js";
import type { TaskAttempt } from "./gen/taskloom/v1/run_pb.js";
import { WorkerService } from "./gen/taskloom/v1/worker_pb.js";
import type { WorkerSession } from "./gen/taskloom/v1/worker_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { toValue } from "./values.js";
import type { ValueInput } from "./values.js";
import { ChainsClient } from "./chains.js";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditClient, KeysClient, NamespacesClient, QueuesClient, ReplicasClient } from "./operations.js";
import { RunsClient } from "./runs.js";
import { createServiceClient, defaultRetryOptions } from "./services.js";
import type { RetryOptions } from "./services.js";

/** PEM material for TLS; strings or Buffers as node's tls module takes them. */
export interface TlsOptions {
  /** Trusted CA certificates (default: the system roots). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client private key, for mutual TLS. */
  key?: string | Buffer;
  /** Client certificate chain, for mutual TLS. */
  cert?: string | Buffer;
}

export interface ClientOptions {
  /**
   * `http://host:port` (plaintext) or `https://host:port` (TLS). A bare
   * `host:port` is plaintext, or TLS when `tls` is given.
   */
  address: string;
  /** Sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /**
   * Sent as `x-taskloom-namespace` on every call; the server uses
   * `default` without it.
   */
  namespace?: string;
  /** TLS settings; implies TLS. */
  tls?: TlsOptions;
  /** Extra Connect interceptors, run after the SDK's own. */
  interceptors?: Interceptor[];
  /** Retries of idempotent calls on UNAVAILABLE. */
  retry?: Partial<RetryOptions>;
}

/** The Connect clients of every service, each throwing `TaskloomError`s. */
export interface RawClients {
  chains: Client<typeof ChainService>;
  runs: Client<typeof RunService>;
  backends: Client<typeof BackendService>;
  hooks: Client<typeof HookService>;
  workers: Client<typeof WorkerService>;
  info: Client<typeof InfoService>;
  operations: Client<typeof OperationsService>;
  audit: Client<typeof AuditService>;
  keys: Client<typeof KeyService>;
  namespaces: Client<typeof NamespaceService>;
}

/**
 * BackendService helpers, named after their RPCs: `client.backends` (the
 * rest: `client.raw.backends`).
 */
export class BackendsClient {
  constructor(private readonly service: Client<typeof BackendService>) {}

  createBackend(
    backend: MessageInitShape<typeof BackendService.method.createBackend.input>["backend"],
    options: RequestIdOption & { backendId?: string } = {},
  ): Promise<Backend> {
    return this.service.createBackend({ backend, backendId: options.backendId, requestId: options.requestId });
  }

  getBackend(id: string): Promise<Backend> {
    return this.service.getBackend({ id });
  }

  async listBackends(options: PageOptions = {}): Promise<{ backends: Backend[]; nextPageToken: string }> {
    const { backends, nextPageToken } = await this.service.listBackends(options);
    return { backends, nextPageToken };
  }

  async deleteBackend(id: string, options: { etag?: string } = {}): Promise<void> {
    await this.service.deleteBackend({ id, etag: options.etag });
  }

  /**
   * Syncs a backend now (SyncBackend): checks its health and fetches its
   * model list anew; resolves to the backend with its new observed state (an
   * unreachable backend comes back with `state.health` UNHEALTHY).
   */
  sync(id: string): Promise<Backend> {
    return this.service.syncBackend({ id });
  }

  /**
   * What the reconciler last observed of a backend: health, latency, last
   * error, and `observedModels` with their context length, capabilities and
   * size.
   */
  async state(id: string): Promise<BackendState | undefined> {
    return (await this.getBackend(id)).state;
  }

  /**
   * Downloads a model onto an Ollama backend (PullModel), yielding progress;
   * the last message has `done`. A failed download throws (`Unavailable`,
   * or `NotFound` for a model the registry lacks); `FailedPrecondition` for
   * a backend that is not Ollama. Not retried: pull again (Ollama resumes).
   */
  pull(backendId: string, model: string, options: { signal?: AbortSignal } = {}): AsyncIterable<PullModelProgress> {
    return this.service.pullModel({ backendId, model }, { signal: options.signal });
  }

  async listPools(options: PageOptions = {}): Promise<{ pools: Pool[]; nextPageToken: string }> {
    const { pools, nextPageToken } = await this.service.listPools(options);
    return { pools, nextPageToken };
  }

  async assignBackendToPool(poolId: string, backendId: string): Promise<void> {
    await this.service.assignBackendToPool({ poolId, backendId });
  }

  createModel(
    model: MessageInitShape<typeof BackendService.method.createModel.input>["model"],
    options: RequestIdOption = {},
  ): Promise<Model> {
    return this.service.createModel({ model, requestId: options.requestId });
  }

  async listModels(options: PageOptions = {}): Promise<{ models: Model[]; nextPageToken: string }> {
    const { models, nextPageToken } = await this.service.listModels(options);
    return { models, nextPageToken };
  }

  async assignModelToPool(poolId: string, model: string): Promise<void> {
    await this.service.assignModelToPool({ poolId, model });
  }
}

/** HookService helpers: `client.hooks`. */
export class HooksClient {
  constructor(private readonly service: Client<typeof HookService>) {}

  create(
    hook: MessageInitShape<typeof HookService.method.createHook.input>["hook"],
    options: RequestIdOption = {},
  ): Promise<Hook> {
    return this.service.createHook({ hook, requestId: options.requestId });
  }

  get(name: string): Promise<Hook> {
    return this.service.getHook({ name });
  }

  async list(options: PageOptions = {}): Promise<{ hooks: Hook[]; nextPageToken: string }> {
    const { hooks, nextPageToken } = await this.service.listHooks(options);
    return { hooks, nextPageToken };
  }

  /** Replaces the fields named in `updateMask` (all when empty). */
  update(
    hook: MessageInitShape<typeof HookService.method.updateHook.input>["hook"],
    options: { updateMask?: string[]; etag?: string } = {},
  ): Promise<Hook> {
    return this.service.updateHook({ hook, updateMask: options.updateMask, etag: options.etag });
  }

  async delete(name: string, options: { etag?: string } = {}): Promise<void> {
    await this.service.deleteHook({ name, etag: options.etag });
  }
}

/** WorkerService unary helpers: `client.workers` (the stream is `Worker`). */
export class WorkersClient {
  constructor(private readonly service: Client<typeof WorkerService>) {}

  /** One page of connected worker sessions (every replica's). */
  async list(
    options: PageOptions & { queue?: string } = {},
  ): Promise<{ workers: WorkerSession[]; nextPageToken: string }> {
    const { workers, nextPageToken } = await this.service.listWorkers(options);
    return { workers, nextPageToken };
  }

  /** One page of attempts that failed for good, newest first. */
  async deadLetters(
    options: PageOptions & { queue?: string } = {},
  ): Promise<{ attempts: TaskAttempt[]; nextPageToken: string }> {
    const { attempts, nextPageToken } = await this.service.listDeadLetters(options);
    return { attempts, nextPageToken };
  }

  /** Completes a leased attempt outside a stream. */
  async complete(attemptId: string, leaseToken: string, output: ValueInput): Promise<void> {
    await this.service.completeTask({ attemptId, leaseToken, output: toValue(output) });
  }

  /** Fails a leased attempt outside a stream; tells whether another attempt was scheduled. */
  async fail(
    attemptId: string,
    leaseToken: string,
    message: string,
    options: { retryable?: boolean; retryDelayMs?: number } = {},
  ): Promise<boolean> {
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
  async extendLease(attemptId: string, leaseToken: string, extensionMs: number): Promise<Date | undefined> {
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
  constructor(private readonly service: Client<typeof InfoService>) {}

  /** Server version, API version, store and feature flags. */
  version(): Promise<GetVersionResponse> {
    return this.service.getVersion({});
  }
}

export interface TaskloomClient {
  chains: ChainsClient;
  runs: RunsClient;
  backends: BackendsClient;
  hooks: HooksClient;
  workers: WorkersClient;
  info: InfoClient;
  queues: QueuesClient;
  replicas: ReplicasClient;
  audit: AuditClient;
  /** KeyService: API keys kept in the server's store (admin only). */
  keys: KeysClient;
  /** NamespaceService: create, get, list, update and delete namespaces. */
  namespaces: NamespacesClient;
  /** Every RPC of every service, as Connect clients (typed errors, idempotent retries). */
  raw: RawClients;
  /** The Connect transport, for `createClient` of your own. */
  transport: Transport;
  /** Closes the connection; calls in flight fail. */
  close(): void;
}

/** Connects to a taskloom server (lazily: the first call dials). */
export function createClient(options: ClientOptions): TaskloomClient {
  const baseUrl = normalizeAddress(options.address, options.tls !== undefined);
  const nodeOptions: SecureClientSessionOptions = { ...options.tls };
  // Our own session manager, so that close() can end the HTTP/2 session.
  const sessionManager = new Http2SessionManager(
    baseUrl,
    { pingIntervalMs: 10_000, pingTimeoutMs: 5_000, idleConnectionTimeoutMs: 60_000 },
    nodeOptions,
  );
  const interceptors: Interceptor[] = [];
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
  const raw: RawClients = {
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
function normalizeAddress(address: string, tls: boolean): string {
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
