"""Operations calls against a real server: queues, replicas, the audit log
and run deletion."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from conftest import worker_chain

from taskloom import Client, FailedPrecondition, InvalidArgument, NotFound, Worker
from taskloom.v1 import operations_pb2, run_pb2


async def test_delete_run_only_once_finished(client: Client) -> None:
    waiting = await client.runs.start(chain=worker_chain("held", "nobody-serves-this"))
    with pytest.raises(FailedPrecondition):
        await client.runs.delete(waiting.id)
    await client.runs.cancel(waiting.id)
    await client.runs.delete(waiting.id, request_id="delete-1")
    # The same request again is a replay, not NOT_FOUND.
    await client.runs.delete(waiting.id, request_id="delete-1")
    with pytest.raises(NotFound):
        await client.runs.get(waiting.id)
    with pytest.raises(NotFound):
        await client.runs.delete("no-such-run")


async def test_paused_queue_offers_nothing_until_resumed(client: Client) -> None:
    paused = await client.queues.pause("ops-q")
    assert paused.name == "ops-q" and paused.paused and paused.paused_by == "local"
    run = await client.runs.start(chain=worker_chain("ops", "ops-q"), input="x")
    handled: list[str] = []
    worker = Worker(client, slots=1)

    @worker.task("ops-q")
    async def handle(task: object) -> str:
        handled.append("yes")
        return "done"

    serving = asyncio.create_task(worker.run())
    await asyncio.sleep(1.5)
    assert handled == []
    queues = {q.name: q for q in await client.queues.list()}
    assert queues["ops-q"].paused and queues["ops-q"].ready == 1
    resumed = await client.queues.resume("ops-q")
    assert not resumed.paused
    done = await client.runs.wait(run.id, timeout=15)
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED and handled == ["yes"]
    await worker.shutdown(grace=1)
    await serving
    with pytest.raises(InvalidArgument):
        await client.queues.pause("")


async def test_replicas_list_this_server(client: Client) -> None:
    replicas = await client.replicas.list()
    assert len(replicas) == 1
    (replica,) = replicas
    assert replica.state == operations_pb2.REPLICA_STATE_ACTIVE
    assert replica.version == (await client.info.version()).version
    with pytest.raises(NotFound):
        await client.replicas.drain("no-such-replica")


async def test_audit_log_names_actions_and_outcomes(client: Client) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    await client.queues.pause("audited-q", request_id="pause-audited")
    with pytest.raises(NotFound):
        await client.chains.delete("no-such-chain")
    page = await client.audit.list(action="PauseQueue", start_time=before)
    assert [
        (e.actor, e.resource_type, e.resource_id, e.request_id, e.outcome) for e in page.events
    ] == [("local", "queue", "audited-q", "pause-audited", "OK")]
    failed = await client.audit.list(
        action="DeleteChain", resource_type="chain", resource_id="no-such-chain"
    )
    assert [e.outcome for e in failed.events] == ["NOT_FOUND"]
    first = await client.audit.list(page_size=1)
    assert len(first.events) == 1 and first.next_page_token
    rest = await client.audit.list(page_size=100, page_token=first.next_page_token)
    assert first.events[0].id not in {e.id for e in rest.events}
