"""`maildesk parse`: what maildesk extracts from a message, without storing anything.

Owns the JSON shape of that output. Stages add their verdicts through describers
(functions `(ParsedMessage, Settings) -> dict` merged into the output) that the
composition root passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maildesk.config import Settings
from maildesk.errors import UnparseableMessage
from maildesk.message import ParsedMessage, parse_bytes

Describer = Callable[[ParsedMessage, Settings], dict[str, Any]]


def describe_bytes(raw: bytes, settings: Settings, describers: Sequence[Describer] = ()) -> dict[str, Any]:
    try:
        msg = parse_bytes(raw)
    except UnparseableMessage as exc:
        return {"error": f"unparseable: {exc}"}
    data = msg.to_json()
    for describer in describers:
        try:
            data.update(describer(msg, settings))
        except Exception as exc:  # noqa: BLE001 - one describer must not hide the rest
            data.setdefault("describe_errors", []).append(f"{getattr(describer, '__name__', describer)}: {exc}")
    return data


def describe_file(path: Path, settings: Settings, describers: Sequence[Describer] = ()) -> dict[str, Any]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    try:
        return {"file": str(path), **describe_bytes(raw, settings, describers)}
    except Exception as exc:  # noqa: BLE001 - never a traceback for one file
        return {"file": str(path), "error": f"{type(exc).__name__}: {exc}"}
