import type { Client } from "@connectrpc/connect";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import type { AuditEvent } from "./gen/taskloom/v1/audit_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import type { Queue, Replica } from "./gen/taskloom/v1/operations_pb.js";
import { KeyService, NamespaceService } from "./gen/taskloom/v1/security_pb.js";
import type { ApiKey, CreateApiKeyResponse, Namespace } from "./gen/taskloom/v1/security_pb.js";
/** Queues: depth, oldest ready age, leases, caps; pause and resume. */
export declare class QueuesClient {
    private readonly service;
    constructor(service: Client<typeof OperationsService>);
    list(): Promise<Queue[]>;
    /** Stops the queue's work from being offered on every replica; leases in flight finish. */
    pause(name: string, options?: RequestIdOption): Promise<Queue>;
    resume(name: string, options?: RequestIdOption): Promise<Queue>;
}
/** Replicas: the server processes sharing a store. */
export declare class ReplicasClient {
    private readonly service;
    constructor(service: Client<typeof OperationsService>);
    list(): Promise<Replica[]>;
    /** Makes a replica stop taking work and hand back what it holds. */
    drain(id: string, options?: RequestIdOption): Promise<Replica>;
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
export declare class AuditClient {
    private readonly service;
    constructor(service: Client<typeof AuditService>);
    list(filter?: AuditFilter): Promise<{
        events: AuditEvent[];
        nextPageToken: string;
    }>;
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
export declare class KeysClient {
    private readonly service;
    constructor(service: Client<typeof KeyService>);
    /**
     * Creates a key; `role` is `admin`, `operator`, `worker` or `viewer`.
     * The response's `secret` is shown only this once.
     */
    create(name: string, role: string, options?: CreateKeyOptions): Promise<CreateApiKeyResponse>;
    /** Every key, revoked and expired ones included; never a secret. */
    list(): Promise<ApiKey[]>;
    /** Revokes a key: every replica refuses it within a second. */
    revoke(id: string): Promise<ApiKey>;
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
export declare class NamespacesClient {
    private readonly service;
    constructor(service: Client<typeof NamespaceService>);
    /**
     * Creates a namespace (1 to 63 lowercase letters, digits and `-`);
     * `AlreadyExists` if the name is taken.
     */
    create(name: string, options?: NamespaceOptions): Promise<Namespace>;
    get(name: string): Promise<Namespace>;
    /** Every namespace the caller may see, by name. */
    list(): Promise<Namespace[]>;
    /** Replaces a namespace's description and pools. */
    update(name: string, options?: NamespaceOptions): Promise<Namespace>;
    /**
     * Deletes a namespace with its chains, hooks, finished runs and paused
     * queues, and revokes the keys bound to it; resolves to how many runs went
     * with it. `FailedPrecondition` while one of its runs has not finished,
     * and for `default`.
     */
    delete(name: string): Promise<number>;
}
//# sourceMappingURL=operations.d.ts.map