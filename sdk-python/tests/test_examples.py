"""examples/python against a real server, the real local model (SmolLM2
through tests/llm/serve.mjs) and the example worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import REPO, Server

EXAMPLES = REPO / "examples" / "python"


class ModelServer:
    def __init__(self) -> None:
        setup = subprocess.run(
            ["bash", str(REPO / "tests" / "llm" / "setup.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        if setup.returncode != 0:
            raise RuntimeError(f"tests/llm/setup.sh failed:\n{setup.stderr}")
        model_file = setup.stdout.strip().splitlines()[-1]
        self.process = subprocess.Popen(
            [
                "node",
                str(REPO / "tests" / "llm" / "serve.mjs"),
                "--model",
                model_file,
                "--port",
                "0",
                "--exit-with-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self.url = line.removeprefix("listening on ").strip()
                break
        else:
            raise RuntimeError("the model server exited before listening")
        with urllib.request.urlopen(f"{self.url}/v1/models") as response:
            self.model = json.load(response)["data"][0]["id"]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServer]:
    server = ModelServer()
    try:
        yield server
    finally:
        server.stop()


def test_python_examples_run_the_research_chain(server: Server, model: ModelServer) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "worker.py"), "--address", server.address],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("serving queue 'search'")
        run = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "run.py"),
                "Why is the sky blue?",
                "--address",
                server.address,
                "--model-url",
                model.url,
                "--model",
                model.model,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    kinds = [line.split()[1] for line in lines if line[:3].strip().isdigit()]
    assert kinds[0] == "RUN_CREATED" and kinds[-1] == "RUN_SUCCEEDED", lines
    assert any("TASK_PROGRESS    search   searching" in line for line in lines), lines
    assert any("TASK_SUCCEEDED   search   Sunlight scatters" in line for line in lines), lines
    assert any(
        line.split()[1:3] == ["TASK_SUCCEEDED", "answer"] for line in lines if len(line.split()) > 2
    )
    assert "status: RUN_STATUS_SUCCEEDED" in lines
    tokens = next(line for line in lines if line.startswith("tokens: "))
    assert tokens != "tokens: 0 in, 0 out", tokens
    # The worker shut down cleanly on SIGTERM.
    assert worker.returncode == 0
