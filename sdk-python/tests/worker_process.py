"""A worker process for the crash test: logs `started <attempt>` when a
task begins and `finished <attempt>` when its handler returns; the first
execution of each attempt takes long enough to be killed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from taskloom import Client, Task, Worker


async def main(address: str, queue: str, log: Path, worker_id: str) -> None:
    async with Client(address) as client:
        worker = Worker(client, slots=1, worker_id=worker_id)

        @worker.task(queue)
        async def handle(task: Task) -> str:
            first = f"started {task.attempt_id}" not in (log.read_text() if log.exists() else "")
            with log.open("a") as out:
                out.write(f"started {task.attempt_id}\n")
            await asyncio.sleep(30 if first else 0.1)
            with log.open("a") as out:
                out.write(f"finished {task.attempt_id}\n")
            return f"pid {os.getpid()} did {task.input}"

        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
