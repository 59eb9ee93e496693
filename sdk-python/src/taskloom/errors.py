"""Typed errors: every failed call raises a subclass of `TaskloomError`
chosen by the gRPC status code, with the server's rich details
(`google.rpc.ErrorInfo`, `BadRequest`, `ResourceInfo`,
`PreconditionFailure`) decoded into attributes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (`google.rpc.BadRequest`)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (`google.rpc.PreconditionFailure`)."""

    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """The decoded `google.rpc` details of a status."""

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    resource_type: str = ""
    resource_name: str = ""
    violations: list[PreconditionViolation] = field(default_factory=list)
    raw: list[any_pb2.Any] = field(default_factory=list)


class TaskloomError(Exception):
    """A call to the Taskloom server failed."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, details: ErrorDetails | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or ErrorDetails()

    @property
    def reason(self) -> str:
        """`ErrorInfo.reason`: a stable, machine-readable cause."""
        return self.details.reason

    @property
    def metadata(self) -> dict[str, str]:
        """`ErrorInfo.metadata`."""
        return self.details.metadata

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(TaskloomError):
    code = grpc.StatusCode.CANCELLED


class Unknown(TaskloomError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(TaskloomError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def field_violations(self) -> list[FieldViolation]:
        """Every bad field, with its path (`chain.tasks[0].handler`)."""
        return self.details.field_violations


class DeadlineExceeded(TaskloomError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(TaskloomError):
    code = grpc.StatusCode.NOT_FOUND

    @property
    def resource_type(self) -> str:
        return self.details.resource_type

    @property
    def resource_name(self) -> str:
        return self.details.resource_name


class AlreadyExists(TaskloomError):
    code = grpc.StatusCode.ALREADY_EXISTS

    @property
    def resource_type(self) -> str:
        return self.details.resource_type

    @property
    def resource_name(self) -> str:
        return self.details.resource_name


class PermissionDenied(TaskloomError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(TaskloomError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(TaskloomError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    @property
    def violations(self) -> list[PreconditionViolation]:
        return self.details.violations


class Aborted(TaskloomError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(TaskloomError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(TaskloomError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(TaskloomError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(TaskloomError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(TaskloomError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(TaskloomError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[TaskloomError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(
    code: grpc.StatusCode, message: str, details: ErrorDetails | None = None
) -> TaskloomError:
    """The typed error for a status code."""
    return _BY_CODE.get(code, Unknown)(message, details)


def from_rpc_error(error: grpc.aio.AioRpcError) -> TaskloomError:
    """The typed error of a failed call, its details decoded."""
    details = decode_details(error.trailing_metadata() or ())
    return error_for(error.code(), error.details() or "", details)


def decode_details(trailing: Sequence[tuple[str, str | bytes]]) -> ErrorDetails:
    """Decodes the `grpc-status-details-bin` trailer (a `google.rpc.Status`)."""
    blob = next(
        (
            value
            for key, value in trailing
            if key == _STATUS_DETAILS_KEY and isinstance(value, bytes)
        ),
        None,
    )
    if blob is None:
        return ErrorDetails()
    try:
        status = status_pb2.Status.FromString(blob)
    except Exception:  # a malformed trailer must not hide the error itself
        return ErrorDetails()
    reason, domain, metadata = "", "", {}
    field_violations: list[FieldViolation] = []
    resource_type, resource_name = "", ""
    violations: list[PreconditionViolation] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        resource = error_details_pb2.ResourceInfo()
        precondition = error_details_pb2.PreconditionFailure()
        if detail.Unpack(info):
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(bad_request):
            field_violations.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
        elif detail.Unpack(resource):
            resource_type, resource_name = resource.resource_type, resource.resource_name
        elif detail.Unpack(precondition):
            violations.extend(
                PreconditionViolation(v.type, v.subject, v.description)
                for v in precondition.violations
            )
    return ErrorDetails(
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=field_violations,
        resource_type=resource_type,
        resource_name=resource_name,
        violations=violations,
        raw=list(status.details),
    )
