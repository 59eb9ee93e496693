"""The worker against a real server: results, progress, failures,
cancellation, slots, crashes and graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server, worker_chain

from taskloom import Client, Task, TaskFailure, Worker, from_value
from taskloom.v1 import run_pb2

HERE = Path(__file__).resolve().parent


class Serving:
    """A worker running in the background for the length of a block."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.job: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.job = asyncio.create_task(self.worker.run())
        await asyncio.wait_for(self.worker.connected.wait(), 10)
        return self.worker

    async def __aexit__(self, *_: object) -> None:
        await self.worker.shutdown(grace=1)
        assert self.job is not None
        await self.job


async def test_handler_output_becomes_the_run_output(client: Client) -> None:
    worker = Worker(client, slots=2, name="py-test", labels={"lang": "python"})
    inputs: list[object] = []

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, object]:
        inputs.append(task.input)
        assert task.run_id and task.attempt_id and task.attempt == 1 and task.queue == "echo"
        await task.progress("halfway", {"percent": 50})
        return {"echoed": task.input}

    async with Serving(worker):
        listed = await client.workers.list()
        assert [w.worker_id for w in listed.workers] == [worker.worker_id]
        assert listed.workers[0].sdk_version.startswith("python/")
        assert listed.workers[0].queues == ["echo"]
        run = await client.runs.start(chain=worker_chain("echo", "echo"), input="hello")
        done = await client.runs.wait(run.id, timeout=10)

    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(done.output) == {"echoed": "hello"}
    assert inputs == ["hello"]
    progress = [
        e
        for e in await client.runs.events(run.id)
        if e.type == run_pb2.RUN_EVENT_TYPE_TASK_PROGRESS
    ]
    assert [(e.message, dict(e.data)) for e in progress] == [("halfway", {"percent": 50.0})]


async def test_exceptions_fail_and_retry(client: Client) -> None:
    worker = Worker(client, slots=2)
    calls: list[int] = []

    @worker.task("flaky")
    async def flaky(task: Task) -> str:
        calls.append(task.attempt)
        if task.attempt == 1:
            raise RuntimeError("first try fails")
        return "second try"

    @worker.task("broken")
    async def broken(task: Task) -> str:
        raise TaskFailure("bad input, do not retry", retryable=False)

    retry = {"maxAttempts": 3, "initialDelay": "10ms"}
    async with Serving(worker):
        ok = await client.runs.start(chain=worker_chain("flaky", "flaky", retry=retry))
        bad = await client.runs.start(chain=worker_chain("broken", "broken", retry=retry))
        ok_done = await client.runs.wait(ok.id, timeout=10)
        bad_done = await client.runs.wait(bad.id, timeout=10)

    assert ok_done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(ok_done.output) == "second try"
    assert calls == [1, 2]
    failures = [a.error for a in await client.runs.attempts(ok.id) if a.error]
    assert failures and "RuntimeError: first try fails" in failures[0]
    assert bad_done.status == run_pb2.RUN_STATUS_FAILED
    assert "bad input, do not retry" in bad_done.error.message
    assert len(await client.runs.attempts(bad.id)) == 1


async def test_cancelling_a_run_cancels_its_handler(client: Client) -> None:
    worker = Worker(client, slots=1)
    started, cancelled = asyncio.Event(), asyncio.Event()

    @worker.task("slow")
    async def slow(task: Task) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async with Serving(worker):
        run = await client.runs.start(chain=worker_chain("slow", "slow"))
        await asyncio.wait_for(started.wait(), 10)
        await client.runs.cancel(run.id)
        # Within one heartbeat interval (300 ms here), with room for CI.
        await asyncio.wait_for(cancelled.wait(), 2)
    assert (await client.runs.get(run.id)).status == run_pb2.RUN_STATUS_CANCELLED


