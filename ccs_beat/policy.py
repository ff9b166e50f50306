"""Policies and settings: what the user asked for, parsed and validated.

Everything here is pure: it takes plain values (an entry's ``singleton``
option, ``app.conf``) and returns frozen dataclasses or raises
:class:`~ccs_beat.errors.ConfigurationError` naming the entry or setting and the
bad value. Beat calls it at startup so that a typo stops the beat at once
instead of at 3 a.m. when the entry is first due.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .errors import ConfigurationError
from .guard import GuardTiming
from .identity import (
    DEFAULT_KEY,
    NO_KEY_FUNCTIONS,
    KeyFunctions,
    KeySpec,
    function_path,
    parse_key_functions,
    parse_key_spec,
)

#: never emit while an identical task is queued or running
SKIP = "skip"
#: like SKIP, but remember one missed run and emit it when the blocker ends
BUFFER_ONE = "buffer_one"
#: plain beat: always emit
ALLOW = "allow"
OVERLAPS = (SKIP, BUFFER_ONE, ALLOW)

#: cluster cannot be read: emit anyway (fail open)
EMIT = "emit"
ON_UNKNOWN = (EMIT, SKIP)

POLICY_FIELDS = ("overlap", "key", "on_unknown", "expires")

#: the longest ``expires`` we accept; anything longer is almost surely a unit mistake
MAX_EXPIRES = 366 * 24 * 3600.0


@dataclass(frozen=True)
class Policy:
    """What to do with one periodic entry when it is due.

    ``expires`` is the message expiry in seconds; ``None`` means "until the
    entry's next run", so a stale emission can never run late.
    """

    overlap: str = SKIP
    key: KeySpec = DEFAULT_KEY
    on_unknown: str = EMIT
    expires: float | None = None

    @property
    def checked(self) -> bool:
        """True when beat must read the cluster before emitting."""
        return self.overlap != ALLOW

    def describe(self) -> str:
        parts = [f"overlap={self.overlap}", f"key={self.key.describe()}",
                 f"on_unknown={self.on_unknown}"]
        if self.expires is not None:
            parts.append(f"expires={self.expires:g}s")
        return " ".join(parts)

    def as_option(self) -> dict[str, Any]:
        """A plain dict that :func:`parse_policy` turns back into this policy."""
        return {"overlap": self.overlap, "key": self.key.as_option(),
                "on_unknown": self.on_unknown, "expires": self.expires}


DEFAULT_POLICY = Policy()


def _number(value: Any, *, where: str, low: float, high: float,
            low_inclusive: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{where}: expected a number of seconds, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise ConfigurationError(f"{where}: a {len(str(value))}-digit number is out of "
                                 f"range; it must be at most {high:g} seconds") from None
    too_low = value < low if low_inclusive else value <= low
    if math.isnan(value) or too_low or value > high:
        bound = "at least" if low_inclusive else "more than"
        raise ConfigurationError(
            f"{where}: {value!r} is out of range; it must be {bound} {low:g} "
            f"and at most {high:g} seconds")
    return value


def parse_policy(value: Any, *, default: Policy = DEFAULT_POLICY,
                 where: str = "singleton", functions: KeyFunctions = NO_KEY_FUNCTIONS,
                 from_code: bool = False) -> Policy:
    """Parse one ``singleton`` option value.

    ``None`` (absent) -> ``default``; ``True`` -> ``default``, checked even if
    the default is ``allow``; ``False`` -> ``allow``; ``"skip"`` /
    ``"buffer_one"`` / ``"allow"`` -> ``default`` with that overlap; a dict ->
    ``default`` with the given fields replaced.

    ``functions`` and ``from_code`` say which key functions the value may name
    (see :func:`~ccs_beat.identity.parse_key_spec`): by default only those
    registered in code, as for a value read from a database or Redis.
    """
    if isinstance(value, Policy):
        return value
    if value is None:
        return default
    if value is True:
        return default if default.checked else replace(default, overlap=SKIP)
    if value is False:
        return replace(default, overlap=ALLOW)
    if isinstance(value, str):
        return replace(default, overlap=_choice(value, OVERLAPS, "overlap policy", where))
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in POLICY_FIELDS]
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown singleton option {unknown[0]!r}; expected "
                f"{', '.join(POLICY_FIELDS)}" + _suggest(str(unknown[0]), POLICY_FIELDS))
        changes: dict[str, Any] = {}
        if "overlap" in value:
            changes["overlap"] = _choice(value["overlap"], OVERLAPS, "overlap policy", where)
        if "key" in value:
            changes["key"] = parse_key_spec(value["key"], where=where, functions=functions,
                                            from_code=from_code)
        if "on_unknown" in value:
            changes["on_unknown"] = _choice(
                value["on_unknown"], ON_UNKNOWN, "on_unknown value", where)
        if "expires" in value:
            expires = value["expires"]
            changes["expires"] = None if expires is None else _number(
                expires, where=f"{where}: expires", low=0.0, high=MAX_EXPIRES)
        return replace(default, **changes)
    raise ConfigurationError(
        f"{where}: singleton must be True, False, one of {', '.join(OVERLAPS)}, or a dict "
        f"with keys {', '.join(POLICY_FIELDS)}; got {value!r}")


def _choice(value: Any, choices: tuple[str, ...], what: str, where: str) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise say which it is not."""
    if value not in choices:
        raise ConfigurationError(
            f"{where}: unknown {what} {value!r}; expected one of "
            f"{', '.join(choices)}" + _suggest(str(value), choices))
    return value


