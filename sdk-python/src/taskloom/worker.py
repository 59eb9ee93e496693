"""A remote worker: serves `worker` tasks (and hooks routed to a queue)
over one `WorkerService.Connect` stream.

    worker = Worker(client, slots=8)

    @worker.task("search")
    async def search(task: Task) -> str:
        await task.progress("searching")
        return f"results for {task.input}"

    await worker.run()          # until shutdown()

The stream protocol is in docs/workers.md; the behaviour shared with the
TypeScript SDK in docs/sdks.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import struct_pb2

from taskloom import __version__
from taskloom.client import WORKER_BACKOFF, Backoff, Client, duration
from taskloom.errors import (
    InvalidArgument,
    PermissionDenied,
    TaskloomError,
    Unauthenticated,
    from_rpc_error,
)
from taskloom.v1 import common_pb2, worker_pb2
from taskloom.values import from_value, to_value

log = logging.getLogger("taskloom.worker")

Handler = Callable[["Task"], Awaitable[Any]]

#: What the server accepts as a queue name (`internal` is the runner's).
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_SLOTS = 10_000
H = TypeVar("H", bound=Handler)


class TaskFailure(Exception):
    """Raise from a handler to fail the task with a message; by default the
    task's retry policy applies (`retryable=True`), optionally after
    `retry_delay`. Any other exception is a retryable failure too."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_delay: float | timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_delay = retry_delay


class Task:
    """One leased task attempt, as a handler sees it."""

    def __init__(self, offer: worker_pb2.LeaseOffer, worker: Worker) -> None:
        self.offer = offer
        self._worker = worker

    @property
    def input(self) -> Any:
        """The task's input as a Python value (see `from_value`)."""
        return from_value(self.offer.input if self.offer.HasField("input") else None)

    @property
    def value(self) -> common_pb2.Value:
        """The task's input as the typed `Value` message."""
        return self.offer.input

    @property
    def prompt(self) -> str:
        """The task's rendered prompt template, if it has one."""
        return self.offer.prompt

    @property
    def system_instruction(self) -> str:
        return self.offer.system_instruction

    @property
    def args(self) -> dict[str, str]:
        """A hook routed to a queue: its rendered arguments."""
        return dict(self.offer.args)

    @property
    def run_id(self) -> str:
        return self.offer.run_id

    @property
    def task_id(self) -> str:
        return self.offer.task_id

    @property
    def attempt_id(self) -> str:
        return self.offer.attempt_id

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, …"""
        return self.offer.attempt

    @property
    def queue(self) -> str:
        return self.offer.queue

    @property
    def chain_id(self) -> str:
        return self.offer.chain_id

    @property
    def traceparent(self) -> str:
        """W3C trace context of this attempt's span, in the run's trace (the
        trace of the `traceparent` the run was started with, if any).

        Continue it as the parent of the handler's own spans, e.g. with
        OpenTelemetry: ``TraceContextTextMapPropagator().extract({"traceparent":
        task.traceparent})`` gives the context to start them in.
        """
        return self.offer.traceparent

    @property
    def deadline(self) -> datetime | None:
        """When the task times out, if its chain gives it a timeout."""
        if not self.offer.HasField("deadline"):
            return None
        return self.offer.deadline.ToDatetime()

    async def progress(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Reports progress: stored as a `TASK_PROGRESS` event that run
        watchers see. Dropped while the stream is reconnecting."""
        payload = struct_pb2.Struct()
        if data:
            payload.update(dict(data))
        self._worker._send(
            worker_pb2.WorkerMessage(
                progress=worker_pb2.Progress(
                    lease=_lease(self.offer),
                    message=message,
                    payload=payload if data else None,
                )
            )
        )


@dataclass
class _Running:
    offer: worker_pb2.LeaseOffer
    job: asyncio.Task[None]
    #: Cancelled by the server (or shutdown): report nothing.
    silenced: bool = False


