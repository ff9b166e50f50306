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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

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
    (a user function ``(name, args, kwargs) -> str``; ``path`` is the text that
    named it: a short name registered in ``ccs_beat_key_functions``, or a dotted
    path written in code).
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


#: the setting that registers the key functions stored text may name
KEY_FUNCTIONS_SETTING = "ccs_beat_key_functions"

#: words that cannot be the short name of a registered key function
RESERVED_NAMES = (KEY_ARGS, KEY_NAME, "kwargs")


@dataclass(frozen=True)
class KeyFunctions:
    """The key functions the application named in its own code.

    A ``key`` read from a database row or a Redis entry is data: whoever can
    write that row must not choose what beat (or the web process) imports and
    calls -- ``os.execve`` with the task name and arguments they also choose is
    a shell. Such text may name a function only through this registry:

    * ``named``: short name -> dotted path or function, from the
      ``ccs_beat_key_functions`` setting (a stored ``"tenant"`` means the
      function registered as ``"tenant"``);
    * ``paths``: dotted paths written in code (a ``beat_schedule`` entry's
      ``key``, ``ccs_beat_default_policy``, or a path registered in
      ``named``), which schedulers copy into their rows and Redis entries.

    Nothing is imported here; :func:`parse_key_spec` imports the code-given
    path only once stored text has matched it.
    """

    named: tuple[tuple[str, str | KeyFunction], ...] = ()
    paths: frozenset[str] = frozenset()
    #: function objects written in code (``beat_schedule``, the default policy)
    objects: tuple[KeyFunction, ...] = ()

    def knows(self, func: Any) -> bool:
        """True if the function object ``func`` was given in code."""
        return any(func is known for known in self.objects) or \
            any(func is target for _, target in self.named)

    def find(self, text: str, where: str = "key") -> str | KeyFunction | None:
        """What ``text`` names in the registry (a path or a function), or None.

        A function object given in code is found by its ``module.qualname``
        without importing anything: a lambda, a closure or a ``partial`` has a
        name no import can resolve, and it is the object itself that was
        meant. Two such objects under one name cannot be told apart."""
        for short, target in self.named:
            if text == short:
                return target
        objects = {id(obj): obj for obj in self.objects if function_path(obj) == text}
        if len(objects) > 1:
            raise ConfigurationError(
                f"{where}: {len(objects)} key functions in the configuration share the name "
                f"{text!r}, which is all a database row can hold; give each a module-level "
                f"function of its own, or register them in {KEY_FUNCTIONS_SETTING}")
        if objects:
            return next(iter(objects.values()))
        if text in self.paths:
            return text
        return None

    def with_code(self, paths: Iterable[str], objects: Iterable[KeyFunction]) -> KeyFunctions:
        """These, plus the paths and function objects the configuration names."""
        return replace(self, paths=self.paths | frozenset(paths),
                       objects=(*self.objects, *objects))


NO_KEY_FUNCTIONS = KeyFunctions()


def function_path(func: Any) -> str:
    """``module.qualname`` of a function: how a row or Redis entry names it."""
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def _is_path(text: str) -> bool:
    return "." in text or ":" in text


def parse_key_spec(value: Any, *, where: str, functions: KeyFunctions = NO_KEY_FUNCTIONS,
                   from_code: bool = False) -> KeySpec:
    """Turn a user's ``key`` value into a :class:`KeySpec`, or raise.

    ``where`` names the entry or setting so that the error points at it.
    ``from_code`` says the value was written in Python code (a setting, a task
    declaration): only then may a dotted path that no registry knows be
    imported. Everything else -- a Django row, a Redis entry, a ``beat_schedule``
    copied into them -- may name a function only through ``functions``.
    """
    if isinstance(value, KeySpec):
        return value
    if value is None or value == KEY_ARGS:
        return DEFAULT_KEY
    if value == KEY_NAME:
        return KeySpec(kind=KEY_NAME)
    if isinstance(value, (list, tuple)):
        return _kwargs_spec(value, where)
    if callable(value):
        # a decoder can turn stored data into a callable object (redbeat's
        # makes dateutil weekdays): only a function given in code is called
        if not (from_code or functions.knows(value)):
            raise ConfigurationError(
                f"{where}: key is a {type(value).__name__} object that the configuration "
                f"does not name; register key functions in {KEY_FUNCTIONS_SETTING}")
        return KeySpec(kind="callable", path=function_path(value), func=value)
    if isinstance(value, str):
        target = functions.find(value, where)
        if target is None and from_code and _is_path(value):
            target = value
        if target is not None:
            return KeySpec(kind="callable", path=value, func=_load(target, where))
        if _is_path(value):
            raise ConfigurationError(
                f"{where}: key function {value!r} is not registered; a key read from a "
                "database row or a Redis entry may name only 'args', 'name', keyword "
                f"argument names or a function registered in {KEY_FUNCTIONS_SETTING} "
                "(a setting: {'short_name': 'package.module.function'}), by its short name")
    raise ConfigurationError(
        f"{where}: unknown key spec {value!r}; expected {KEY_ARGS!r}, {KEY_NAME!r}, "
        "a list of keyword argument names, or the short name of a function registered "
        f"in {KEY_FUNCTIONS_SETTING}" + _registered(functions))


def _registered(functions: KeyFunctions) -> str:
    names = [short for short, _ in functions.named]
    return f" (registered: {', '.join(sorted(names))})" if names else ""


def _kwargs_spec(value: list[Any] | tuple[Any, ...], where: str) -> KeySpec:
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


def _load(target: str | KeyFunction, where: str) -> KeyFunction:
    """The function ``target`` (a path given in code, or the function itself)."""
    if not isinstance(target, str):
        return target
    try:
        func = symbol_by_name(target)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{where}: key function {target!r} cannot be imported: {exc}") from exc
    if not callable(func):
        raise ConfigurationError(f"{where}: key {target!r} is not callable")
    return cast(KeyFunction, func)


def parse_key_functions(value: Any, *, where: str = KEY_FUNCTIONS_SETTING) -> KeyFunctions:
    """Validate the ``ccs_beat_key_functions`` setting: short name -> dotted path
    or function. Each is imported now, so a typo stops beat at start."""
    if value is None:
        return NO_KEY_FUNCTIONS
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{where}: expected a dict of short name -> 'package.module.function', "
            f"got {value!r:.80}")
    named: list[tuple[str, str | KeyFunction]] = []
    for short, target in value.items():
        if not isinstance(short, str) or not short.isidentifier() or short in RESERVED_NAMES:
            raise ConfigurationError(
                f"{where}: {short!r} cannot name a key function; use an identifier other "
                f"than {', '.join(RESERVED_NAMES)}")
        if isinstance(target, str) and _is_path(target):
            _load(target, f"{where}[{short!r}]")
        elif not callable(target):
            raise ConfigurationError(
                f"{where}[{short!r}]: expected a dotted path to a function "
                f"(name, args, kwargs) -> str, got {target!r:.80}")
        named.append((short, target))
    paths = {t for _, t in named if isinstance(t, str)}
    return KeyFunctions(named=tuple(sorted(named, key=lambda item: item[0])),
                        paths=frozenset(paths))


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
        if not result.isprintable():
            # built from arguments whoever sends the task picks: a NUL would
            # make the ledger unsaveable on PostgreSQL, a newline forge log lines
            raise UnkeyableError(f"key function {spec.path} returned {result!r:.80}, which "
                                 "holds control characters")
        return result
    raise UnkeyableError(f"unknown key kind {spec.kind!r}")
