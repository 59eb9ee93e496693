import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/audit.proto.
 */
export declare const file_taskloom_v1_audit: GenFile;
/**
 * One recorded action.
 *
 * @generated from message taskloom.v1.AuditEvent
 */
export type AuditEvent = Message<"taskloom.v1.AuditEvent"> & {
    /**
     * Unique id; ids sort by time.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * When the action was taken.
     *
     * @generated from field: google.protobuf.Timestamp time = 2;
     */
    time?: Timestamp | undefined;
    /**
     * Who: `key:<id>` for an API key, `local` without keys, `replica:<id>`
     * for the server's own actions (retention).
     *
     * @generated from field: string actor = 3;
     */
    actor: string;
    /**
     * The RPC, e.g. `CreateChain`, `CancelRun`, `PauseQueue`.
     *
     * @generated from field: string action = 4;
     */
    action: string;
    /**
     * The kind of resource: `chain`, `backend`, `pool`, `model`, `hook`,
     * `run`, `queue`, `replica`.
     *
     * @generated from field: string resource_type = 5;
     */
    resourceType: string;
    /**
     * The resource's id or name.
     *
     * @generated from field: string resource_id = 6;
     */
    resourceId: string;
    /**
     * The request's idempotency key, if any.
     *
     * @generated from field: string request_id = 7;
     */
    requestId: string;
    /**
     * `OK`, or the gRPC code name of the error, e.g. `FAILED_PRECONDITION`.
     *
     * @generated from field: string outcome = 8;
     */
    outcome: string;
    /**
     * The error message when the action failed.
     *
     * @generated from field: string error_message = 9;
     */
    errorMessage: string;
    /**
     * The replica that served the call.
     *
     * @generated from field: string replica = 10;
     */
    replica: string;
    /**
     * The namespace the call named. ListAuditEvents lists the caller's
     * namespace's entries only.
     *
     * @generated from field: string namespace = 11;
     */
    namespace: string;
};
/**
 * Describes the message taskloom.v1.AuditEvent.
 * Use `create(AuditEventSchema)` to create a new message.
 */
export declare const AuditEventSchema: GenMessage<AuditEvent>;
/**
 * Request for AuditService.ListAuditEvents. Filters combine with AND.
 *
 * @generated from message taskloom.v1.ListAuditEventsRequest
 */
export type ListAuditEventsRequest = Message<"taskloom.v1.ListAuditEventsRequest"> & {
    /**
     * Only this actor.
     *
     * @generated from field: string actor = 1;
     */
    actor: string;
    /**
     * Only this action.
     *
     * @generated from field: string action = 2;
     */
    action: string;
    /**
     * Only this kind of resource.
     *
     * @generated from field: string resource_type = 3;
     */
    resourceType: string;
    /**
     * Only this resource (with `resource_type`).
     *
     * @generated from field: string resource_id = 4;
     */
    resourceId: string;
    /**
     * Only events at or after this time.
     *
     * @generated from field: google.protobuf.Timestamp start_time = 5;
     */
    startTime?: Timestamp | undefined;
    /**
     * Only events before this time.
     *
     * @generated from field: google.protobuf.Timestamp end_time = 6;
     */
    endTime?: Timestamp | undefined;
    /**
     * Maximum results (default 50, at most 1000).
     *
     * @generated from field: int32 page_size = 7;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 8;
     */
    pageToken: string;
};
/**
 * Describes the message taskloom.v1.ListAuditEventsRequest.
 * Use `create(ListAuditEventsRequestSchema)` to create a new message.
 */
export declare const ListAuditEventsRequestSchema: GenMessage<ListAuditEventsRequest>;
/**
 * Response of AuditService.ListAuditEvents.
 *
 * @generated from message taskloom.v1.ListAuditEventsResponse
 */
export type ListAuditEventsResponse = Message<"taskloom.v1.ListAuditEventsResponse"> & {
    /**
     * The events, newest first.
     *
     * @generated from field: repeated taskloom.v1.AuditEvent events = 1;
     */
    events: AuditEvent[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListAuditEventsResponse.
 * Use `create(ListAuditEventsResponseSchema)` to create a new message.
 */
export declare const ListAuditEventsResponseSchema: GenMessage<ListAuditEventsResponse>;
/**
 * AuditService reads the audit log: every control-plane action (creating,
 * updating and deleting chains, backends, pools, models and hooks;
 * cancelling, pausing, resuming, retrying, replaying and deleting runs;
 * submitting input; pausing and resuming queues; draining replicas), who
 * did it, when, and how it ended. A successful action's row is written in
 * the same transaction as the action.
 *
 * @generated from service taskloom.v1.AuditService
 */
export declare const AuditService: GenService<{
    /**
     * Lists audit events, newest first.
     *
     * @generated from rpc taskloom.v1.AuditService.ListAuditEvents
     */
    listAuditEvents: {
        methodKind: "unary";
        input: typeof ListAuditEventsRequestSchema;
        output: typeof ListAuditEventsResponseSchema;
    };
}>;
//# sourceMappingURL=audit_pb.d.ts.map