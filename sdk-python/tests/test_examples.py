"""examples/python and examples/typescript against a real server and the
real local model (SmolLM2 through tests/llm/serve.mjs): each example client
with each example worker, so Python runs are served by a TypeScript worker
and the reverse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


TYPESCRIPT = REPO / "examples" / "typescript" / "dist"


def worker_command(language: str, address: str) -> list[str]:
    if language == "python":
        return [sys.executable, str(EXAMPLES / "worker.py"), "--address", address]
    return ["node", str(typescript_script("worker.js")), "--address", f"http://{address}"]


def run_command(language: str, address: str, model: ModelServer) -> list[str]:
    model_args = ["--model-url", model.url, "--model", model.model]
    if language == "python":
        script = [sys.executable, str(EXAMPLES / "run.py")]
    else:
        script = ["node", str(typescript_script("run.js"))]
        address = f"http://{address}"
    return [*script, "Why is the sky blue?", "--address", address, *model_args]


def typescript_script(name: str) -> Path:
    script = TYPESCRIPT / name
    if not script.is_file():
        raise RuntimeError(f"{script} is missing: run tests/sdk-typescript.sh first (it builds it)")
    return script


# Each example client with each example worker: the cross-language pairs are
# a Python client whose worker task a TypeScript worker serves, and the
# reverse.
@pytest.mark.parametrize(
    ("client_language", "worker_language"),
    [
        ("python", "python"),
        ("python", "typescript"),
        ("typescript", "python"),
        ("typescript", "typescript"),
    ],
)
def test_examples_run_the_research_chain(
    server: Server, model: ModelServer, client_language: str, worker_language: str
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        worker_command(worker_language, server.address), stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("serving queue 'search'")
        run = subprocess.run(
            run_command(client_language, server.address, model),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    kinds = [line.split()[1] for line in lines if line[:3].strip().isdigit()]
    assert kinds[0] == "RUN_CREATED" and kinds[-1] == "RUN_SUCCEEDED", lines
    assert any("TASK_PROGRESS    search   searching" in line for line in lines), lines
    assert any("TASK_SUCCEEDED   search   Sunlight scatters" in line for line in lines), lines
    answers = [line for line in lines if line.split()[1:3] == ["TASK_SUCCEEDED", "answer"]]
    assert len(answers) == 1, lines
    assert "status: RUN_STATUS_SUCCEEDED" in lines
    tokens = next(line for line in lines if line.startswith("tokens: "))
    assert tokens != "tokens: 0 in, 0 out", tokens
    # The worker shut down cleanly on SIGTERM.
    assert worker.returncode == 0
