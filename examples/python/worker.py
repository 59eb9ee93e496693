"""Serves the `search` task of examples/research.json.

    python examples/python/worker.py [--address 127.0.0.1:50051] [--queue search]

Stop it with Ctrl-C: it finishes (or hands back) what it holds first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from taskloom import Client, Task, TaskFailure, Worker

NOTES = {
    "sky": "Sunlight scatters off air molecules; blue light scatters the most (Rayleigh).",
    "tea": "Tea leaves release tannins faster in hotter water.",
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--queue", default="search")
    parser.add_argument("--slots", type=int, default=4)
    options = parser.parse_args()

    async with Client(options.address) as client:
        worker = Worker(client, slots=options.slots, name="example-search")

        @worker.task(options.queue)
        async def search(task: Task) -> str:
            question = str(task.input or "")
            if not question.strip():
                raise TaskFailure("an empty question cannot be searched", retryable=False)
            await task.progress("searching", {"question": question})
            await asyncio.sleep(0.2)  # a real worker would call a search index here
            found = [note for word, note in NOTES.items() if word in question.lower()]
            return " ".join(found) or f"No notes about {question!r}."

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(worker.run())
        print(f"serving queue {options.queue!r} as {worker.worker_id}", flush=True)
        await stop.wait()
        await worker.shutdown(grace=10)
        await serving


if __name__ == "__main__":
    asyncio.run(main())
