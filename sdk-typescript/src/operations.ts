// OperationsService, AuditService, KeyService and NamespaceService helpers:
// `client.queues`, `client.replicas`, `client.audit`, `client.keys` and
// `client.namespaces`.

import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import type { AuditEvent } from "./gen/taskloom/v1/audit_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import type { Queue, Replica } from "./gen/taskloom/v1/operations_pb.js";
import { KeyService, NamespaceService } from "./gen/taskloom/v1/security_pb.js";
import type { ApiKey, CreateApiKeyResponse, Namespace } from "./gen/taskloom/v1/security_pb.js";

/** Queues: depth, oldest ready age, leases, caps; pause and resume. */
export class QueuesClient {
  constructor(private readonly service: Client<typeof OperationsService>) {}

  async list(): Promise<Queue[]> {
    return (await this.service.listQueues({})).queues;
  }

  /** Stops the queue's work from being offered on every replica; leases in flight finish. */
  pause(name: string, options: RequestIdOption = {}): Promise<Queue> {
    return this.service.pauseQueue({ name, requestId: options.requestId });
  }

  resume(name: string, options: RequestIdOption = {}): Promise<Queue> {
    return this.service.resumeQueue({ name, requestId: options.requestId });
  }
}

/** Replicas: the server processes sharing a store. */
export class ReplicasClient {
  constructor(private readonly service: Client<typeof OperationsService>) {}

  async list(): Promise<Replica[]> {
    return (await this.service.listReplicas({})).replicas;
  }

  /** Makes a replica stop taking work and hand back what it holds. */
  drain(id: string, options: RequestIdOption = {}): Promise<Replica> {
    return this.service.drainReplica({ id, requestId: options.requestId });
  }
}

/** Filters of `client.audit.list`; every one given must match. */
export interface AuditFilter extends PageOptions {
  actor?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  startTime?: Date;
  endTime?: Date;
}

/** The audit log: who did what to which resource, and how it ended. */
export class AuditClient {
  constructor(private readonly service: Client<typeof AuditService>) {}

  async list(filter: AuditFilter = {}): Promise<{ events: AuditEvent[]; nextPageToken: string }> {
    const { startTime, endTime, ...rest } = filter;
    const { events, nextPageToken } = await this.service.listAuditEvents({
      ...rest,
      startTime: startTime === undefined ? undefined : timestampFromDate(startTime),
      endTime: endTime === undefined ? undefined : timestampFromDate(endTime),
    });
    return { events, nextPageToken };
  }
}

/** What a new key may do and for how long. */
export interface CreateKeyOptions {
  /** Binds the key to one namespace (every namespace without it). */
  namespace?: string;
  /** Worker keys: the only queues the key may serve. */
  queues?: string[];
  /** When the key stops working. */
  expireTime?: Date;
  /** How long the key works from now, in milliseconds (instead of `expireTime`). */
  ttlMs?: number;
}

/** API keys kept in the server's store; every call needs an admin key. */
export class KeysClient {
  constructor(private readonly service: Client<typeof KeyService>) {}

  /**
   * Creates a key; `role` is `admin`, `operator`, `worker` or `viewer`.
   * The response's `secret` is shown only this once.
   */
  create(name: string, role: string, options: CreateKeyOptions = {}): Promise<CreateApiKeyResponse> {
    return this.service.createApiKey({
      name,
      role,
      namespace: options.namespace ?? "",
      queues: options.queues ?? [],
      expireTime: options.expireTime === undefined ? undefined : timestampFromDate(options.expireTime),
      ttl: options.ttlMs === undefined ? undefined : durationFromMs(options.ttlMs),
    });
  }

  /** Every key, revoked and expired ones included; never a secret. */
  async list(): Promise<ApiKey[]> {
    return (await this.service.listApiKeys({})).keys;
  }

  /** Revokes a key: every replica refuses it within a second. */
  revoke(id: string): Promise<ApiKey> {
    return this.service.revokeApiKey({ id });
  }
}

/** What a namespace holds besides its name. */
export interface NamespaceOptions {
  /** Free text for people, at most 1,024 characters. */
  description?: string;
  /** The pools its LLM tasks may use (each must exist); empty for every pool. */
  pools?: string[];
}

/**
 * Namespaces: the isolated sets of chains, runs, hooks, workers and queues
 * a client's `namespace` option picks. Creating, updating and deleting need
 * an admin key bound to no namespace; a key bound to one namespace sees only
 * that one. These calls name namespaces in their requests, whatever the
 * client's own `namespace` is.
 */
export class NamespacesClient {
  constructor(private readonly service: Client<typeof NamespaceService>) {}

  /**
   * Creates a namespace (1 to 63 lowercase letters, digits and `-`);
   * `AlreadyExists` if the name is taken.
   */
  create(name: string, options: NamespaceOptions = {}): Promise<Namespace> {
    return this.service.createNamespace({
      name,
      description: options.description ?? "",
      pools: options.pools ?? [],
    });
  }

  get(name: string): Promise<Namespace> {
    return this.service.getNamespace({ name });
  }

  /** Every namespace the caller may see, by name. */
  async list(): Promise<Namespace[]> {
    return (await this.service.listNamespaces({})).namespaces;
  }

  /** Replaces a namespace's description and pools. */
  update(name: string, options: NamespaceOptions = {}): Promise<Namespace> {
    return this.service.updateNamespace({
      name,
      description: options.description ?? "",
      pools: options.pools ?? [],
    });
  }

  /**
   * Deletes a namespace with its chains, hooks, finished runs and paused
   * queues, and revokes the keys bound to it; resolves to how many runs went
   * with it. `FailedPrecondition` while one of its runs has not finished,
   * and for `default`.
   */
  async delete(name: string): Promise<number> {
    return Number((await this.service.deleteNamespace({ name })).deletedRuns);
  }
}
