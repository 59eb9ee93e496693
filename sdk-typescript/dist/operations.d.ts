import type { Client } from "@connectrpc/connect";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import type { AuditEvent } from "./gen/taskloom/v1/audit_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import type { Queue, Replica } from "./gen/taskloom/v1/operations_pb.js";
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
//# sourceMappingURL=operations.d.ts.map