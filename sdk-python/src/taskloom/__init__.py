"""Taskloom's Python SDK: a typed `grpc.aio` client and a remote worker.

from taskloom import Client, Worker

async with Client("127.0.0.1:50051") as client:
    run = await client.runs.start("my-chain", input="hello")
    async for event in client.runs.watch(run.id):
        print(event.type, event.task_id)
"""

__version__ = "0.1.0"

from taskloom.chains import chain_from, load_chain
from taskloom.client import TERMINAL_EVENTS, TERMINAL_STATUSES, AnswerText, Backoff, Client, Tls
from taskloom.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    TaskloomError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from taskloom.values import from_value, to_value
from taskloom.worker import Task, TaskFailure, Worker

__all__ = [
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "Aborted",
    "AlreadyExists",
    "AnswerText",
    "Backoff",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "Task",
    "TaskFailure",
    "TaskloomError",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "Worker",
    "__version__",
    "chain_from",
    "from_value",
    "load_chain",
    "to_value",
]
