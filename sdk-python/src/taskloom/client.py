"""The client: one `grpc.aio` channel, every service, typed errors, and
helpers for the calls people make most."""

from __future__ import annotations

import asyncio
import builtins
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, message

from taskloom.chains import ChainLike, chain_from
from taskloom.errors import from_rpc_error
from taskloom.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    backend_pb2,
    backend_pb2_grpc,
    chain_pb2,
    chain_pb2_grpc,
    hook_pb2,
    hook_pb2_grpc,
    info_pb2,
    info_pb2_grpc,
    operations_pb2,
    operations_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from taskloom.values import ValueLike, json_value, to_value

DEFAULT_ADDRESS = "127.0.0.1:50051"

#: Events after which a run's event stream ends.
TERMINAL_EVENTS = frozenset(
    {
        run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED,
        run_pb2.RUN_EVENT_TYPE_RUN_FAILED,
        run_pb2.RUN_EVENT_TYPE_RUN_CANCELLED,
    }
)

#: Run statuses that end a run.
TERMINAL_STATUSES = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)

Request = TypeVar("Request", bound=message.Message)
Response = TypeVar("Response")


@dataclass(frozen=True)
class Tls:
    """TLS settings: PEM bytes; no root certificates = the system's."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter, in seconds."""

    initial: float = 0.1
    maximum: float = 10.0

    def delays(self) -> Delays:
        return Delays(self)


#: Reconnecting a dropped watch.
WATCH_BACKOFF = Backoff(initial=0.1, maximum=5.0)
#: Reconnecting a worker's stream.
WORKER_BACKOFF = Backoff(initial=0.1, maximum=10.0)


class Delays:
    """Successive backoff delays; `reset` after a success."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._ceiling = backoff.initial

    def next(self) -> float:
        delay = random.uniform(0, self._ceiling)
        self._ceiling = min(self._ceiling * 2, self._backoff.maximum)
        return delay

    def reset(self) -> None:
        self._ceiling = self._backoff.initial


def duration(value: float | timedelta) -> duration_pb2.Duration:
    """Seconds or a `timedelta` as `google.protobuf.Duration`."""
    message = duration_pb2.Duration()
    message.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return message


class Stubs:
    """The generated stubs of every service, on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.chains = chain_pb2_grpc.ChainServiceStub(channel)
        self.runs = run_pb2_grpc.RunServiceStub(channel)
        self.backends = backend_pb2_grpc.BackendServiceStub(channel)
        self.hooks = hook_pb2_grpc.HookServiceStub(channel)
        self.workers = worker_pb2_grpc.WorkerServiceStub(channel)
        self.info = info_pb2_grpc.InfoServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsServiceStub(channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)
        self.keys = security_pb2_grpc.KeyServiceStub(channel)
        self.namespaces = security_pb2_grpc.NamespaceServiceStub(channel)


