// OperationsService and AuditService helpers: `client.queues`,
// `client.replicas` and `client.audit`.

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { PageOptions, RequestIdOption } from "./chains.js";
import { AuditService } from "./gen/taskloom/v1/audit_pb.js";
import type { AuditEvent } from "./gen/taskloom/v1/audit_pb.js";
import { OperationsService } from "./gen/taskloom/v1/operations_pb.js";
import type { Queue, Replica } from "./gen/taskloom/v1/operations_pb.js";

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
