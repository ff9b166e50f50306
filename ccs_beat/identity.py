"""Task identity: when are two tasks "the same task"?

Two tasks are identical when their keys are equal. A key must be equal in every
process that computes it -- beat, each worker, a web process, a new interpreter
with another ``PYTHONHASHSEED`` -- so it is built only from the task name and
a canonical JSON encoding of the arguments, hashed with SHA-256. Nothing in it
depends on ``hash()``, dict order, or which tasks a process has imported.

Arguments that have no single canonical JSON form (sets, bytes, UUIDs, dates,
arbitrary objects, NaN, non-string dict keys) are refused with an
:class:`~ccs_beat.errors.UnkeyableError` that names the argument, rather than
guessing an encoding that another process might not share.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu.utils.imports import symbol_by_name

from .errors import ConfigurationError, UnkeyableError

#: key spec word: task name plus all positional and keyword arguments (default)
KEY_ARGS = "args"
#: key spec word: task name only, whatever the arguments
KEY_NAME = "name"

KeyFunction = Callable[[str, Sequence[Any], Mapping[str, Any]], str]


@dataclass(frozen=True)
class KeySpec:
    """How much of a task makes up its identity.

    ``kind`` is one of ``"args"``, ``"name"``, ``"kwargs"`` (only the named
    keyword arguments, like celery-singleton's ``unique_on``) or ``"callable"``
    (a user function ``(name, args, kwargs) -> str`` found by dotted path).
    """

    kind: str = KEY_ARGS
    kwargs: tuple[str, ...] = ()
    path: str | None = None
    func: KeyFunction | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        if self.kind == "kwargs":
            return "kwargs " + ",".join(self.kwargs)
        if self.kind == "callable":
            return f"function {self.path}"
        return self.kind

    def as_option(self) -> str | list[str]:
        """The value to write back into an options dict (round-trips parse)."""
        if self.kind == "kwargs":
            return list(self.kwargs)
        if self.kind == "callable":
            return str(self.path)
        return self.kind


DEFAULT_KEY = KeySpec()


def parse_key_spec(value: Any, *, where: str) -> KeySpec:
    """Turn a user's ``key`` value into a :class:`KeySpec`, or raise.

    ``where`` names the entry or setting so that the error points at it.
    """
    if isinstance(value, KeySpec):
        return value
    if value is None or value == KEY_ARGS:
        return DEFAULT_KEY
    if value == KEY_NAME:
        return KeySpec(kind=KEY_NAME)
    if isinstance(value, (list, tuple)):
        names = tuple(value)
        if not names:
            raise ConfigurationError(
                f"{where}: key is an empty list; list at least one keyword argument name, "
                "or use 'name' to ignore all arguments")
        bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
        if bad:
            raise ConfigurationError(
                f"{where}: key list must hold keyword argument names, got {bad!r}")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{where}: key list {list(names)!r} repeats a name")
        return KeySpec(kind="kwargs", kwargs=tuple(sorted(names)))
    if callable(value):
        path = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
        return KeySpec(kind="callable", path=path, func=value)
    if isinstance(value, str) and ("." in value or ":" in value):
        try:
            func = symbol_by_name(value)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{where}: key function {value!r} cannot be imported: {exc}") from exc
        if not callable(func):
            raise ConfigurationError(f"{where}: key {value!r} is not callable")
        return KeySpec(kind="callable", path=value, func=func)
    raise ConfigurationError(
        f"{where}: unknown key spec {value!r}; expected {KEY_ARGS!r}, {KEY_NAME!r}, "
        "a list of keyword argument names, or a dotted path to a function "
        "(name, args, kwargs) -> str")


def _check(value: Any, path: str) -> Any:
    """Return a JSON-ready copy of ``value`` (tuples become lists) or raise."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UnkeyableError(f"{path} is {value!r}, which has no JSON form")
        return value
    if isinstance(value, (list, tuple)):
        return [_check(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnkeyableError(
                    f"{path} has a {type(k).__name__} dict key {k!r}; only string keys "
                    "survive a JSON round trip unchanged")
            out[k] = _check(v, f"{path}[{k!r}]")
        return out
    raise UnkeyableError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60}), "
        "which has no canonical JSON form; pass str/int/float/bool/None/list/dict "
        "values, or give the entry a 'key' that leaves this argument out")


def canonical_json(value: Any, *, path: str = "value") -> str:
    """Encode ``value`` as canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(_check(value, path), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def task_key(name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
             spec: KeySpec = DEFAULT_KEY) -> str:
    """The identity key of task ``name`` called with ``args`` and ``kwargs``.

    Raises :class:`UnkeyableError` naming the argument that cannot be encoded.
    """
    try:
        return _task_key(name, args, kwargs, spec)
    except (ValueError, UnicodeError, RecursionError) as exc:
        if isinstance(exc, UnkeyableError):
            raise
        # a huge int, a lone surrogate, a self-containing or absurdly deep value
        raise UnkeyableError(f"arguments of {name} cannot be encoded: "
                             f"{type(exc).__name__}: {str(exc)[:120]}") from exc


def _task_key(name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
              spec: KeySpec) -> str:
    args = list(args or ())
    kwargs = dict(kwargs or {})
    if spec.kind == KEY_NAME:
        return name
    if spec.kind == KEY_ARGS:
        body = canonical_json({"a": _check(args, "args"), "k": _check(kwargs, "kwargs")})
        return f"{name}:{_digest(body)}"
    if spec.kind == "kwargs":
        picked = {k: kwargs[k] for k in spec.kwargs if k in kwargs}
        body = canonical_json(picked, path="kwargs")
        return f"{name}[{','.join(spec.kwargs)}]:{_digest(body)}"
    if spec.kind == "callable":
        assert spec.func is not None
        try:
            result = spec.func(name, args, kwargs)
        except Exception as exc:
            raise UnkeyableError(f"key function {spec.path} raised {exc!r}") from exc
        if not isinstance(result, str) or not result:
            raise UnkeyableError(
                f"key function {spec.path} returned {result!r}; it must return a non-empty str")
        return result
    raise UnkeyableError(f"unknown key kind {spec.kind!r}")