async def test_a_long_task_keeps_its_session_by_answering_pings(client: Client) -> None:
    # The server closes a session that leaves a ping unanswered past the
    # heartbeat timeout (1 s here) and ends its leases: a worker busy with
    # a task three times as long must answer them.
    worker = Worker(client, slots=1)

    @worker.task("long")
    async def long(task: Task) -> str:
        await asyncio.sleep(3.0)
        return "done in one go"

    async with Serving(worker):
        session = worker.session_id
        run = await client.runs.start(chain=worker_chain("long", "long"))
        done = await client.runs.wait(run.id, timeout=15)
        assert worker.session_id == session
        listed = await client.workers.list()
        assert [w.session_id for w in listed.workers] == [session]
    assert from_value(done.output) == "done in one go"
    attempts = await client.runs.attempts(run.id)
    assert [(a.attempt, a.lease_expiries) for a in attempts] == [(1, 0)]


async def test_slots_bound_concurrency(client: Client) -> None:
    worker = Worker(client, slots=2)
    running = 0
    most = 0

    @worker.task("bounded")
    async def bounded(task: Task) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.1)
        running -= 1
        return 1

    async with Serving(worker):
        await client.chains.create(worker_chain("bounded", "bounded"))
        runs = [await client.runs.start("bounded") for _ in range(6)]
        for run in runs:
            assert (
                await client.runs.wait(run.id, timeout=15)
            ).status == run_pb2.RUN_STATUS_SUCCEEDED
    assert most == 2


def start_worker_process(
    address: str, queue: str, log: Path, worker_id: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "worker_process.py"), address, queue, str(log), worker_id],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_for_line(log: Path, text: str, count: int = 1) -> None:
    for _ in range(300):
        if log.exists() and log.read_text().count(text) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"{text!r} not logged {count} time(s): {log.read_text() if log.exists() else ''}"
    )


