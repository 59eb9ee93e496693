"""Namespaces against a real server: `client.namespaces` creates, reads,
lists, updates and deletes them, and a client's `namespace` option keeps
its chains, runs, workers and queues apart from every other namespace's."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Server, worker_chain

from taskloom import (
    AlreadyExists,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Task,
    Worker,
)
from taskloom.client import TERMINAL_STATUSES
from taskloom.v1 import run_pb2

APPROVAL = {
    "id": "approval",
    "tasks": [
        {
            "id": "ask",
            "handler": "human_input",
            "prompt_template": "Approve {{ input }}?",
            "transition": {"branches": [{"operator": "default", "goto": "end"}]},
        }
    ],
}


def noop_chain(chain_id: str) -> dict[str, object]:
    return {"id": chain_id, "tasks": [{"id": "only", "handler": "noop"}]}


async def test_namespace_lifecycle(client: Client) -> None:
    assert [ns.name for ns in await client.namespaces.list()] == ["default"]
    assert (await client.namespaces.get("default")).created_by == "system"

    created = await client.namespaces.create(
        "team-b", description="the B team", pools=["internal_tasks_pool"]
    )
    assert created.name == "team-b"
    assert created.description == "the B team"
    assert list(created.pools) == ["internal_tasks_pool"]
    assert created.created_by == "local"
    assert created.HasField("create_time")
    await client.namespaces.create("team-a")
    assert [ns.name for ns in await client.namespaces.list()] == ["default", "team-a", "team-b"]
    assert (await client.namespaces.get("team-b")).description == "the B team"

    with pytest.raises(AlreadyExists):
        await client.namespaces.create("team-a")
    with pytest.raises(InvalidArgument) as bad:
        await client.namespaces.create("Team_C")
    assert [v.field for v in bad.value.details.field_violations] == ["name"]
    with pytest.raises((NotFound, InvalidArgument)):
        await client.namespaces.create("team-c", pools=["no-such-pool"])
    with pytest.raises(NotFound):
        await client.namespaces.get("team-c")

    updated = await client.namespaces.update("team-b", description="renamed")
    assert updated.description == "renamed" and list(updated.pools) == []
    with pytest.raises(NotFound):
        await client.namespaces.update("nobody")

    with pytest.raises(FailedPrecondition):
        await client.namespaces.delete("default")
    assert await client.namespaces.delete("team-b") == 0
    with pytest.raises(NotFound):
        await client.namespaces.get("team-b")
    async with Client(client.address, namespace="team-b") as gone:
        with pytest.raises(NotFound) as missing:
            await gone.chains.list()
        assert missing.value.reason == "NAMESPACE_NOT_FOUND"


async def test_namespace_option_isolates_resources(client: Client, server: Server) -> None:
    await client.namespaces.create("team-a")
    await client.namespaces.create("team-b")
    async with (
        Client(server.address, namespace="team-a") as a,
        Client(server.address, namespace="team-b") as b,
    ):
        await a.chains.create(noop_chain("only-a"))
        await a.chains.create(worker_chain("job", "q"))
        await b.chains.create(worker_chain("job", "q"))
        assert [c.id for c in (await b.chains.list()).chains] == ["job"]
        assert (await client.chains.list()).chains == []
        with pytest.raises(NotFound):
            await b.chains.get("only-a")
        with pytest.raises(NotFound):
            await b.runs.start("only-a", input="x")

        # The same request id starts a run in each namespace.
        run_a = await a.runs.start("job", input="a", request_id="same")
        run_b = await b.runs.start("job", input="b", request_id="same")
        assert run_a.id != run_b.id
        with pytest.raises(NotFound):
            await b.runs.get(run_a.id)
        with pytest.raises(NotFound):
            await b.runs.cancel(run_a.id)
        assert [r.id for r in (await b.runs.list()).runs] == [run_b.id]

        # A worker in B gets B's task only; A's q waits, paused in A alone.
        paused = await a.queues.pause("q")
        assert paused.paused and paused.ready == 1
        assert not any(q.paused for q in await b.queues.list())
        handled: list[str] = []
        worker = Worker(b, slots=2)

        @worker.task("q")
        async def handle(task: Task) -> str:
            handled.append(task.offer.run_id)
            return "done"

        serving = asyncio.create_task(worker.run())
        done = await b.runs.wait(run_b.id, timeout=15)
        assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
        await asyncio.sleep(1.0)
        assert handled == [run_b.id]
        assert len((await b.workers.list()).workers) == 1
        assert list((await a.workers.list()).workers) == []
        assert (await a.runs.get(run_a.id)).status not in TERMINAL_STATUSES
        await worker.shutdown(grace=1)
        await serving

        # A namespace with an unfinished run cannot be deleted.
        with pytest.raises(FailedPrecondition):
            await client.namespaces.delete("team-a")
        await a.runs.cancel(run_a.id)
        await a.runs.wait(run_a.id, timeout=15)
        assert await client.namespaces.delete("team-a") == 1
        with pytest.raises(NotFound):
            await a.chains.list()
        assert [r.id for r in (await b.runs.list()).runs] == [run_b.id]


async def test_bound_keys_see_their_namespace(server: Server) -> None:
    async with Client(server.address) as open_client:
        admin = await open_client.keys.create("admin", "admin")
    async with Client(server.address, api_key=admin.secret) as client:
        await client.namespaces.create("team-a")
        await client.namespaces.create("team-b")
        bound = await client.keys.create("team", "operator", namespace="team-a")
        operator = await client.keys.create("ops", "operator")
    async with Client(server.address, api_key=bound.secret, namespace="team-a") as client:
        assert [ns.name for ns in await client.namespaces.list()] == ["team-a"]
        with pytest.raises(NotFound):
            await client.namespaces.get("team-b")
    async with Client(server.address, api_key=operator.secret) as client:
        with pytest.raises(PermissionDenied):
            await client.namespaces.create("team-c")
        with pytest.raises(PermissionDenied):
            await client.namespaces.delete("team-a")


async def test_approval_run_blocks_delete(client: Client, server: Server) -> None:
    await client.namespaces.create("held")
    async with Client(server.address, namespace="held") as held:
        run = await held.runs.start(chain=APPROVAL, input="deploy")
        for _ in range(100):
            if (await held.runs.get(run.id)).status == run_pb2.RUN_STATUS_WAITING_INPUT:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(FailedPrecondition):
            await client.namespaces.delete("held")
        await held.runs.submit_input(run.id, "ask", "yes")
        done = await held.runs.wait(run.id, timeout=15)
        assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert await client.namespaces.delete("held") == 1
