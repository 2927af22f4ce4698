"""Reading the JSON of weights bundles (bundle, network and face-model configs) defensively.

A bundle may come from anyone (a Hub repo, a download): its JSON is read with a size cap,
a nesting-depth cap and no NaN/Infinity, and every failure is a WeightsError naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .errors import WeightsError

#: Largest config.json read (bundle and network configs; the shipped ones are under 4 kB).
MAX_JSON_BYTES = 1 << 20
#: Deepest nesting of lists and objects accepted (the shipped configs nest 3 deep).
MAX_JSON_DEPTH = 16


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`text` parsed as JSON (no NaN/Infinity), at most `max_depth` levels deep; a
    WeightsError naming `what` otherwise (a deep nesting is refused, not a RecursionError)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WeightsError(f"{what} is not UTF-8 text: {exc}") from None
    if not isinstance(text, str):
        raise WeightsError(f"{what} is not JSON text.")
    # a cheap upper bound first: no parser recursion at all for what would be too deep
    if max(text.count("["), text.count("{")) > max_depth and _bracket_depth(text) > max_depth:
        raise WeightsError(f"{what} nests lists or objects more than {max_depth} levels deep.")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise WeightsError(f"{what} nests lists or objects more than {max_depth} levels deep.") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        raise WeightsError(f"{what} is not valid JSON: {exc}") from None


def _bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { outside JSON strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_json_file(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES, what: str | None = None,
                   object_required: bool = True) -> Any:
    """The JSON in the regular file `path`, read with the caps of `parse_json` and at most
    `max_bytes` bytes (read, not trusted from stat); a JSON object unless `object_required`
    is False. Every failure is a WeightsError naming the file."""
    path = os.fspath(path)
    what = what or path
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise WeightsError(f"{what} does not exist.") from None
    except OSError as exc:
        raise WeightsError(f"Cannot open {what}: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WeightsError(f"{what} is not a regular file.")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise WeightsError(f"Cannot read {what}: {exc.strerror}.") from None
    if len(data) > max_bytes:
        raise WeightsError(f"{what} is too large for a config file (more than {max_bytes:,} bytes).")
    value = parse_json(data, what)
    if object_required and not isinstance(value, dict):
        raise WeightsError(f"{what} must hold a JSON object, not {type(value).__name__}.")
    return value