def _suggest(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- app-wide settings ------------------------------------------------------

PREFIX = "ccs_beat_"


@dataclass(frozen=True)
class Settings:
    """The ``ccs_beat_*`` settings, validated.

    Attributes:
        default_policy: policy for entries without a ``singleton`` option.
        inspect_timeout: longest wait for workers' replies to one cluster read.
        worker_expiry: a worker that has not answered for this long is
            presumed gone (unless Celery's heartbeats say so sooner).
        burst_max_age: a cluster read serves every entry that was already
            due when it began, however long the burst lasts; an entry that
            became due later reuses it only while it is younger than this.
        buffer_poll_interval: how often a ``buffer_one`` entry with a
            remembered run re-reads the cluster to see if its blocker ended.
        guard_delay: the worker guard's settle delay ``D`` before it reads.
        guard_timeout: the worker guard's reply timeout ``T``.
        guard_margin: slack for registration lag, broadcast transit and a
            skipped duplicate's exit; ``D >= T + 2 * margin`` is required.
        event_log: a file to which every decision event is appended as one
            JSON line (beat's and each guarded worker's), or None.
        key_functions: the key functions that text read from a database or
            Redis may name: ``ccs_beat_key_functions`` (short name -> dotted
            path) and the dotted paths written in ``beat_schedule`` and
            ``ccs_beat_default_policy``.
    """

    default_policy: Policy = DEFAULT_POLICY
    inspect_timeout: float = 1.0
    worker_expiry: float = 30.0
    burst_max_age: float = 5.0
    buffer_poll_interval: float = 1.0
    guard_delay: float = 1.5
    guard_timeout: float = 1.0
    guard_margin: float = 0.25
    event_log: str | None = None
    key_functions: KeyFunctions = NO_KEY_FUNCTIONS

    @property
    def guard_timing(self) -> GuardTiming:
        return GuardTiming(self.guard_delay, self.guard_timeout, self.guard_margin)


def _setting_parsers() -> dict[str, Any]:
    # default_policy and key_functions are parsed by load_settings itself: the
    # default policy may name a registered key function
    return {
        "default_policy": None,
        "key_functions": None,
        "inspect_timeout": lambda v, w: _number(v, where=w, low=0.0, high=60.0),
        "worker_expiry": lambda v, w: _number(v, where=w, low=1.0, high=86400.0,
                                              low_inclusive=True),
        "burst_max_age": lambda v, w: _number(v, where=w, low=0.0, high=3600.0,
                                              low_inclusive=True),
        "buffer_poll_interval": lambda v, w: _number(v, where=w, low=0.0, high=3600.0),
        "guard_delay": lambda v, w: _number(v, where=w, low=0.0, high=600.0),
        "guard_timeout": lambda v, w: _number(v, where=w, low=0.0, high=60.0),
        "guard_margin": lambda v, w: _number(v, where=w, low=0.0, high=60.0),
        "event_log": _path,
    }


def _path(value: Any, where: str) -> str | None:
    """A file path (text or a path object), or None."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigurationError(f"{where} must be a file path, got {value!r:.80}")
    return value


#: setting names (without prefix) that other modules of ccs_beat read
EXTRA_SETTINGS: set[str] = set()


def known_settings() -> list[str]:
    return sorted(PREFIX + name for name in (*_setting_parsers(), *EXTRA_SETTINGS))


def _keys_in_code(conf: Mapping[str, Any],
                  default_setting: str | None) -> tuple[set[str], list[Any]]:
    """Key functions written in the Python configuration (``beat_schedule``
    entries' ``key`` and the default policy's): their dotted paths -- a
    function object's ``module.qualname`` too, which is how the Django
    scheduler copies it into a row, read back as stored text -- and the
    function objects themselves."""
    options = [conf.get(default_setting)] if default_setting else []
    schedule = conf.get("beat_schedule")
    if isinstance(schedule, Mapping):
        for entry in schedule.values():
            entry_options = entry.get("options") if isinstance(entry, Mapping) else None
            if isinstance(entry_options, Mapping):
                options.append(entry_options.get("singleton"))
    keys = [option.get("key") for option in options if isinstance(option, Mapping)]
    objects = [key for key in keys if callable(key)]
    paths = {key for key in keys if isinstance(key, str) and ("." in key or ":" in key)}
    return paths | {function_path(func) for func in objects}, objects


def _our_keys(conf: Mapping[str, Any]) -> dict[str, str]:
    """Map each ccs_beat key found in ``conf`` (any case, any namespace) to its
    canonical lower-case name."""
    found = {}
    for key in list(conf.keys()):
        if not isinstance(key, str):
            continue
        low = key.lower()
        idx = low.find(PREFIX)
        if idx == 0 or (idx > 0 and low[idx - 1] == "_"):
            found[key] = low[idx:]
    return found


def load_settings(conf: Mapping[str, Any]) -> Settings:
    """Validate every ``ccs_beat_*`` key in ``conf`` and return :class:`Settings`.

    Works with ``app.conf`` whether the keys were set in lower case, upper case
    or under a Django ``CELERY_`` namespace.
    """
    parsers = _setting_parsers()
    known = set(known_settings())
    values: dict[str, Any] = {}
    raws: dict[str, str] = {}
    for raw, name in _our_keys(conf).items():
        if name not in known:
            raise ConfigurationError(
                f"unknown setting {raw!r}; ccs_beat knows {', '.join(sorted(known))}"
                + _suggest(name, sorted(known)))
        short = name[len(PREFIX):]
        raws[short] = raw
        if parsers.get(short) is not None:
            values[short] = parsers[short](conf[raw], raw)
    functions = parse_key_functions(conf[raws["key_functions"]], where=raws["key_functions"]) \
        if "key_functions" in raws else NO_KEY_FUNCTIONS
    functions = functions.with_code(*_keys_in_code(conf, raws.get("default_policy")))
    if "default_policy" in raws:
        values["default_policy"] = parse_policy(
            conf[raws["default_policy"]], where=raws["default_policy"], functions=functions,
            from_code=True)
    settings = Settings(key_functions=functions, **values)
    if settings.worker_expiry < settings.inspect_timeout:
        raise ConfigurationError(
            f"ccs_beat_worker_expiry ({settings.worker_expiry:g}s) must be at least "
            f"ccs_beat_inspect_timeout ({settings.inspect_timeout:g}s)")
    problem = settings.guard_timing.problem()
    if problem:
        raise ConfigurationError(
            f"ccs_beat_guard_delay / ccs_beat_guard_timeout / ccs_beat_guard_margin: {problem}")
    return settings
