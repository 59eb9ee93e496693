"""Token deltas give the whole answer whenever a watch joins: `start_and_watch`
from the first token, `watch` joining mid-answer (caught up first), and a
reconnect's catch-up cut to what was missed. A real server and a fake
OpenAI-compatible model on loopback that streams slowly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskloom import AnswerText, Client
from taskloom.client import _continuation
from taskloom.v1 import backend_pb2, run_pb2

CHUNKS = [f"wörd{i}·🙂 " for i in range(20)]
ANSWER = "".join(CHUNKS)


class FakeModel:
    """`/v1/chat/completions`, streamed one chunk every 20 ms."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                usage = {"prompt_tokens": 3, "completion_tokens": len(CHUNKS)}
                if not body.get("stream"):
                    answer = {
                        "choices": [{"message": {"role": "assistant", "content": ANSWER}}],
                        "usage": usage,
                    }
                    data = json.dumps(answer).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for chunk in CHUNKS:
                    time.sleep(0.02)
                    event = {"choices": [{"delta": {"content": chunk}}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                last = {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage}
                self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

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
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.close()


async def add_model(client: Client, model: FakeModel) -> None:
    backend = await client.backends.create_backend(
        backend_pb2.Backend(
            name="fake", type=backend_pb2.BACKEND_TYPE_OPENAI_COMPATIBLE, base_url=model.url
        )
    )
    await client.backends.assign_backend_to_pool("internal_tasks_pool", backend.id)


def ask_chain() -> dict[str, Any]:
    return {
        "id": "ask",
        "tasks": [
            {
                "id": "ask",
                "handler": "raw_string",
                "promptTemplate": "Say something.",
                "executeConfig": {"model": "fake-model"},
                "transition": {"branches": [{"operator": "default", "goto": "end"}]},
            }
        ],
    }


def delta_text(events: list[run_pb2.RunEvent]) -> str:
    return "".join(e.delta for e in events if e.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA)


async def test_start_and_watch_sees_every_token_and_a_late_watch_catches_up(
    client: Client, model: FakeModel
) -> None:
    await add_model(client, model)
    first: list[run_pb2.RunEvent] = []
    late: list[run_pb2.RunEvent] = []
    answer = AnswerText()
    async for event in client.runs.start_and_watch(
        chain=ask_chain(), input="go", include_deltas=True
    ):
        first.append(event)
        answer.add(event)
        if event.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA and len(answer.text()) >= 30:
            break
    run_id = first[0].run_id
    assert next(e.seq for e in first if e.type != run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA) == 1
    # Joins mid-answer: the text so far first, then the rest.
    async for event in client.runs.watch(run_id, include_deltas=True):
        late.append(event)
    deltas = [e for e in late if e.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA]
    assert deltas and deltas[0].catch_up and deltas[0].delta_offset == 0
    assert len(deltas[0].delta) >= 30
    assert delta_text(late) == ANSWER
    joined = AnswerText()
    for event in late:
        joined.add(event)
    assert joined.text() == ANSWER


def delta(attempt: str, offset: int, text: str, catch_up: bool = False) -> run_pb2.RunEvent:
    return run_pb2.RunEvent(
        type=run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA,
        attempt_id=attempt,
        delta=text,
        delta_offset=offset,
        catch_up=catch_up,
    )


def test_a_reconnects_catch_up_is_cut_to_what_was_missed() -> None:
    streamed: dict[str, int] = {}
    out = [
        _continuation(e, streamed)
        for e in [
            delta("a", 0, "hé", catch_up=True),
            delta("a", 3, "llo"),
            # After a reconnect: the server's catch-up holds it all.
            delta("a", 0, "héllo wö", catch_up=True),
            delta("a", 10, "rld"),
            delta("a", 10, "rld"),
        ]
    ]
    kept = [e for e in out if e is not None]
    assert "".join(e.delta for e in kept) == "héllo wörld"
    assert [e.delta_offset for e in kept] == [0, 3, 6, 10]
    assert [e.catch_up for e in kept] == [True, False, False, False]