async def test_killed_worker_task_finishes_exactly_once(
    client: Client, server: Server, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    first = start_worker_process(server.address, "crashy", log, "crashy-worker")
    try:
        run = await client.runs.start(chain=worker_chain("crashy", "crashy"), input="job")
        await wait_for_line(log, "started")
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_worker_process(server.address, "crashy", log, "crashy-worker")
        try:
            done = await client.runs.wait(run.id, timeout=20)
        finally:
            second.terminate()
            second.wait()
    finally:
        first.kill()
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    lines = log.read_text().splitlines()
    assert sum(line.startswith("started") for line in lines) == 2, lines
    assert sum(line.startswith("finished") for line in lines) == 1, lines
    assert from_value(done.output) == f"pid {second.pid} did job"
    succeeded = [
        e
        for e in await client.runs.events(run.id)
        if e.type == run_pb2.RUN_EVENT_TYPE_TASK_SUCCEEDED
    ]
    assert len(succeeded) == 1


async def test_shutdown_finishes_running_work(client: Client) -> None:
    worker = Worker(client, slots=1)
    started = asyncio.Event()

    @worker.task("graceful")
    async def graceful(task: Task) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished during shutdown"

    serving = asyncio.create_task(worker.run())
    run = await client.runs.start(chain=worker_chain("graceful", "graceful"))
    await asyncio.wait_for(started.wait(), 10)
    await worker.shutdown(grace=5)
    await serving
    done = await client.runs.get(run.id)
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(done.output) == "finished during shutdown"


async def test_shutdown_releases_what_it_cannot_finish(client: Client) -> None:
    stubborn = Worker(client, slots=1)
    started = asyncio.Event()

    @stubborn.task("handover")
    async def forever(task: Task) -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    serving = asyncio.create_task(stubborn.run())
    run = await client.runs.start(chain=worker_chain("handover", "handover"))
    await asyncio.wait_for(started.wait(), 10)
    await stubborn.shutdown(grace=0.1)
    await serving

    helper = Worker(client, slots=1)

    @helper.task("handover")
    async def quick(task: Task) -> str:
        return f"taken over at attempt {task.attempt}"

    async with Serving(helper):
        done = await client.runs.wait(run.id, timeout=10)
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    # Released, not failed: no retry was spent.
    assert from_value(done.output) == "taken over at attempt 1"


async def test_bad_worker_configuration(client: Client) -> None:
    with pytest.raises(ValueError):
        Worker(client, slots=0)
    with pytest.raises(ValueError):
        Worker(client, slots=10_001)
    worker = Worker(client)
    for bad in ("", "internal", "has space", "x" * 129):
        with pytest.raises(ValueError):
            worker.handle(bad, lambda task: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError):
        await worker.run()

    # What only the server knows to refuse: a queue list longer than it takes.
    for index in range(65):

        async def handler(task: Task) -> None:
            return None

        worker.handle(f"q{index}", handler)

    from taskloom import InvalidArgument

    with pytest.raises(InvalidArgument) as refused:
        await worker.run()
    assert [v.field for v in refused.value.field_violations] == ["hello.queues"]


async def test_reconnect_reattaches_a_running_lease(client: Client, server: Server) -> None:
    worker = Worker(client, slots=1)
    started = asyncio.Event()
    executions = 0

    @worker.task("survivor")
    async def survive(task: Task) -> str:
        nonlocal executions
        executions += 1
        started.set()
        await asyncio.sleep(1.0)
        return "finished across a restart"

    async with Serving(worker):
        run = await client.runs.start(chain=worker_chain("survivor", "survivor"))
        await asyncio.wait_for(started.wait(), 10)
        first_session = worker.session_id
        # The server dies under the running task and comes back well within
        # the 2 s lease: the worker reconnects and names the lease in Hello.
        server.kill()
        server.start()
        done = await client.runs.wait(run.id, timeout=15)
        assert worker.session_id != first_session
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(done.output) == "finished across a restart"
    assert executions == 1
    attempts = await client.runs.attempts(run.id)
    assert [a.attempt for a in attempts] == [1]
    kinds = [e.type for e in await client.runs.events(run.id)]
    assert kinds.count(run_pb2.RUN_EVENT_TYPE_TASK_STARTED) == 1
    assert run_pb2.RUN_EVENT_TYPE_LEASE_EXPIRED not in kinds


async def test_a_silent_server_is_left_and_reconnected(client: Client, server: Server) -> None:
    worker = Worker(client, slots=1)

    @worker.task("patient")
    async def patient(task: Task) -> str:
        return "served after the stall"

    async with Serving(worker):
        first_session = worker.session_id
        assert server.process is not None
        # Frozen, not dead: the TCP connection stays up but nothing arrives.
        server.process.send_signal(signal.SIGSTOP)
        try:
            for _ in range(60):  # the Welcome's heartbeat timeout is 1 s
                if not worker.connected.is_set():
                    break
                await asyncio.sleep(0.05)
            assert not worker.connected.is_set(), "the worker did not notice the silence"
        finally:
            server.process.send_signal(signal.SIGCONT)
        await asyncio.wait_for(worker.connected.wait(), 10)
        assert worker.session_id != first_session
        run = await client.runs.start(chain=worker_chain("patient", "patient"))
        done = await client.runs.wait(run.id, timeout=10)
    assert from_value(done.output) == "served after the stall"


async def test_a_task_continues_the_trace_its_run_was_started_in(client: Client) -> None:
    worker = Worker(client, slots=1)
    seen: list[str] = []

    @worker.task("traced")
    async def traced(task: Task) -> str:
        seen.append(task.traceparent)
        return "traced"

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with Serving(worker):
        run = await client.runs.start(
            chain=worker_chain("traced", "traced"), input="x", traceparent=caller
        )
        done = await client.runs.wait(run.id, timeout=10)

    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert run.traceparent == caller and done.traceparent == caller
    assert len(seen) == 1
    version, task_trace, task_span, flags = seen[0].split("-")
    # The task's span is its attempt's, in the caller's trace.
    assert (version, task_trace, flags) == ("00", trace_id, "01")
    assert len(task_span) == 16 and task_span not in ("0" * 16, "00f067aa0ba902b7")
