"""Starts a run of examples/research.json, watches it to the end and prints
its events, and the model's answer token by token as it streams; the
`search` task needs examples/python/worker.py (or the TypeScript worker)
running, the `answer` task a model backend.

    python examples/python/run.py "Why is the sky blue?" [--address 127.0.0.1:50051]
        [--model-url http://127.0.0.1:8080 --model smollm2]
    python examples/python/run.py --join RUN_ID     # watch a run already going

With `--model-url`, an OpenAI-compatible backend at that URL is registered
first and put in the built-in pools (skip it if the server already has one).
The run is started and watched in one call, so no token is missed; a watch
that joins mid-answer (`--join`) is caught up with the text so far first.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from taskloom import AlreadyExists, AnswerText, Client, from_value, load_chain
from taskloom.v1 import backend_pb2, run_pb2

CHAIN = Path(__file__).resolve().parent.parent / "research.json"


async def register_backend(client: Client, url: str, model: str) -> None:
    try:
        backend = await client.backends.create_backend(
            backend_pb2.Backend(
                name="example-model",
                type=backend_pb2.BACKEND_TYPE_OPENAI_COMPATIBLE,
                base_url=url,
            )
        )
    except AlreadyExists:
        return
    for pool in ("internal_tasks_pool", "internal_chat_pool"):
        await client.backends.assign_backend_to_pool(pool, backend.id)
    await client.backends.create_model(
        backend_pb2.Model(
            name=model,
            context_length=8192,
            capabilities=[backend_pb2.MODEL_CAPABILITY_CHAT, backend_pb2.MODEL_CAPABILITY_PROMPT],
        )
    )
    await client.backends.assign_model_to_pool("internal_tasks_pool", model)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("question", nargs="?", default="Why is the sky blue?")
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--model-url", help="register an OpenAI-compatible backend first")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--join", metavar="RUN_ID", help="watch this run instead of starting one")
    options = parser.parse_args()

    async with Client(options.address) as client:
        if options.model_url:
            await register_backend(client, options.model_url, options.model)
        if options.join:
            events = client.runs.watch(options.join, include_deltas=True)
        else:
            events = client.runs.start_and_watch(
                chain=load_chain(CHAIN), input=options.question, include_deltas=True
            )
        answer = AnswerText()
        streaming = False
        run_id = options.join
        async for event in events:
            if not run_id:
                run_id = event.run_id
                print(f"run {run_id} started")
            if event.type == run_pb2.RUN_EVENT_TYPE_TOKEN_DELTA:
                # The answer as it streams, on a line of its own.
                if not streaming:
                    print(f"{'':3} {'TOKENS':<16} {event.task_id:<8} ", end="")
                    streaming = True
                added = answer.add(event) or ""
                print(added.replace("\n", " "), end="", flush=True)
                continue
            answer.add(event)
            if streaming:
                print()
                streaming = False
            kind = run_pb2.RunEventType.Name(event.type).removeprefix("RUN_EVENT_TYPE_")
            detail = event.message or (
                str(from_value(event.output)) if event.output.ByteSize() else ""
            )
            print(f"{event.seq:3} {kind:<16} {event.task_id:<8} {detail}".rstrip())
        finished = await client.runs.get(run_id)
        print(f"answer: {answer.text()}")
        print(f"status: {run_pb2.RunStatus.Name(finished.status)}")
        print(f"output: {from_value(finished.output)}")
        print(f"tokens: {finished.usage.input_tokens} in, {finished.usage.output_tokens} out")


if __name__ == "__main__":
    asyncio.run(main())
