// Typed errors. Every SDK call turns a failed RPC into a subclass of
// `TaskloomError` chosen by its gRPC code, with the google.rpc details the
// server attaches (ErrorInfo, BadRequest, ResourceInfo, PreconditionFailure)
// already decoded, so callers can `instanceof` instead of parsing messages.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, PreconditionFailureSchema, ResourceInfoSchema, } from "./gen/google/rpc/error_details_pb.js";
export { Code };
/** Base class of every error the SDK's calls throw. */
export class TaskloomError extends Error {
    /** The gRPC status code. */
    code;
    /** google.rpc.ErrorInfo reason, e.g. `RUN_NOT_FOUND` ("" when absent). */
    reason;
    /** google.rpc.ErrorInfo metadata ({} when absent). */
    metadata;
    /** Every detail attached to the status, undecoded. */
    details;
    constructor(code, message, options = {}) {
        super(message, { cause: options.cause });
        this.code = code;
        this.reason = options.reason ?? "";
        this.metadata = options.metadata ?? {};
        this.details = options.details ?? [];
    }
    get name() {
        return this.constructor.name;
    }
}
export class Cancelled extends TaskloomError {
}
export class Unknown extends TaskloomError {
}
export class DeadlineExceeded extends TaskloomError {
}
export class AlreadyExists extends TaskloomError {
}
export class PermissionDenied extends TaskloomError {
}
export class ResourceExhausted extends TaskloomError {
}
export class Aborted extends TaskloomError {
}
export class OutOfRange extends TaskloomError {
}
export class Unimplemented extends TaskloomError {
}
export class Internal extends TaskloomError {
}
export class Unavailable extends TaskloomError {
}
export class DataLoss extends TaskloomError {
}
export class Unauthenticated extends TaskloomError {
}
/** INVALID_ARGUMENT, with the fields at fault. */
export class InvalidArgument extends TaskloomError {
    fieldViolations = [];
}
/** NOT_FOUND, naming what was missing. */
export class NotFound extends TaskloomError {
    resourceType = "";
    resourceName = "";
}
/** FAILED_PRECONDITION, e.g. a stale lease token or a run not waiting. */
export class FailedPrecondition extends TaskloomError {
    violations = [];
}
const classByCode = {
    [Code.Canceled]: Cancelled,
    [Code.Unknown]: Unknown,
    [Code.InvalidArgument]: InvalidArgument,
    [Code.DeadlineExceeded]: DeadlineExceeded,
    [Code.NotFound]: NotFound,
    [Code.AlreadyExists]: AlreadyExists,
    [Code.PermissionDenied]: PermissionDenied,
    [Code.ResourceExhausted]: ResourceExhausted,
    [Code.FailedPrecondition]: FailedPrecondition,
    [Code.Aborted]: Aborted,
    [Code.OutOfRange]: OutOfRange,
    [Code.Unimplemented]: Unimplemented,
    [Code.Internal]: Internal,
    [Code.Unavailable]: Unavailable,
    [Code.DataLoss]: DataLoss,
    [Code.Unauthenticated]: Unauthenticated,
};
/**
 * Converts anything a Connect call threw into a `TaskloomError` (returned
 * as is when it already is one).
 */
export function toTaskloomError(error) {
    if (error instanceof TaskloomError) {
        return error;
    }
    const connectError = ConnectError.from(error);
    const info = connectError.findDetails(ErrorInfoSchema)[0];
    // connect-node reports a failed TLS handshake as INTERNAL; gRPC's own
    // transports (and the Python SDK) report it as UNAVAILABLE, a connection
    // that could not be made.
    const code = connectError.code === Code.Internal && isTlsFailure(connectError) ? Code.Unavailable : connectError.code;
    const details = connectError.details.map((detail) => "desc" in detail
        ? { type: detail.desc.typeName, value: new Uint8Array() }
        : { type: detail.type, value: detail.value });
    const ErrorType = classByCode[code] ?? Unknown;
    const result = new ErrorType(code, connectError.rawMessage, {
        reason: info?.reason,
        metadata: info ? { ...info.metadata } : undefined,
        details,
        cause: connectError,
    });
    if (result instanceof InvalidArgument) {
        result.fieldViolations = connectError
            .findDetails(BadRequestSchema)
            .flatMap((badRequest) => badRequest.fieldViolations)
            .map(({ field, description }) => ({ field, description }));
    }
    else if (result instanceof NotFound) {
        const resource = connectError.findDetails(ResourceInfoSchema)[0];
        result.resourceType = resource?.resourceType ?? "";
        result.resourceName = resource?.resourceName ?? "";
    }
    else if (result instanceof FailedPrecondition) {
        result.violations = connectError
            .findDetails(PreconditionFailureSchema)
            .flatMap((failure) => failure.violations)
            .map(({ type, subject, description }) => ({ type, subject, description }));
    }
    return result;
}
/** True for errors worth retrying with the same request id. */
export function isUnavailable(error) {
    return error instanceof Unavailable;
}
/** Whether a node TLS error (certificate or handshake) is in `error`'s cause chain. */
function isTlsFailure(error) {
    const seen = new Set();
    for (let current = error; current instanceof Error && !seen.has(current); current = current.cause) {
        seen.add(current);
        const code = current.code;
        if (typeof code === "string" && /CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) {
            return true;
        }
    }
    return false;
}
//# sourceMappingURL=errors.js.map