import { Code } from "@connectrpc/connect";
export { Code };
/** One invalid field of a request (google.rpc.BadRequest.FieldViolation). */
export interface BadRequestViolation {
    /** Path of the field at fault, e.g. `chain.tasks[0].handler`. */
    field: string;
    description: string;
}
/** One failed precondition (google.rpc.PreconditionFailure.Violation). */
export interface PreconditionViolation {
    type: string;
    subject: string;
    description: string;
}
/** An error detail as it came over the wire (a packed google.protobuf.Any). */
export interface RawErrorDetail {
    /** Fully qualified message name, e.g. `google.rpc.ErrorInfo`. */
    type: string;
    value: Uint8Array;
}
/** Base class of every error the SDK's calls throw. */
export declare class TaskloomError extends Error {
    /** The gRPC status code. */
    readonly code: Code;
    /** google.rpc.ErrorInfo reason, e.g. `RUN_NOT_FOUND` ("" when absent). */
    readonly reason: string;
    /** google.rpc.ErrorInfo metadata ({} when absent). */
    readonly metadata: Readonly<Record<string, string>>;
    /** Every detail attached to the status, undecoded. */
    readonly details: readonly RawErrorDetail[];
    constructor(code: Code, message: string, options?: {
        reason?: string;
        metadata?: Record<string, string>;
        details?: RawErrorDetail[];
        cause?: unknown;
    });
    get name(): string;
}
export declare class Cancelled extends TaskloomError {
}
export declare class Unknown extends TaskloomError {
}
export declare class DeadlineExceeded extends TaskloomError {
}
export declare class AlreadyExists extends TaskloomError {
}
export declare class PermissionDenied extends TaskloomError {
}
export declare class ResourceExhausted extends TaskloomError {
}
export declare class Aborted extends TaskloomError {
}
export declare class OutOfRange extends TaskloomError {
}
export declare class Unimplemented extends TaskloomError {
}
export declare class Internal extends TaskloomError {
}
export declare class Unavailable extends TaskloomError {
}
export declare class DataLoss extends TaskloomError {
}
export declare class Unauthenticated extends TaskloomError {
}
/** INVALID_ARGUMENT, with the fields at fault. */
export declare class InvalidArgument extends TaskloomError {
    fieldViolations: BadRequestViolation[];
}
/** NOT_FOUND, naming what was missing. */
export declare class NotFound extends TaskloomError {
    resourceType: string;
    resourceName: string;
}
/** FAILED_PRECONDITION, e.g. a stale lease token or a run not waiting. */
export declare class FailedPrecondition extends TaskloomError {
    violations: PreconditionViolation[];
}
/**
 * Converts anything a Connect call threw into a `TaskloomError` (returned
 * as is when it already is one).
 */
export declare function toTaskloomError(error: unknown): TaskloomError;
/** True for errors worth retrying with the same request id. */
export declare function isUnavailable(error: unknown): boolean;
//# sourceMappingURL=errors.d.ts.map