"""`runs.watch` survives the server going away mid-stream."""

from __future__ import annotations

import asyncio

from conftest import Server, worker_chain

from taskloom import Client, Task, Worker
from taskloom.v1 import run_pb2


async def test_watch_resumes_after_the_server_restarts(server: Server) -> None:
    async with Client(server.address) as client:
        run = await client.runs.start(chain=worker_chain("resumed", "later"), input="x")
        seen: list[run_pb2.RunEvent] = []
        first_events = asyncio.Event()

        async def watch() -> None:
            async for event in client.runs.watch(run.id):
                seen.append(event)
                first_events.set()

        watching = asyncio.create_task(watch())
        await asyncio.wait_for(first_events.wait(), 10)
        before = len(seen)
        # The server dies mid-watch; the run is waiting for a worker.
        server.kill()
        await asyncio.sleep(0.5)
        assert not watching.done()
        server.start()

        worker = Worker(client, slots=1)

        @worker.task("later")
        async def handle(task: Task) -> str:
            return f"done {task.input}"

        serving = asyncio.create_task(worker.run())
        await asyncio.wait_for(watching, 20)
        await worker.shutdown(grace=1)
        await serving

    assert before >= 1
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), [e.seq for e in seen]
    assert seen[-1].type == run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED
    assert run_pb2.RUN_EVENT_TYPE_TASK_SUCCEEDED in {e.type for e in seen[before:]}
