// The API clients: gRPC-Web on the page's own origin (the server serves the
// UI and gRPC-Web on the same address), with the API key and namespace the
// user entered, kept in sessionStorage for this tab only.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BackendService } from "./gen/taskloom/v1/backend_pb.js";
import { ChainService } from "./gen/taskloom/v1/chain_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import { RunService } from "./gen/taskloom/v1/run_pb.js";
import { WorkerService } from "./gen/taskloom/v1/worker_pb.js";
import { InfoService } from "./gen/taskloom/v1/info_pb.js";
import { NamespaceService } from "./gen/taskloom/v1/security_pb.js";

const KEY_ITEM = "taskloom.apiKey";
const NAMESPACE_ITEM = "taskloom.namespace";

function readItem(name: string): string {
  try {
    return sessionStorage.getItem(name) ?? "";
  } catch {
    return "";
  }
}

function writeItem(name: string, value: string): void {
  try {
    if (value) sessionStorage.setItem(name, value);
    else sessionStorage.removeItem(name);
  } catch {
    // Storage disabled: the value lasts until the page reloads.
  }
  memory[name] = value;
}

const memory: Record<string, string> = {};

export function apiKey(): string {
  return memory[KEY_ITEM] ?? readItem(KEY_ITEM);
}

export function namespace(): string {
  return memory[NAMESPACE_ITEM] ?? readItem(NAMESPACE_ITEM);
}

type Listener = () => void;
const listeners = new Set<Listener>();

/** Calls `listener` whenever the key or namespace changes; returns the unsubscribe. */
export function onSettingsChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function saveSettings(key: string, ns: string): void {
  writeItem(KEY_ITEM, key.trim());
  writeItem(NAMESPACE_ITEM, ns.trim());
  for (const listener of listeners) listener();
}

// Read at every call, so a key entered after an UNAUTHENTICATED error is used
// by the next call without rebuilding the clients.
const credentials: Interceptor = (next) => (request) => {
  const key = apiKey();
  if (key) request.header.set("authorization", `Bearer ${key}`);
  const ns = namespace();
  if (ns) request.header.set("x-taskloom-namespace", ns);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [credentials],
});

export const runs: Client<typeof RunService> = createClient(RunService, transport);
export const chains: Client<typeof ChainService> = createClient(ChainService, transport);
export const workers: Client<typeof WorkerService> = createClient(WorkerService, transport);
export const operations: Client<typeof OperationsService> = createClient(OperationsService, transport);
export const backends: Client<typeof BackendService> = createClient(BackendService, transport);
export const info: Client<typeof InfoService> = createClient(InfoService, transport);
export const namespaces: Client<typeof NamespaceService> = createClient(NamespaceService, transport);

/** An error as shown to the user: the gRPC code's name and the message. */
export interface ShownError {
  code: string;
  message: string;
  unauthenticated: boolean;
}

export function describeError(error: unknown): ShownError {
  const e = ConnectError.from(error);
  const code = Code[e.code] ?? String(e.code);
  return {
    // Code names as gRPC spells them: UNAUTHENTICATED, NOT_FOUND, ...
    code: code.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(),
    message: e.rawMessage,
    unauthenticated: e.code === Code.Unauthenticated,
  };
}

/** Whether the error means the server cancelled a stream we stopped ourselves. */
export function isAbort(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Canceled;
}

/** Whether asking again cannot help: the thing is gone, or not ours to see. */
export function isFinal(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.NotFound || code === Code.PermissionDenied || code === Code.InvalidArgument;
}

/** A fresh idempotency key for a mutating call. */
export function requestId(): string {
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
