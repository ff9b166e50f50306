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
``tenant``            the function registered as ``tenant`` in
                      ``ccs_beat_key_functions``
====================  ==============================================

A row is data anyone with the change permission can write: it can name a key
function only through ``ccs_beat_key_functions`` (or a dotted path that
``beat_schedule`` itself names), never import whatever the text says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...identity import KEY_ARGS, KEY_NAME, NO_KEY_FUNCTIONS, KeyFunctions, KeySpec, parse_key_spec
from ...policy import DEFAULT_POLICY, Policy, parse_policy

#: the admin's label of each field, to name it in an error
FIELD_LABELS = {"enabled": "'singleton'", "overlap": "'when one is running'",
                "key": "'identity'", "on_unknown": "'if a worker does not answer'",
                "expires": "'message expiry'"}

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
    # a registered key function's name (or a path beat_schedule names):
    # parse_key_spec accepts only those, and imports nothing the text says
    return text


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
                 where: str = "singleton",
                 functions: KeyFunctions = NO_KEY_FUNCTIONS) -> dict[str, str]:
    """Validate one row's fields; ``{field name: message}`` for each bad one.

    Each field is checked on its own so that a form can put the message next
    to the field that caused it.
    """
    errors: dict[str, str] = {}
    checks = {
        "overlap": lambda v: parse_policy({"overlap": v}, default=default, where=where),
        "key": lambda v: parse_key_spec(key_from_text(v), where=where, functions=functions),
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
