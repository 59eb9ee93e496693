"""Backends as a fleet: `backends.sync`, observed state and `backends.pull`
against a real server and a fake Ollama on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskloom import Client, FailedPrecondition, NotFound, Unavailable
from taskloom.v1 import backend_pb2


class FakeOllama:
    """`/api/tags`, `/api/show` and `/api/pull` the way Ollama answers them."""

    def __init__(self) -> None:
        self.models: list[str] = ["llama3:latest"]
        self.pulls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                tags = {"models": [{"name": name, "size": 1234} for name in fake.models]}
                self.reply(200, json.dumps(tags).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/api/show":
                    show = {
                        "model_info": {"llama.context_length": 8192},
                        "capabilities": ["completion"],
                    }
                    self.reply(200, json.dumps(show).encode())
                elif self.path == "/api/pull":
                    model = body["model"]
                    fake.pulls.append(model)
                    lines: list[dict[str, Any]]
                    if model == "missing":
                        lines = [{"error": "pull model manifest: file does not exist"}]
                    else:
                        lines = [
                            {"status": "pulling manifest"},
                            {"status": "pulling abc", "total": 200, "completed": 100},
                            {"status": "pulling abc", "total": 200, "completed": 200},
                            {"status": "success"},
                        ]
                        fake.models.append(model)
                    text = "".join(json.dumps(line) + "\n" for line in lines)
                    self.reply(200, text.encode(), "application/x-ndjson")
                else:
                    self.reply(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama()
    yield fake
    fake.close()


async def test_sync_and_observed_state(client: Client, ollama: FakeOllama) -> None:
    backend = await client.backends.create_backend(
        backend_pb2.Backend(name="local", type=backend_pb2.BACKEND_TYPE_OLLAMA, base_url=ollama.url)
    )
    synced = await client.backends.sync(backend.id)
    assert synced.state.health == backend_pb2.BACKEND_HEALTH_HEALTHY
    assert list(synced.state.models) == ["llama3:latest"]
    state = await client.backends.state(backend.id)
    [model] = state.observed_models
    assert (model.name, model.context_length, model.size_bytes) == ("llama3:latest", 8192, 1234)
    assert list(model.capabilities) == [
        backend_pb2.MODEL_CAPABILITY_CHAT,
        backend_pb2.MODEL_CAPABILITY_PROMPT,
    ]

    ollama.close()
    down = await client.backends.sync(backend.id)
    assert down.state.health == backend_pb2.BACKEND_HEALTH_UNHEALTHY
    assert down.state.last_error
    with pytest.raises(NotFound):
        await client.backends.sync("no-such-backend")


async def test_pull_yields_progress_then_done(client: Client, ollama: FakeOllama) -> None:
    backend = await client.backends.create_backend(
        backend_pb2.Backend(name="local", type=backend_pb2.BACKEND_TYPE_OLLAMA, base_url=ollama.url)
    )
    progress = [p async for p in client.backends.pull(backend.id, "qwen")]
    assert progress[0].status == "pulling manifest"
    assert [
        (p.completed_bytes, p.total_bytes) for p in progress if p.total_bytes and not p.done
    ] == [
        (100, 200),
        (200, 200),
    ]
    assert progress[-1].done and progress[-1].status == "success"
    assert ollama.pulls == ["qwen"]
    # Listed at once.
    assert "qwen" in (await client.backends.state(backend.id)).models

    with pytest.raises(NotFound):
        [p async for p in client.backends.pull(backend.id, "missing")]
    openai = await client.backends.create_backend(
        backend_pb2.Backend(
            name="cloud",
            type=backend_pb2.BACKEND_TYPE_OPENAI,
            base_url=ollama.url,
            api_key="k",
        )
    )
    with pytest.raises(FailedPrecondition):
        [p async for p in client.backends.pull(openai.id, "gpt-4o")]
    ollama.close()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        [p async for p in client.backends.pull(backend.id, "qwen")]
    assert time.monotonic() - started < 30
