"""The ledger in Redis, next to celery-redbeat's keys.

The state is a JSON string under ``<redbeat_key_prefix>:ccs_beat:ledger``, the
journal a list of JSON records under ``<redbeat_key_prefix>:ccs_beat:journal``;
a save writes the one and deletes the other in one transaction, and a load
reads both in one. Anyone who can write this Redis can write anything there,
so every value is data: a value that is not JSON, or not UTF-8, is set aside
with an ERROR, and a key of another Redis type is named in a clear error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redbeat.schedulers import ensure_conf, get_redis
from redis.client import NEVER_DECODE
from redis.exceptions import ResponseError

from ..errors import ConfigurationError
from ..ledger_store import LedgerStore
from ..logs import get_logger

logger = get_logger("ccs_beat")

#: suffix of the ledger's key after redbeat's key prefix
LEDGER_SUFFIX = ":ccs_beat:ledger"
#: suffix of the write-ahead journal's key (a list of JSON records)
JOURNAL_SUFFIX = ":ccs_beat:journal"
#: the Redis type ccs_beat keeps under each of its keys
KEY_TYPES = {LEDGER_SUFFIX: "string", JOURNAL_SUFFIX: "list"}


def ledger_key(app: Any) -> str:
    """The Redis key of the ledger for ``app`` (redbeat's prefix + suffix)."""
    return str(app.redbeat_conf.key_prefix) + LEDGER_SUFFIX


def journal_key(app: Any) -> str:
    """The Redis key of the ledger's write-ahead journal for ``app``."""
    return str(app.redbeat_conf.key_prefix) + JOURNAL_SUFFIX


def raw_reply(client: Any, *command: Any) -> Any:
    """A command's reply as bytes: redbeat's client decodes every reply, and
    one value that is not UTF-8 (anyone can write this Redis) would fail it."""
    return client.execute_command(*command, **{NEVER_DECODE: []})


def _json(raw: Any, what: str) -> Any:
    """Decoded JSON, or None with an ERROR (JSON nested past the parser's
    limit, bytes that are not UTF-8)."""
    try:
        return json.loads(raw) if raw else None
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeDecodeError too
        logger.error("ccs_beat: %s in Redis is not usable JSON (%s); ignoring it", what,
                     type(exc).__name__)
        return None


def _wrong_type(client: Any, app: Any) -> ConfigurationError:
    """Name the key that holds another Redis type than ccs_beat keeps there."""
    found = []
    for suffix, wanted in KEY_TYPES.items():
        key = app.redbeat_conf.key_prefix + suffix
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in (wanted, "none"):
            found.append(f"{key} is a {kind}, where ccs_beat keeps a {wanted}")
    return ConfigurationError(
        "ccs_beat: " + ("; ".join(found) or "a ccs_beat key holds the wrong Redis type")
        + ". Another program writes under redbeat_key_prefix: give redbeat a prefix "
        "of its own (redbeat_key_prefix), or delete the key (redis-cli DEL <key>) if "
        "nothing else needs it; ccs_beat then starts with an empty ledger.")


class RedisLedgerStore(LedgerStore):
    """State and journal in redbeat's Redis, under redbeat's key prefix."""

    def __init__(self, app: Any) -> None:
        ensure_conf(app)
        self.app = app
        self._ledger, self._journal = ledger_key(app), journal_key(app)
        self._client: Any = None
        self.where = f"redis {self._ledger}"

    def _redis(self) -> Any:
        # redbeat's get_redis() re-checks the app's configuration on every call
        # (about 0.5 ms): once per emission adds up, so keep the client
        if self._client is None:
            self._client = get_redis(self.app)
        return self._client

    def read_raw(self) -> tuple[Any, Iterable[Any]]:
        """Both keys in one transaction. Raises :class:`ConfigurationError`
        naming the key when one holds another Redis type."""
        client = self._redis()
        pipe = client.pipeline(transaction=True)
        pipe.get(self._ledger)
        pipe.lrange(self._journal, 0, -1)
        try:
            raw, journal = pipe.execute()
        except ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            raise _wrong_type(client, self.app) from exc
        except UnicodeDecodeError:
            # a value that is not UTF-8: read again as bytes (not atomic: this
            # is the damaged case), and set the bad values aside below
            raw = raw_reply(client, "GET", self._ledger)
            journal = raw_reply(client, "LRANGE", self._journal, 0, -1)
        return (_json(raw, f"the ledger ({self._ledger})"),
                [_json(r, f"a record of {self._journal}") for r in journal])

    def append(self, record: dict[str, Any]) -> None:
        self._redis().rpush(self._journal, json.dumps(record))

    def write(self, state: dict[str, Any]) -> None:
        pipe = self._redis().pipeline(transaction=True)
        pipe.set(self._ledger, json.dumps(state))
        pipe.delete(self._journal)
        pipe.execute()

    @classmethod
    def for_scheduler(cls, scheduler: Any) -> LedgerStore:
        return cls(scheduler.app)

    @classmethod
    def for_status(cls, app: Any, schedule_path: str | None) -> LedgerStore:
        return cls(app)
