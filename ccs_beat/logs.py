"""ccs_beat's loggers: text from outside can never forge a log line.

Task ids, task and entry names, worker names and reasons reach the log from
messages, database rows, Redis entries and worker replies. A task id holding
``"\\n[2026-01-01 00:00:00,000: CRITICAL/MainProcess] ..."`` would otherwise
write a line into beat's log that looks like beat's own. Every record of a
ccs_beat logger is formatted once, and its control characters (newlines,
carriage returns, escape sequences, bidirectional overrides) are written as
``\\xNN`` / ``\\uNNNN``. Tracebacks (``exc_info``) are formatted by the handler
and left as they are.
"""

from __future__ import annotations

import logging

_CACHE: dict[str, str] = {}


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (a space stays)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


class EscapeControlCharacters(logging.Filter):
    """Format the record's message now, with control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - let the handler report the bad format
            return True
        record.msg, record.args = printable(message), ()
        return True


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, with :class:`EscapeControlCharacters` on it once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, EscapeControlCharacters) for f in logger.filters):
        logger.addFilter(EscapeControlCharacters())
    return logger
