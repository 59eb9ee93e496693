"""Test harness: every test talks to a real `taskloom serve` process on a
loopback port, with a fresh SQLite file (`TASKLOOM_BIN`, default the debug
build in the repository's target dir)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import Client

REPO = Path(__file__).resolve().parents[2]
#: Short leases and heartbeats, so lost work comes back within a test.
FAST = [
    "--lease-duration",
    "2s",
    "--worker-heartbeat-interval",
    "300ms",
    "--worker-heartbeat-timeout",
    "1s",
]


def server_binary() -> str:
    binary = os.environ.get("TASKLOOM_BIN") or str(REPO / "target" / "debug" / "taskloom")
    if not Path(binary).is_file():
        raise RuntimeError(
            f"no taskloom binary at {binary}: build it with cargo build -p taskloom-server"
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A `taskloom serve` process; `kill()` and `start()` again keep the
    port and the database, as a restart does."""

    def __init__(self, database: Path, args: list[str]) -> None:
        self.database = database
        self.args = args
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                server_binary(),
                "serve",
                "--listen",
                self.address,
                "--database-url",
                str(self.database),
                "--exit-with-stdin",
                *self.args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "error")},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"taskloom exited early with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"taskloom did not listen on {self.address}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server_args() -> list[str]:
    return list(FAST)


@pytest.fixture
def server(server_args: list[str]) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "taskloom.db", server_args)
        server.start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with Client(server.address) as client:
        yield client


def worker_chain(chain_id: str, queue: str, **task: Any) -> dict[str, Any]:
    """A chain of one `worker` task on `queue`."""
    return {
        "id": chain_id,
        "tasks": [
            {
                "id": "work",
                "handler": "worker",
                "queue": queue,
                **task,
                "transition": {"branches": [{"operator": "default", "goto": "end"}]},
            }
        ],
    }
