"""Turn a periodic task's singleton settings (as stored in the database) into
the ``singleton`` option that :func:`ccs_beat.parse_policy` understands. Pure:
no Django import, so the admin form, the scheduler and the unit tests share it.

The key spec is stored as one line of text, because that is what an admin form
edits well:

====================  ==============================================
text                  key
====================  ==============================================
*(empty)*             the app default (``ccs_beat_default_policy``)
``args``              task name + args + kwargs
``name``              task name only, whatever the arguments
``kwargs:a,b``        task name + the keyword arguments ``a`` and ``b``
``pkg.mod.func``      a function ``(name, args, kwargs) -> str``
====================  ==============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...identity import KEY_ARGS, KEY_NAME, KeySpec, parse_key_spec
from ...policy import DEFAULT_POLICY, Policy, parse_policy

#: prefix of a key spec listing keyword argument names
KWARGS_PREFIX = "kwargs:"


def key_from_text(text: str | None) -> str | list[str] | None:
    """The ``key`` option value for the stored text (``None``: app default)."""
    if text is not None and not isinstance(text, str):
        raise ConfigurationError(f"key must be text, got {text!r}")
    text = (text or "").strip()
    if not text:
        return None
    if text in (KEY_ARGS, KEY_NAME):
        return text
    if text.startswith(KWARGS_PREFIX):
        return [part.strip() for part in text[len(KWARGS_PREFIX):].split(",") if part.strip()]
    if "." in text or ":" in text:
        return text
    raise ConfigurationError(
        f"unknown key spec {text!r}; expected 'args', 'name', 'kwargs:a,b' or a dotted "
        "path to a function (name, args, kwargs) -> str")


def key_to_text(spec: KeySpec) -> str:
    """The stored text for a parsed key spec (inverse of :func:`key_from_text`)."""
    option = spec.as_option()
    if isinstance(option, list):
        return KWARGS_PREFIX + ",".join(option)
    return option


def singleton_option(enabled: bool, overlap: str | None = None, key: str | None = None,
                     on_unknown: str | None = None,
                     expires: float | None = None) -> bool | dict[str, Any]:
    """The ``singleton`` entry option for one row's fields.

    Blank fields are left out, so they take the app default's value.
    """
    if not enabled:
        return False
    option: dict[str, Any] = {}
    if overlap:
        option["overlap"] = overlap
    parsed_key = key_from_text(key)
    if parsed_key is not None:
        option["key"] = parsed_key
    if on_unknown:
        option["on_unknown"] = on_unknown
    if expires is not None:
        option["expires"] = expires
    return option or True


def field_errors(fields: Mapping[str, Any], *, default: Policy = DEFAULT_POLICY,
                 where: str = "singleton") -> dict[str, str]:
    """Validate one row's fields; ``{field name: message}`` for each bad one.

    Each field is checked on its own so that a form can put the message next
    to the field that caused it.
    """
    errors: dict[str, str] = {}
    checks = {
        "overlap": lambda v: parse_policy({"overlap": v}, default=default, where=where),
        "key": lambda v: parse_key_spec(key_from_text(v), where=where),
        "on_unknown": lambda v: parse_policy({"on_unknown": v}, default=default, where=where),
        "expires": lambda v: parse_policy({"expires": v}, default=default, where=where),
    }
    for name, check in checks.items():
        value = fields.get(name)
        if value in (None, ""):
            continue
        try:
            check(value)
        except ConfigurationError as exc:
            errors[name] = str(exc).removeprefix(f"{where}: ")
    enabled = fields.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = f"must be true or false, got {enabled!r}"
    return errors