class Client:
    """A connection to a Taskloom server.

    `address` is `host:port`, optionally with `http://` or `https://` (TLS).
    `api_key` is sent as `authorization: Bearer <key>` and `namespace` as
    `x-taskloom-namespace` on every call the SDK makes (pass
    `client.metadata` when calling `client.stubs` directly); without a
    namespace the server uses `default`.
    Use as `async with Client(...) as client:` or call `close()`.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        namespace: str | None = None,
        tls: Tls | bool | None = None,
        options: Sequence[tuple[str, Any]] = (),
        retries: int = 4,
    ) -> None:
        target, https = _parse_address(address)
        if tls is None:
            tls = https
        channel_options = [
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            *options,
        ]
        if tls:
            settings = tls if isinstance(tls, Tls) else Tls()
            credentials = grpc.ssl_channel_credentials(
                settings.root_certificates, settings.private_key, settings.certificate_chain
            )
            self._channel = grpc.aio.secure_channel(target, credentials, channel_options)
        else:
            self._channel = grpc.aio.insecure_channel(target, channel_options)
        self.address = target
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        ) + ((("x-taskloom-namespace", namespace),) if namespace else ())
        self._retries = max(1, retries)
        self.stubs = Stubs(self._channel)
        self.chains = Chains(self)
        self.runs = Runs(self)
        self.backends = Backends(self)
        self.hooks = Hooks(self)
        self.workers = Workers(self)
        self.info = Info(self)
        self.queues = Queues(self)
        self.replicas = Replicas(self)
        self.audit = Audit(self)
        self.keys = Keys(self)
        self.namespaces = Namespaces(self)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def call(
        self,
        rpc: Callable[..., Awaitable[Response]],
        request: Request,
        *,
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        """Calls a unary RPC with the client's metadata and typed errors.

        A request with an empty `request_id` gets a fresh one, which makes
        it safe to retry: such calls, and reads (requests without one that
        change nothing: Get/List/Validate), are retried on UNAVAILABLE.
        """
        fields = request.DESCRIPTOR.fields_by_name
        retryable = "request_id" in fields or _is_read(request)
        # Which request types have the field is known only at run time.
        if "request_id" in fields and not getattr(request, "request_id"):  # noqa: B009
            setattr(request, "request_id", str(uuid.uuid4()))  # noqa: B010
        delays = Backoff(initial=0.05, maximum=1.0).delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await rpc(request, metadata=self.metadata + metadata, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                unavailable = error.code() == grpc.StatusCode.UNAVAILABLE
                if not (retryable and unavailable and attempt < self._retries):
                    raise from_rpc_error(error) from None
            await asyncio.sleep(delays.next())


async def _follow(
    open_stream: Callable[[int], Any], after_seq: int, backoff: Backoff
) -> AsyncIterator[run_pb2.RunEvent]:
    """Events of the streams `open_stream(last_seq)` opens, reopened after
    the last stored event delivered whenever one drops, until the terminal
    event: stored events once each, token deltas continuing their attempt's
    text (see `_continuation`)."""
    last_seq = after_seq
    streamed: dict[str, int] = {}
    delays = backoff.delays()
    while True:
        stream = open_stream(last_seq)
        try:
            async for event in stream:
                delays.reset()
                if event.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA:
                    delta = _continuation(event, streamed)
                    if delta is not None:
                        yield delta
                    continue
                if event.seq <= last_seq:
                    continue
                last_seq = event.seq
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise from_rpc_error(error) from None
        finally:
            stream.cancel()
        # Ended without a terminal event (the server shut down, the
        # connection dropped): resume.
        await asyncio.sleep(delays.next())


def _continuation(event: run_pb2.RunEvent, streamed: dict[str, int]) -> run_pb2.RunEvent | None:
    """What a token delta adds to its attempt's text as this watch already
    delivered it (`streamed`: UTF-8 bytes per attempt id), or `None`. One
    server stream never repeats text; after a reconnect its catch-up holds
    the text from the start, so the part delivered before is cut off."""
    data = event.delta.encode()
    end = event.delta_offset + len(data)
    have = streamed.get(event.attempt_id)
    if have is None or (event.catch_up and have == 0):
        streamed[event.attempt_id] = end
        return event
    if end <= have:
        return None
    streamed[event.attempt_id] = end
    if event.delta_offset >= have:
        return event
    rest = run_pb2.RunEvent()
    rest.CopyFrom(event)
    rest.delta = data[have - event.delta_offset :].decode()
    rest.delta_offset = have
    rest.catch_up = False
    return rest


class AnswerText:
    """The text of each attempt's model call as a watch delivers it: feed it
    every event (`add`); `text(attempt_id)` is the answer so far, and the
    stored output once the attempt succeeded."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self.last_attempt_id = ""

    def add(self, event: run_pb2.RunEvent) -> str | None:
        """Takes an event; returns the text it added, if any."""
        if event.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA:
            self.last_attempt_id = event.attempt_id
            text = self._texts.get(event.attempt_id, "")
            self._texts[event.attempt_id] = event.delta if event.catch_up else text + event.delta
            return event.delta
        if event.type == run_pb2.RUN_EVENT_TYPE_TASK_SUCCEEDED and event.output.HasField("text"):
            before = self._texts.get(event.attempt_id, "")
            self._texts[event.attempt_id] = event.output.text
            self.last_attempt_id = event.attempt_id
            rest = event.output.text[len(before) :] if event.output.text.startswith(before) else ""
            return rest or None
        return None

    def text(self, attempt_id: str = "") -> str:
        """An attempt's text (default: the last one that spoke)."""
        return self._texts.get(attempt_id or self.last_attempt_id, "")