class Worker:
    """Serves the queues of its handlers with at most `slots` tasks at a
    time. `worker_id` identifies it across reconnects (default: a fresh
    UUID per `Worker`)."""

    def __init__(
        self,
        client: Client,
        *,
        slots: int = 10,
        worker_id: str | None = None,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        backoff: Backoff = WORKER_BACKOFF,
    ) -> None:
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be from 1 to {MAX_SLOTS}, got {slots}")
        self._client = client
        self.slots = slots
        self.worker_id = worker_id or str(uuid.uuid4())
        self.name = name
        self.labels = dict(labels or {})
        self._backoff = backoff
        self._handlers: dict[str, Handler] = {}
        self._running: dict[str, _Running] = {}
        #: Results not yet acknowledged, by attempt id: sent again after a
        #: reconnect if the server re-attaches their lease.
        self._unacked: dict[str, worker_pb2.WorkerMessage] = {}
        self._outbox: asyncio.Queue[worker_pb2.WorkerMessage | None] | None = None
        self._closing = False
        self._closing_event = asyncio.Event()
        self._started = False
        self._stopped = asyncio.Event()
        self._acked = asyncio.Event()
        self.session_id = ""
        self.connected = asyncio.Event()

    # -- registration ------------------------------------------------------

    def task(self, queue: str) -> Callable[[H], H]:
        """Decorator: `handler` serves `queue`."""

        def register(handler: H) -> H:
            self.handle(queue, handler)
            return handler

        return register

    def handle(self, queue: str, handler: Handler) -> None:
        """`handler` serves `queue`."""
        if not QUEUE_NAME.fullmatch(queue) or queue == "internal":
            raise ValueError(
                f"queue {queue!r}: use 1-128 of A-Z a-z 0-9 _ . - (and not `internal`)"
            )
        if queue in self._handlers:
            raise ValueError(f"queue {queue!r} already has a handler")
        if not asyncio.iscoroutinefunction(handler):
            raise TypeError("a handler must be an async function taking a Task")
        self._handlers[queue] = handler

    # -- running -----------------------------------------------------------

    async def run(self) -> None:
        """Serves until `shutdown()`; reconnects with capped exponential
        backoff and jitter whenever the stream ends. Raises only for a
        configuration the server refuses (`InvalidArgument`,
        `Unauthenticated`, `PermissionDenied`)."""
        if not self._handlers:
            raise ValueError("register a handler with @worker.task(queue) first")
        if self._started:
            raise RuntimeError("a Worker runs once")
        self._started = True
        delays = self._backoff.delays()
        try:
            while not self._closing:
                welcomed = False
                try:
                    welcomed = await self._session()
                except (InvalidArgument, Unauthenticated, PermissionDenied):
                    # The server refused this worker's hello or key:
                    # retrying cannot change its answer.
                    raise
                except TaskloomError as error:
                    log.warning("worker stream ended: %s", error)
                if self._closing:
                    break
                if welcomed:
                    delays.reset()
                try:
                    await asyncio.wait_for(self._closing_event.wait(), delays.next())
                except asyncio.TimeoutError:
                    pass
        finally:
            self._stopped.set()

    async def shutdown(self, grace: float | timedelta = 30.0) -> None:
        """Stops taking work, lets running handlers finish for up to
        `grace`, then cancels the rest and releases their leases (their
        tasks return to READY without spending a retry), and ends the
        stream. Returns once `run()` has returned."""
        grace_s = grace.total_seconds() if isinstance(grace, timedelta) else grace
        self._closing = True
        self._closing_event.set()
        if not self._started:
            return
        self._send(worker_pb2.WorkerMessage(set_slots=worker_pb2.SetSlots(slots=0)))
        jobs = [running.job for running in self._running.values()]
        if jobs:
            await asyncio.wait(jobs, timeout=grace_s)
        for attempt_id, running in list(self._running.items()):
            running.silenced = True
            running.job.cancel()
            self._running.pop(attempt_id, None)
            self._send(
                worker_pb2.WorkerMessage(release=worker_pb2.Release(lease=_lease(running.offer)))
            )
        # Give the results and releases a moment to be acknowledged.
        deadline = asyncio.get_running_loop().time() + 5.0
        while self._unacked and self._outbox is not None:
            self._acked.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._acked.wait(), remaining)
            except asyncio.TimeoutError:
                break
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        await self._stopped.wait()

    # -- one stream --------------------------------------------------------

    async def _session(self) -> bool:
        """One Connect stream, until it ends; true if it was welcomed."""
        outbox: asyncio.Queue[worker_pb2.WorkerMessage | None] = asyncio.Queue()
        held = [_lease(r.offer) for r in self._running.values()]
        held_ids = {lease.attempt_id for lease in held}
        held += [
            _result_lease(message)
            for attempt_id, message in self._unacked.items()
            if attempt_id not in held_ids
        ]
        hello = worker_pb2.Hello(
            worker_id=self.worker_id,
            name=self.name,
            queues=sorted(self._handlers),
            slots=self.slots,
            labels=self.labels,
            sdk_version=f"python/{__version__}",
            held_leases=held,
        )

        async def requests() -> AsyncIterator[worker_pb2.WorkerMessage]:
            yield worker_pb2.WorkerMessage(hello=hello)
            while (message := await outbox.get()) is not None:
                yield message

        stream = self._client.stubs.workers.Connect(requests(), metadata=self._client.metadata)
        heartbeat: asyncio.Task[None] | None = None
        welcomed = False
        # Until the Welcome names the timeout: the server's default.
        silence_limit = 15.0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(stream.read(), silence_limit)
                except asyncio.TimeoutError:
                    log.warning(
                        "no message from the server for %.1f s; reconnecting", silence_limit
                    )
                    return welcomed
                if message is grpc.aio.EOF:
                    return welcomed
                message = cast(worker_pb2.ServerMessage, message)
                kind = message.WhichOneof("msg")
                if kind == "welcome":
                    welcomed = True
                    welcome = message.welcome
                    interval = welcome.heartbeat_interval.ToTimedelta().total_seconds() or 5.0
                    silence_limit = welcome.heartbeat_timeout.ToTimedelta().total_seconds() or 15.0
                    self.session_id = welcome.session_id
                    self._outbox = outbox
                    self._welcomed(welcome)
                    heartbeat = asyncio.create_task(self._heartbeats(outbox, interval))
                    self.connected.set()
                elif kind == "lease":
                    self._offered(message.lease)
                elif kind == "cancel":
                    self._cancelled(message.cancel.lease.attempt_id)
                elif kind == "ping":
                    outbox.put_nowait(
                        worker_pb2.WorkerMessage(pong=worker_pb2.Pong(nonce=message.ping.nonce))
                    )
                elif kind == "ack":
                    self._acknowledged(message.ack)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            self.connected.clear()
            if self._outbox is outbox:
                self._outbox = None
            if heartbeat is not None:
                heartbeat.cancel()
            stream.cancel()

    def _welcomed(self, welcome: worker_pb2.Welcome) -> None:
        for lease in welcome.rejected:
            # Leased elsewhere by now: stop working on it, drop its result.
            self._unacked.pop(lease.attempt_id, None)
            running = self._running.pop(lease.attempt_id, None)
            if running is not None:
                running.silenced = True
                running.job.cancel()
        for lease in welcome.reattached:
            result = self._unacked.get(lease.attempt_id)
            if result is not None:
                self._send(result)

    async def _heartbeats(
        self, outbox: asyncio.Queue[worker_pb2.WorkerMessage | None], interval: float
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            active = [_lease(r.offer) for r in self._running.values()]
            outbox.put_nowait(
                worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(active=active))
            )

    def _offered(self, offer: worker_pb2.LeaseOffer) -> None:
        handler = self._handlers.get(offer.queue)
        if handler is None or self._closing or len(self._running) >= self.slots:
            # Not ours to run now: back to READY without spending a retry.
            self._send(worker_pb2.WorkerMessage(release=worker_pb2.Release(lease=_lease(offer))))
            return
        job = asyncio.create_task(self._execute(handler, offer))
        self._running[offer.attempt_id] = _Running(offer, job)

    def _cancelled(self, attempt_id: str) -> None:
        running = self._running.pop(attempt_id, None)
        self._unacked.pop(attempt_id, None)
        if running is not None:
            running.silenced = True
            running.job.cancel()

    def _acknowledged(self, ack: worker_pb2.Ack) -> None:
        attempt_id = ack.lease.attempt_id
        if not ack.accepted:
            log.warning(
                "server refused a message about %s: %s %s", attempt_id, ack.code, ack.message
            )
        if self._unacked.pop(attempt_id, None) is not None:
            self._acked.set()

    async def _execute(self, handler: Handler, offer: worker_pb2.LeaseOffer) -> None:
        lease = _lease(offer)
        try:
            output = await handler(Task(offer, self))
        except asyncio.CancelledError:
            self._running.pop(offer.attempt_id, None)
            raise
        except TaskFailure as failure:
            result = _failure(lease, failure.message, failure.retryable, failure.retry_delay)
        except Exception as error:
            result = _failure(lease, f"{type(error).__name__}: {error}", True, None)
        else:
            try:
                value = to_value(output)
            except (TypeError, ValueError) as error:
                # Retrying would return the same thing.
                result = _failure(
                    lease, f"the handler's result cannot be sent: {error}", False, None
                )
            else:
                result = worker_pb2.WorkerMessage(
                    complete=worker_pb2.Completion(lease=lease, output=value)
                )
        running = self._running.pop(offer.attempt_id, None)
        if running is None or running.silenced:
            return
        self._unacked[offer.attempt_id] = result
        self._send(result)

    def _send(self, message: worker_pb2.WorkerMessage) -> None:
        """Sends on the current stream; while reconnecting, drops it (results
        are kept in `_unacked` and sent again after the re-attach)."""
        if self._outbox is not None:
            self._outbox.put_nowait(message)


def _lease(offer: worker_pb2.LeaseOffer) -> worker_pb2.LeaseRef:
    return worker_pb2.LeaseRef(attempt_id=offer.attempt_id, lease_token=offer.lease_token)


def _result_lease(message: worker_pb2.WorkerMessage) -> worker_pb2.LeaseRef:
    kind = message.WhichOneof("msg")
    lease: worker_pb2.LeaseRef = getattr(message, kind).lease if kind else worker_pb2.LeaseRef()
    return lease


def _failure(
    lease: worker_pb2.LeaseRef,
    message: str,
    retryable: bool,
    retry_delay: float | timedelta | None,
) -> worker_pb2.WorkerMessage:
    failure = worker_pb2.Failure(lease=lease, message=message or "task failed", retryable=retryable)
    if retry_delay is not None:
        failure.retry_delay.CopyFrom(duration(retry_delay))
    return worker_pb2.WorkerMessage(fail=failure)
