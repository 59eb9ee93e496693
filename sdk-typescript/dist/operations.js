// OperationsService, AuditService and KeyService helpers: `client.queues`,
// `client.replicas`, `client.audit` and `client.keys`.
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
//# sourceMappingURL=operations.js.map