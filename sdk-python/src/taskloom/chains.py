"""Chains from files: JSON or YAML holding a chain, or `{"chain": …}` (the
shape of `examples/qa.json`). Field names may be camelCase or snake_case."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from taskloom.v1 import chain_pb2

ChainLike = chain_pb2.Chain | Mapping[str, Any]


def load_chain(path: str | Path) -> chain_pb2.Chain:
    """Reads a chain from a `.json`, `.yaml` or `.yml` file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            document = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            document = yaml.safe_load(text)
        else:
            raise ValueError(f"{path}: expected a .json, .yaml or .yml file")
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {suffix[1:].upper()}: {error}") from error
    if not isinstance(document, Mapping):
        raise ValueError(f"{path}: expected an object holding a chain")
    try:
        return chain_from(document)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def chain_from(chain: ChainLike) -> chain_pb2.Chain:
    """A `Chain` message from a message or a mapping (a chain, or an object
    with a `chain` key, as in `examples/qa.json`)."""
    if isinstance(chain, chain_pb2.Chain):
        return chain
    document: Mapping[str, Any] = chain
    if "tasks" not in document and isinstance(document.get("chain"), Mapping):
        document = document["chain"]
    try:
        return json_format.ParseDict(dict(document), chain_pb2.Chain())
    except json_format.ParseError as error:
        raise ValueError(f"not a chain: {error}") from error
