"""The client's helpers and typed errors against a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import Server, worker_chain
from google.protobuf import duration_pb2

from taskloom import (
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TaskloomError,
    Worker,
    from_value,
    load_chain,
    to_value,
)
from taskloom.v1 import backend_pb2, chain_pb2, common_pb2, hook_pb2, run_pb2

APPROVAL = {
    "id": "approval",
    "tasks": [
        {
            "id": "ask",
            "handler": "human_input",
            "promptTemplate": "Approve {{ input }}?",
            "transition": {"branches": [{"operator": "default", "goto": "end"}]},
        }
    ],
}


async def wait_status(
    client: Client, run_id: str, status: run_pb2.RunStatus.ValueType
) -> run_pb2.Run:
    for _ in range(200):
        run = await client.runs.get(run_id)
        if run.status == status:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {run_pb2.RunStatus.Name(status)}")


def test_values_round_trip() -> None:
    for value in ["text", 42, 2.5, True, {"a": [1, "b", None]}, [1, 2]]:
        assert from_value(to_value(value)) == value
    assert to_value(True).WhichOneof("kind") == "boolean"
    assert to_value(7).WhichOneof("kind") == "integer"
    history = common_pb2.ChatHistory(messages=[common_pb2.ChatMessage(role="user", content="hi")])
    assert to_value(history).chat_history == history
    with pytest.raises(ValueError):
        to_value(2**70)
    with pytest.raises(TypeError):
        to_value(object())


def test_load_chain_from_json_and_yaml(tmp_path: Path) -> None:
    json_file = tmp_path / "chain.json"
    json_file.write_text(json.dumps({"chain": APPROVAL}))
    yaml_file = tmp_path / "chain.yaml"
    yaml_file.write_text(
        "id: approval\n"
        "tasks:\n"
        "  - id: ask\n"
        "    handler: human_input\n"
        "    prompt_template: 'Approve {{ input }}?'\n"
        "    transition:\n"
        "      branches:\n"
        "        - operator: default\n"
        "          goto: end\n"
    )
    from_json, from_yaml = load_chain(json_file), load_chain(yaml_file)
    assert from_json == from_yaml
    assert from_json.tasks[0].prompt_template == "Approve {{ input }}?"
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [1, 2")
    with pytest.raises(ValueError, match=r"bad\.yaml"):
        load_chain(bad)
    with pytest.raises(ValueError, match="not a chain"):
        bad.write_text("id: x\nhandlers: 3\n")
        load_chain(bad)


async def test_chains_crud_and_validation(client: Client) -> None:
    created = await client.chains.create(APPROVAL)
    assert created.id == "approval" and created.version == 1
    fetched = await client.chains.get("approval")
    assert fetched.tasks[0].handler == "human_input"

    changed = chain_pb2.Chain()
    changed.CopyFrom(fetched)
    changed.description = "second version"
    updated = await client.chains.update(changed)
    assert updated.version == 2
    versions = await client.chains.versions("approval")
    assert [c.version for c in versions.chains] == [2, 1]  # newest first
    assert [c.id for c in (await client.chains.list()).chains] == ["approval"]

    report = await client.chains.validate(
        {"id": "x", "tasks": [{"id": "end", "handler": "telepathy"}]}
    )
    assert not report.valid and report.violations

    await client.chains.delete("approval")
    with pytest.raises(NotFound) as missing:
        await client.chains.get("approval")
    assert isinstance(missing.value, TaskloomError)


async def test_typed_errors_carry_details(client: Client) -> None:
    with pytest.raises(NotFound) as not_found:
        await client.runs.get("no-such-run")
    assert not_found.value.reason == "NOT_FOUND"
    assert (not_found.value.resource_type, not_found.value.resource_name) == ("run", "no-such-run")
    assert not_found.value.details.domain == "taskloom.dev"
    with pytest.raises(NotFound) as no_chain:
        await client.chains.get("no-such-chain")
    assert no_chain.value.resource_name == "no-such-chain", no_chain.value.details

    with pytest.raises(InvalidArgument) as invalid:
        await client.chains.create({"id": "bad", "tasks": [{"id": "t", "handler": "telepathy"}]})
    fields = [v.field for v in invalid.value.field_violations]
    assert any(field.startswith("chain.tasks[0]") for field in fields), fields

    run = await client.runs.start(chain=APPROVAL, input="deploy")
    await wait_status(client, run.id, run_pb2.RUN_STATUS_WAITING_INPUT)
    await client.runs.submit_input(run.id, "ask", "yes")
    with pytest.raises(FailedPrecondition):
        await client.runs.submit_input(run.id, "ask", "again", request_id="another")

    # Lease calls with a token that is not the attempt's: fenced.
    attempt = (await client.runs.attempts(run.id))[0]
    with pytest.raises(FailedPrecondition):
        await client.workers.complete(attempt.id, "stale", "x")
    with pytest.raises(FailedPrecondition):
        await client.workers.fail(attempt.id, "stale", "no", retryable=False)
    with pytest.raises(FailedPrecondition):
        await client.workers.extend_lease(attempt.id, "stale", 1.0)


async def test_request_ids_make_retries_safe(client: Client) -> None:
    await client.chains.create(APPROVAL)
    first = await client.runs.start("approval", input="a", request_id="start-1")
    again = await client.runs.start("approval", input="a", request_id="start-1")
    assert first.id == again.id
    one = await client.runs.start("approval", input="a")
    two = await client.runs.start("approval", input="a")
    assert one.id != two.id
    assert one.request_id and two.request_id and one.request_id != two.request_id


async def test_human_input_run_lifecycle(client: Client) -> None:
    run = await client.runs.start(chain=APPROVAL, input="deploy", labels={"team": "a"})
    waiting = await wait_status(client, run.id, run_pb2.RUN_STATUS_WAITING_INPUT)
    assert waiting.input_request.prompt == "Approve deploy?"
    listed = await client.runs.list(labels={"team": "a"})
    assert [r.id for r in listed.runs] == [run.id]

    paused = await client.runs.pause(run.id)
    assert paused.status == run_pb2.RUN_STATUS_PAUSED
    resumed = await client.runs.resume(run.id)
    assert resumed.status != run_pb2.RUN_STATUS_PAUSED
    await wait_status(client, run.id, run_pb2.RUN_STATUS_WAITING_INPUT)

    await client.runs.submit_input(run.id, "ask", "approved")
    done = await client.runs.wait(run.id, timeout=10)
    assert done.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(done.output) == "approved"

    events = await client.runs.events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = {e.type for e in events}
    assert run_pb2.RUN_EVENT_TYPE_INPUT_REQUESTED in kinds
    assert events[-1].type == run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED
    attempts = await client.runs.attempts(run.id)
    assert [a.task_id for a in attempts] == ["ask"]
    replay = await client.runs.replay(run.id)
    assert not replay.diverged


async def test_cancel_retry_and_execute(client: Client) -> None:
    run = await client.runs.start(chain=worker_chain("lonely", "nobody-serves-this"))
    cancelled = await client.runs.cancel(run.id, reason="not needed")
    assert cancelled.status == run_pb2.RUN_STATUS_CANCELLED

    failing = {
        "id": "failing",
        "tasks": [{"id": "boom", "handler": "raise_error", "errorMessage": "boom"}],
    }
    failed = await client.runs.execute(chain=failing, input="x", wait_timeout=10)
    assert failed.run.status == run_pb2.RUN_STATUS_FAILED
    assert "boom" in failed.run.error.message
    # Retrying runs the same failing task again: accepted, then failed again.
    retried = await client.runs.retry(failed.run.id)
    assert retried.status != run_pb2.RUN_STATUS_FAILED
    again = await client.runs.wait(failed.run.id, timeout=10)
    assert again.status == run_pb2.RUN_STATUS_FAILED

    echo = {"id": "echo", "tasks": [{"id": "pass", "handler": "noop"}]}
    executed = await client.runs.execute(chain=echo, input={"k": 1})
    assert executed.run.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert from_value(executed.output) == {"k": 1}
    assert [t.task_id for t in executed.trace] == ["pass"]


async def test_watch_streams_to_the_end(client: Client) -> None:
    worker = Worker(client, slots=2)

    @worker.task("watch-q")
    async def handle(task: object) -> str:
        return "watched"

    serving = asyncio.create_task(worker.run())
    run = await client.runs.start(chain=worker_chain("watched", "watch-q"), input="x")
    events = [event async for event in client.runs.watch(run.id)]
    assert events[-1].type == run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    later = [event async for event in client.runs.watch(run.id, after_seq=events[-3].seq)]
    assert [e.seq for e in later] == [e.seq for e in events[-2:]]
    await worker.shutdown(grace=1)
    await serving


async def test_service_reads(client: Client) -> None:
    version = await client.info.version()
    assert version.version and version.store == "sqlite"
    assert {"chains", "runs", "workers"} <= set(version.features)
    pools = await client.backends.list_pools()
    assert "internal_chat_pool" in {p.id for p in pools.pools}
    assert (await client.backends.list_backends()).backends == []
    assert (await client.hooks.list()).hooks == []
    assert (await client.workers.list()).workers == []
    assert (await client.workers.dead_letters()).attempts == []
    with pytest.raises(NotFound):
        await client.hooks.get("missing-hook")
    with pytest.raises(NotFound):
        await client.workers.complete("missing-attempt", "token", "x")


async def test_calls_are_retried_while_the_server_restarts(server: Server) -> None:
    async with Client(server.address, retries=40) as client:
        await client.chains.create(APPROVAL)
        server.kill()
        start = asyncio.create_task(client.runs.start("approval", input="x"))
        read = asyncio.create_task(client.chains.get("approval"))
        await asyncio.sleep(0.5)
        assert not start.done() and not read.done()
        server.start()
        run = await asyncio.wait_for(start, 30)
        assert (await asyncio.wait_for(read, 30)).id == "approval"
        # Retried with one request id: one run, whatever reached the server.
        assert [r.id for r in (await client.runs.list()).runs] == [run.id]


async def test_hooks_and_backends_helpers(client: Client) -> None:
    created = await client.hooks.create(
        hook_pb2.Hook(
            name="search",
            url="http://127.0.0.1:9/search",
            method="post",
            timeout=duration_pb2.Duration(seconds=30),
            secret_headers={"Authorization": "Bearer top-secret"},
        )
    )
    assert created.secret_header_names == ["Authorization"] and not created.secret_headers
    assert (await client.hooks.get("search")).url == "http://127.0.0.1:9/search"
    assert [h.name for h in (await client.hooks.list()).hooks] == ["search"]
    updated = await client.hooks.update(
        hook_pb2.UpdateHookRequest(
            hook=hook_pb2.Hook(name="search", timeout=duration_pb2.Duration(seconds=5)),
            update_mask=["timeout"],
            etag=created.etag,
        )
    )
    assert updated.timeout.seconds == 5 and updated.etag != created.etag
    await client.hooks.delete("search", etag=updated.etag)
    with pytest.raises(NotFound):
        await client.hooks.get("search")

    backend = await client.backends.create_backend(
        backend_pb2.Backend(
            name="local", type=backend_pb2.BACKEND_TYPE_OLLAMA, base_url="http://127.0.0.1:9"
        )
    )
    assert (await client.backends.get_backend(backend.id)).name == "local"
    await client.backends.assign_backend_to_pool("internal_chat_pool", backend.id)
    model = await client.backends.create_model(
        backend_pb2.Model(
            name="tiny", context_length=2048, capabilities=[backend_pb2.MODEL_CAPABILITY_CHAT]
        )
    )
    await client.backends.assign_model_to_pool("internal_chat_pool", model.name)
    assert [m.name for m in (await client.backends.list_models()).models] == ["tiny"]
    with pytest.raises(InvalidArgument) as invalid:
        await client.backends.create_backend(backend_pb2.Backend(name="", base_url="nope"))
    assert {v.field for v in invalid.value.field_violations} >= {"backend.name"}
    await client.backends.delete_backend(backend.id)
    with pytest.raises(NotFound):
        await client.backends.get_backend(backend.id)