def _trace_metadata(traceparent: str) -> tuple[tuple[str, str], ...]:
    """The `traceparent` metadata of a start, if it names one."""
    return (("traceparent", traceparent),) if traceparent else ()


def _parse_address(address: str) -> tuple[str, bool]:
    for scheme, https in (("https://", True), ("http://", False)):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/"), https
    return address, False


def _is_read(request: message.Message) -> bool:
    name = request.DESCRIPTOR.name
    return name.startswith(("Get", "List", "Validate"))


class _Service:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._stubs = client.stubs


class Chains(_Service):
    """ChainService: chain definitions, versioned."""

    async def create(self, chain: ChainLike, *, request_id: str = "") -> chain_pb2.Chain:
        request = chain_pb2.CreateChainRequest(chain=chain_from(chain), request_id=request_id)
        return await self._client.call(self._stubs.chains.CreateChain, request)

    async def get(self, chain_id: str, *, version: int = 0) -> chain_pb2.Chain:
        request = chain_pb2.GetChainRequest(id=chain_id, version=version)
        return await self._client.call(self._stubs.chains.GetChain, request)

    async def list(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> chain_pb2.ListChainsResponse:
        request = chain_pb2.ListChainsRequest(page_size=page_size, page_token=page_token)
        return await self._client.call(self._stubs.chains.ListChains, request)

    async def versions(
        self, chain_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> chain_pb2.ListChainVersionsResponse:
        request = chain_pb2.ListChainVersionsRequest(
            id=chain_id, page_size=page_size, page_token=page_token
        )
        return await self._client.call(self._stubs.chains.ListChainVersions, request)

    async def update(
        self, chain: ChainLike, *, etag: str = "", request_id: str = ""
    ) -> chain_pb2.Chain:
        request = chain_pb2.UpdateChainRequest(
            chain=chain_from(chain), etag=etag, request_id=request_id
        )
        return await self._client.call(self._stubs.chains.UpdateChain, request)

    async def delete(self, chain_id: str, *, etag: str = "") -> None:
        request = chain_pb2.DeleteChainRequest(id=chain_id, etag=etag)
        await self._client.call(self._stubs.chains.DeleteChain, request)

    async def validate(self, chain: ChainLike) -> chain_pb2.ValidateChainResponse:
        request = chain_pb2.ValidateChainRequest(chain=chain_from(chain))
        return await self._client.call(self._stubs.chains.ValidateChain, request)


class Runs(_Service):
    """RunService: start, observe and steer runs."""

    async def start(
        self,
        chain_id: str = "",
        *,
        chain: ChainLike | None = None,
        chain_version: int = 0,
        input: ValueLike = None,
        input_type: str = "",
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        tenant: str = "",
        request_id: str = "",
        traceparent: str = "",
    ) -> run_pb2.Run:
        """Starts a run of a stored chain (`chain_id`) or an inline `chain`.

        `input` is a Python value (see `to_value`); with `input_type` it is
        sent as JSON and interpreted by the server (`string`, `json`, …).
        A W3C `traceparent` (sent as metadata) makes the run's span its
        child: the run and its workers' tasks join the caller's trace.
        """
        request = _run_request(
            run_pb2.StartRunRequest(
                chain_id=chain_id,
                chain_version=chain_version,
                labels=labels,
                priority=priority,
                tenant=tenant,
                request_id=request_id,
            ),
            chain,
            input,
            input_type,
        )
        return await self._client.call(
            self._stubs.runs.StartRun, request, metadata=_trace_metadata(traceparent)
        )

    async def execute(
        self,
        chain_id: str = "",
        *,
        chain: ChainLike | None = None,
        chain_version: int = 0,
        input: ValueLike = None,
        input_type: str = "",
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        tenant: str = "",
        request_id: str = "",
        wait_timeout: float | timedelta | None = None,
        traceparent: str = "",
    ) -> run_pb2.ExecuteChainResponse:
        """Starts a run and waits for its output and per-task trace
        (`traceparent` as in `start`)."""
        request = _run_request(
            run_pb2.ExecuteChainRequest(
                chain_id=chain_id,
                chain_version=chain_version,
                labels=labels,
                priority=priority,
                tenant=tenant,
                request_id=request_id,
                wait_timeout=None if wait_timeout is None else duration(wait_timeout),
            ),
            chain,
            input,
            input_type,
        )
        return await self._client.call(
            self._stubs.runs.ExecuteChain, request, metadata=_trace_metadata(traceparent)
        )

    async def get(self, run_id: str) -> run_pb2.Run:
        return await self._client.call(self._stubs.runs.GetRun, run_pb2.GetRunRequest(id=run_id))

    async def list(
        self,
        *,
        statuses: Sequence[run_pb2.RunStatus.ValueType] = (),
        chain_id: str = "",
        labels: Mapping[str, str] | None = None,
        tenant: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> run_pb2.ListRunsResponse:
        request = run_pb2.ListRunsRequest(
            statuses=builtins.list(statuses),
            chain_id=chain_id,
            labels=dict(labels or {}),
            tenant=tenant,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._client.call(self._stubs.runs.ListRuns, request)

    async def events(self, run_id: str, *, after_seq: int = 0) -> builtins.list[run_pb2.RunEvent]:
        """Every stored event of a run after `after_seq`, in order."""
        events: builtins.list[run_pb2.RunEvent] = []
        token = ""
        while True:
            request = run_pb2.ListRunEventsRequest(
                run_id=run_id, after_seq=after_seq, page_size=500, page_token=token
            )
            page = await self._client.call(self._stubs.runs.ListRunEvents, request)
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                return events

    async def attempts(self, run_id: str) -> builtins.list[run_pb2.TaskAttempt]:
        """Every task attempt of a run, in order."""
        attempts: builtins.list[run_pb2.TaskAttempt] = []
        token = ""
        while True:
            request = run_pb2.ListRunAttemptsRequest(run_id=run_id, page_size=500, page_token=token)
            page = await self._client.call(self._stubs.runs.ListRunAttempts, request)
            attempts.extend(page.attempts)
            token = page.next_page_token
            if not token:
                return attempts

    async def cancel(self, run_id: str, *, reason: str = "", request_id: str = "") -> run_pb2.Run:
        request = run_pb2.CancelRunRequest(id=run_id, reason=reason, request_id=request_id)
        return await self._client.call(self._stubs.runs.CancelRun, request)

    async def pause(
        self, run_id: str, *, cancel_running: bool = False, request_id: str = ""
    ) -> run_pb2.Run:
        request = run_pb2.PauseRunRequest(
            id=run_id, cancel_running=cancel_running, request_id=request_id
        )
        return await self._client.call(self._stubs.runs.PauseRun, request)

    async def resume(self, run_id: str, *, request_id: str = "") -> run_pb2.Run:
        request = run_pb2.ResumeRunRequest(id=run_id, request_id=request_id)
        return await self._client.call(self._stubs.runs.ResumeRun, request)

    async def retry(self, run_id: str, *, request_id: str = "") -> run_pb2.Run:
        request = run_pb2.RetryRunRequest(id=run_id, request_id=request_id)
        return await self._client.call(self._stubs.runs.RetryRun, request)

    async def delete(self, run_id: str, *, request_id: str = "") -> None:
        """Deletes a finished run with its attempts and events
        (`FailedPrecondition` while it has not finished)."""
        request = run_pb2.DeleteRunRequest(id=run_id, request_id=request_id)
        await self._client.call(self._stubs.runs.DeleteRun, request)

    async def replay(self, run_id: str) -> run_pb2.ReplayRunResponse:
        request = run_pb2.ReplayRunRequest(id=run_id)
        return await self._client.call(self._stubs.runs.ReplayRun, request)

    async def submit_input(
        self, run_id: str, task_id: str, answer: ValueLike, *, request_id: str = ""
    ) -> run_pb2.Run:
        """Answers the `human_input` task a run waits on."""
        request = run_pb2.SubmitInputRequest(
            run_id=run_id, task_id=task_id, typed_input=to_value(answer), request_id=request_id
        )
        return await self._client.call(self._stubs.runs.SubmitInput, request)

    async def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        include_deltas: bool = False,
        backoff: Backoff = WATCH_BACKOFF,
    ) -> AsyncIterator[run_pb2.RunEvent]:
        """A run's events after `after_seq` (stored ones, then live ones),
        ending after the terminal event.

        If the stream drops (UNAVAILABLE: a restart, a lost connection) it
        reconnects with backoff and resumes after the last stored event it
        delivered, so each stored event arrives once, in order.

        Token deltas (`include_deltas`): per attempt, the deltas delivered
        concatenate to the model's text, whenever the watch joined. A watch
        that joins (or reconnects) while a call streams first gets its text
        so far (one delta with `catch_up` set), then the live deltas; after
        a reconnect the catch-up is trimmed to what was missed. Once the
        attempt's output is stored (`TASK_SUCCEEDED`) that is the whole
        answer. See `AnswerText`.
        """

        def open_stream(last_seq: int) -> Any:
            request = run_pb2.WatchRunRequest(
                run_id=run_id, after_seq=last_seq, include_deltas=include_deltas
            )
            return self._stubs.runs.WatchRun(request, metadata=self._client.metadata)

        async for event in _follow(open_stream, after_seq, backoff):
            yield event

    async def start_and_watch(
        self,
        chain_id: str = "",
        *,
        chain: ChainLike | None = None,
        chain_version: int = 0,
        input: ValueLike = None,
        input_type: str = "",
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        tenant: str = "",
        request_id: str = "",
        include_deltas: bool = False,
        traceparent: str = "",
        backoff: Backoff = WATCH_BACKOFF,
    ) -> AsyncIterator[run_pb2.RunEvent]:
        """Starts a run (as `start`) and watches it (as `watch`) in one call:
        the watch exists before the run, so its first events and token
        deltas cannot be missed, however fast the model answers.

        The start is idempotent by `request_id` (one is made up when none is
        given): a dropped stream is resumed by the same request, which starts
        nothing new and watches on after the last stored event delivered.
        """
        start = _run_request(
            run_pb2.StartRunRequest(
                chain_id=chain_id,
                chain_version=chain_version,
                labels=labels,
                priority=priority,
                tenant=tenant,
                request_id=request_id or str(uuid.uuid4()),
            ),
            chain,
            input,
            input_type,
        )

        def open_stream(last_seq: int) -> Any:
            request = run_pb2.StartAndWatchRunRequest(
                start=start, after_seq=last_seq, include_deltas=include_deltas
            )
            return self._stubs.runs.StartAndWatchRun(
                request, metadata=self._client.metadata + _trace_metadata(traceparent)
            )

        async for event in _follow(open_stream, 0, backoff):
            yield event

    async def wait(self, run_id: str, *, timeout: float | None = None) -> run_pb2.Run:
        """Waits until the run ends and returns it; `asyncio.TimeoutError`
        after `timeout` seconds."""

        async def ended() -> run_pb2.Run:
            run = await self.get(run_id)
            if run.status not in TERMINAL_STATUSES:
                async for _ in self.watch(run_id):
                    pass
                run = await self.get(run_id)
            return run

        return await asyncio.wait_for(ended(), timeout)


RunRequest = TypeVar("RunRequest", run_pb2.StartRunRequest, run_pb2.ExecuteChainRequest)


def _run_request(
    request: RunRequest, chain: ChainLike | None, value: ValueLike, input_type: str
) -> RunRequest:
    """Adds the inline chain and the input (typed, or JSON read as
    `input_type`) to a StartRun or ExecuteChain request."""
    if chain is not None:
        request.chain.CopyFrom(chain_from(chain))
    if input_type:
        request.input_type = input_type
        request.input.CopyFrom(json_value(value))
    elif value is not None:
        request.typed_input.CopyFrom(to_value(value))
    return request


class Workers(_Service):
    """WorkerService's unary calls (`Worker` holds the streams)."""

    async def list(
        self, *, queue: str = "", page_size: int = 0, page_token: str = ""
    ) -> worker_pb2.ListWorkersResponse:
        request = worker_pb2.ListWorkersRequest(
            queue=queue, page_size=page_size, page_token=page_token
        )
        return await self._client.call(self._stubs.workers.ListWorkers, request)

    async def dead_letters(
        self, *, queue: str = "", page_size: int = 0, page_token: str = ""
    ) -> worker_pb2.ListDeadLettersResponse:
        request = worker_pb2.ListDeadLettersRequest(
            queue=queue, page_size=page_size, page_token=page_token
        )
        return await self._client.call(self._stubs.workers.ListDeadLetters, request)

    async def complete(self, attempt_id: str, lease_token: str, output: ValueLike) -> None:
        """Completes a leased attempt outside a stream."""
        request = worker_pb2.CompleteTaskRequest(
            attempt_id=attempt_id, lease_token=lease_token, output=to_value(output)
        )
        await self._client.call(self._stubs.workers.CompleteTask, request)

    async def fail(
        self,
        attempt_id: str,
        lease_token: str,
        message: str,
        *,
        retryable: bool = True,
        retry_delay: float | timedelta | None = None,
    ) -> bool:
        """Fails a leased attempt outside a stream; tells whether another
        attempt was scheduled."""
        request = worker_pb2.FailTaskRequest(
            attempt_id=attempt_id, lease_token=lease_token, message=message, retryable=retryable
        )
        if retry_delay is not None:
            request.retry_delay.CopyFrom(duration(retry_delay))
        response: worker_pb2.FailTaskResponse = await self._client.call(
            self._stubs.workers.FailTask, request
        )
        return response.will_retry

    async def extend_lease(
        self, attempt_id: str, lease_token: str, extension: float | timedelta
    ) -> worker_pb2.ExtendLeaseResponse:
        request = worker_pb2.ExtendLeaseRequest(
            attempt_id=attempt_id, lease_token=lease_token, extension=duration(extension)
        )
        return await self._client.call(self._stubs.workers.ExtendLease, request)


class Info(_Service):
    """InfoService: the server's version and features."""

    async def version(self) -> info_pb2.GetVersionResponse:
        return await self._client.call(self._stubs.info.GetVersion, info_pb2.GetVersionRequest())


class Queues(_Service):
    """OperationsService's queues: depth, age, leases, pause and resume."""

    async def list(self) -> builtins.list[operations_pb2.Queue]:
        request = operations_pb2.ListQueuesRequest()
        response = await self._client.call(self._stubs.operations.ListQueues, request)
        return builtins.list(response.queues)

    async def pause(self, name: str, *, request_id: str = "") -> operations_pb2.Queue:
        """Stops the queue's work from being offered, on every replica;
        leases in flight finish."""
        request = operations_pb2.PauseQueueRequest(name=name, request_id=request_id)
        return await self._client.call(self._stubs.operations.PauseQueue, request)

    async def resume(self, name: str, *, request_id: str = "") -> operations_pb2.Queue:
        request = operations_pb2.ResumeQueueRequest(name=name, request_id=request_id)
        return await self._client.call(self._stubs.operations.ResumeQueue, request)


class Replicas(_Service):
    """OperationsService's replicas: the server processes sharing a store."""

    async def list(self) -> builtins.list[operations_pb2.Replica]:
        request = operations_pb2.ListReplicasRequest()
        response = await self._client.call(self._stubs.operations.ListReplicas, request)
        return builtins.list(response.replicas)

    async def drain(self, replica_id: str, *, request_id: str = "") -> operations_pb2.Replica:
        """Makes a replica stop taking work and hand back what it holds."""
        request = operations_pb2.DrainReplicaRequest(id=replica_id, request_id=request_id)
        return await self._client.call(self._stubs.operations.DrainReplica, request)


class Audit(_Service):
    """AuditService: who did what to which resource, and how it ended."""

    async def list(
        self,
        *,
        actor: str = "",
        action: str = "",
        resource_type: str = "",
        resource_id: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> audit_pb2.ListAuditEventsResponse:
        """One page of audit events matching every filter given."""
        request = audit_pb2.ListAuditEventsRequest(
            actor=actor,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            page_size=page_size,
            page_token=page_token,
        )
        if start_time is not None:
            request.start_time.FromDatetime(start_time)
        if end_time is not None:
            request.end_time.FromDatetime(end_time)
        return await self._client.call(self._stubs.audit.ListAuditEvents, request)


class Keys(_Service):
    """KeyService: API keys kept in the server's store (admin only)."""

    async def create(
        self,
        name: str,
        role: str,
        *,
        namespace: str = "",
        queues: Sequence[str] = (),
        expire_time: datetime | None = None,
        ttl: timedelta | float | None = None,
    ) -> security_pb2.CreateApiKeyResponse:
        """Creates a key: `role` is `admin`, `operator`, `worker` or
        `viewer`; `namespace` binds it to one namespace, `queues` a worker
        key to those queues; `expire_time` or `ttl` (seconds or a timedelta)
        ends it. The response's `secret` is shown only this once."""
        request = security_pb2.CreateApiKeyRequest(
            name=name, role=role, namespace=namespace, queues=list(queues)
        )
        if expire_time is not None:
            request.expire_time.FromDatetime(expire_time)
        if ttl is not None:
            request.ttl.CopyFrom(duration(ttl))
        return await self._client.call(self._stubs.keys.CreateApiKey, request)

    async def list(self) -> builtins.list[security_pb2.ApiKey]:
        """Every key, revoked and expired ones included; never a secret."""
        request = security_pb2.ListApiKeysRequest()
        response = await self._client.call(self._stubs.keys.ListApiKeys, request)
        return builtins.list(response.keys)

    async def revoke(self, key_id: str) -> security_pb2.ApiKey:
        """Revokes a key: every replica refuses it within a second."""
        request = security_pb2.RevokeApiKeyRequest(id=key_id)
        return await self._client.call(self._stubs.keys.RevokeApiKey, request)


class Namespaces(_Service):
    """NamespaceService: the namespaces chains, runs, hooks, workers and
    queues belong to. Creating, updating and deleting need an admin key
    bound to no namespace; a key bound to one namespace sees only that one.
    These calls name namespaces in their requests, whatever the client's
    own `namespace` is."""

    async def create(
        self, name: str, *, description: str = "", pools: Sequence[str] = ()
    ) -> security_pb2.Namespace:
        """Creates a namespace (1 to 63 lowercase letters, digits and `-`);
        `pools`, which must exist, restrict its LLM tasks (empty: every
        pool). `AlreadyExists` if the name is taken."""
        request = security_pb2.CreateNamespaceRequest(
            name=name, description=description, pools=list(pools)
        )
        return await self._client.call(self._stubs.namespaces.CreateNamespace, request)

    async def get(self, name: str) -> security_pb2.Namespace:
        request = security_pb2.GetNamespaceRequest(name=name)
        return await self._client.call(self._stubs.namespaces.GetNamespace, request)

    async def list(self) -> builtins.list[security_pb2.Namespace]:
        """Every namespace the caller may see, by name."""
        request = security_pb2.ListNamespacesRequest()
        response = await self._client.call(self._stubs.namespaces.ListNamespaces, request)
        return builtins.list(response.namespaces)

    async def update(
        self, name: str, *, description: str = "", pools: Sequence[str] = ()
    ) -> security_pb2.Namespace:
        """Replaces a namespace's description and pools."""
        request = security_pb2.UpdateNamespaceRequest(
            name=name, description=description, pools=list(pools)
        )
        return await self._client.call(self._stubs.namespaces.UpdateNamespace, request)

    async def delete(self, name: str) -> int:
        """Deletes a namespace with its chains, hooks, finished runs and
        paused queues, and revokes the keys bound to it; returns how many
        runs went with it. `FailedPrecondition` while one of its runs has
        not finished, and for `default`."""
        request = security_pb2.DeleteNamespaceRequest(name=name)
        response = await self._client.call(self._stubs.namespaces.DeleteNamespace, request)
        return int(response.deleted_runs)


class Hooks(_Service):
    """HookService: the HTTP endpoints `hook` tasks call."""

    async def create(self, hook: hook_pb2.Hook, *, request_id: str = "") -> hook_pb2.Hook:
        request = hook_pb2.CreateHookRequest(hook=hook, request_id=request_id)
        return await self._client.call(self._stubs.hooks.CreateHook, request)

    async def get(self, name: str) -> hook_pb2.Hook:
        return await self._client.call(
            self._stubs.hooks.GetHook, hook_pb2.GetHookRequest(name=name)
        )

    async def list(self, *, page_size: int = 0, page_token: str = "") -> hook_pb2.ListHooksResponse:
        request = hook_pb2.ListHooksRequest(page_size=page_size, page_token=page_token)
        return await self._client.call(self._stubs.hooks.ListHooks, request)

    async def update(self, request: hook_pb2.UpdateHookRequest) -> hook_pb2.Hook:
        return await self._client.call(self._stubs.hooks.UpdateHook, request)

    async def delete(self, name: str, *, etag: str = "") -> None:
        request = hook_pb2.DeleteHookRequest(name=name, etag=etag)
        await self._client.call(self._stubs.hooks.DeleteHook, request)


class Backends(_Service):
    """BackendService helpers, named after their RPCs (the rest:
    `client.stubs.backends`, with `metadata=client.metadata`)."""

    async def create_backend(
        self, backend: backend_pb2.Backend, *, backend_id: str = "", request_id: str = ""
    ) -> backend_pb2.Backend:
        request = backend_pb2.CreateBackendRequest(
            backend=backend, backend_id=backend_id, request_id=request_id
        )
        return await self._client.call(self._stubs.backends.CreateBackend, request)

    async def get_backend(self, backend_id: str) -> backend_pb2.Backend:
        request = backend_pb2.GetBackendRequest(id=backend_id)
        return await self._client.call(self._stubs.backends.GetBackend, request)

    async def list_backends(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> backend_pb2.ListBackendsResponse:
        request = backend_pb2.ListBackendsRequest(page_size=page_size, page_token=page_token)
        return await self._client.call(self._stubs.backends.ListBackends, request)

    async def delete_backend(self, backend_id: str, *, etag: str = "") -> None:
        request = backend_pb2.DeleteBackendRequest(id=backend_id, etag=etag)
        await self._client.call(self._stubs.backends.DeleteBackend, request)

    async def sync(self, backend_id: str) -> backend_pb2.Backend:
        """Syncs a backend now (SyncBackend): checks its health and fetches
        its model list anew; returns it with the new observed state (an
        unreachable backend comes back with `state.health` UNHEALTHY)."""
        request = backend_pb2.SyncBackendRequest(id=backend_id)
        return await self._client.call(self._stubs.backends.SyncBackend, request)

    async def state(self, backend_id: str) -> backend_pb2.BackendState:
        """What the reconciler last observed of a backend: health, latency,
        last error, and `observed_models` with their context length,
        capabilities and size."""
        return (await self.get_backend(backend_id)).state

    async def pull(
        self, backend_id: str, model: str
    ) -> AsyncIterator[backend_pb2.PullModelProgress]:
        """Downloads a model onto an Ollama backend (PullModel), yielding
        progress; the last message has `done`. A failed download raises
        (`Unavailable`, or `NotFound` for a model the registry lacks);
        `FailedPrecondition` for a backend that is not Ollama. Not retried:
        a broken stream raises `Unavailable` (pull again: Ollama resumes)."""
        request = backend_pb2.PullModelRequest(backend_id=backend_id, model=model)
        stream = self._stubs.backends.PullModel(request, metadata=self._client.metadata)
        try:
            async for progress in stream:
                yield progress
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()

    async def list_pools(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> backend_pb2.ListPoolsResponse:
        request = backend_pb2.ListPoolsRequest(page_size=page_size, page_token=page_token)
        return await self._client.call(self._stubs.backends.ListPools, request)

    async def assign_backend_to_pool(self, pool_id: str, backend_id: str) -> None:
        request = backend_pb2.AssignBackendToPoolRequest(pool_id=pool_id, backend_id=backend_id)
        await self._client.call(self._stubs.backends.AssignBackendToPool, request)

    async def create_model(
        self, model: backend_pb2.Model, *, request_id: str = ""
    ) -> backend_pb2.Model:
        request = backend_pb2.CreateModelRequest(model=model, request_id=request_id)
        return await self._client.call(self._stubs.backends.CreateModel, request)

    async def list_models(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> backend_pb2.ListModelsResponse:
        request = backend_pb2.ListModelsRequest(page_size=page_size, page_token=page_token)
        return await self._client.call(self._stubs.backends.ListModels, request)

    async def assign_model_to_pool(self, pool_id: str, model: str) -> None:
        request = backend_pb2.AssignModelToPoolRequest(pool_id=pool_id, model=model)
        await self._client.call(self._stubs.backends.AssignModelToPool, request)
