// OperationsService, AuditService, KeyService and NamespaceService helpers:
// `client.queues`, `client.replicas`, `client.audit`, `client.keys` and
// `client.namespaces`.
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
/** Queues: depth, oldest ready age, leases, caps; pause and resume. */
export class QueuesClient {
    service;
    constructor(service) {
        this.service = service;
    }
    async list() {
        return (await this.service.listQueues({})).queues;
    }
    /** Stops the queue's work from being offered on every replica; leases in flight finish. */
    pause(name, options = {}) {
        return this.service.pauseQueue({ name, requestId: options.requestId });
    }
    resume(name, options = {}) {
        return this.service.resumeQueue({ name, requestId: options.requestId });
    }
}
/** Replicas: the server processes sharing a store. */
export class ReplicasClient {
    service;
    constructor(service) {
        this.service = service;
    }
    async list() {
        return (await this.service.listReplicas({})).replicas;
    }
    /** Makes a replica stop taking work and hand back what it holds. */
    drain(id, options = {}) {
        return this.service.drainReplica({ id, requestId: options.requestId });
    }
}
/** The audit log: who did what to which resource, and how it ended. */
export class AuditClient {
    service;
    constructor(service) {
        this.service = service;
    }
    async list(filter = {}) {
        const { startTime, endTime, ...rest } = filter;
        const { events, nextPageToken } = await this.service.listAuditEvents({
            ...rest,
            startTime: startTime === undefined ? undefined : timestampFromDate(startTime),
            endTime: endTime === undefined ? undefined : timestampFromDate(endTime),
        });
        return { events, nextPageToken };
    }
}
/** API keys kept in the server's store; every call needs an admin key. */
export class KeysClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /**
     * Creates a key; `role` is `admin`, `operator`, `worker` or `viewer`.
     * The response's `secret` is shown only this once.
     */
    create(name, role, options = {}) {
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
    async list() {
        return (await this.service.listApiKeys({})).keys;
    }
    /** Revokes a key: every replica refuses it within a second. */
    revoke(id) {
        return this.service.revokeApiKey({ id });
    }
}
/**
 * Namespaces: the isolated sets of chains, runs, hooks, workers and queues
 * a client's `namespace` option picks. Creating, updating and deleting need
 * an admin key bound to no namespace; a key bound to one namespace sees only
 * that one. These calls name namespaces in their requests, whatever the
 * client's own `namespace` is.
 */
export class NamespacesClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /**
     * Creates a namespace (1 to 63 lowercase letters, digits and `-`);
     * `AlreadyExists` if the name is taken.
     */
    create(name, options = {}) {
        return this.service.createNamespace({
            name,
            description: options.description ?? "",
            pools: options.pools ?? [],
        });
    }
    get(name) {
        return this.service.getNamespace({ name });
    }
    /** Every namespace the caller may see, by name. */
    async list() {
        return (await this.service.listNamespaces({})).namespaces;
    }
    /** Replaces a namespace's description and pools. */
    update(name, options = {}) {
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
    async delete(name) {
        return Number((await this.service.deleteNamespace({ name })).deletedRuns);
    }
}
//# sourceMappingURL=operations.js.map