// OperationsService and AuditService helpers: `client.queues`,
// `client.replicas` and `client.audit`.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
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
//# sourceMappingURL=operations.js.map