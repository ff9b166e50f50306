"""A throw-away PostgreSQL database on the loopback server, for tests that run
real beat / worker / web processes against Django.

Skipped where no server listens (a laptop); with ``CI=true`` that fails instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

from tests.conftest import in_ci, reachable

PG_ADDRESS = ("127.0.0.1", 5432)
PG_USER = os.environ.get("CCS_TEST_PG_USER", "postgres")


def require_postgres() -> None:
    import pytest
    if not reachable(PG_ADDRESS):
        message = "PostgreSQL is not reachable at 127.0.0.1:5432"
        if in_ci():
            pytest.fail(f"{message}, and CI=true: a real database is required here")
        pytest.skip(message)


def _admin_connection():
    import psycopg
    return psycopg.connect(host=PG_ADDRESS[0], port=PG_ADDRESS[1], user=PG_USER,
                           dbname="postgres", autocommit=True)


@contextlib.contextmanager
def fresh_database(prefix: str = "ccs_it") -> Iterator[str]:
    """Create an empty database, yield its name, drop it (even if still in use)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_env(db: str) -> dict[str, str]:
    """Environment for a process using :mod:`tests.dj.settings` on ``db``."""
    return {"DJANGO_SETTINGS_MODULE": "tests.dj.settings", "CCS_TEST_DJANGO_DB": db}


def migrate(env: dict[str, str], cwd: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def django_shell(env: dict[str, str], code: str, cwd: str) -> str:
    """Run ``code`` in ``manage.py shell`` against ``env``'s database; its stdout."""
    proc = subprocess.run([sys.executable, "-m", "django", "shell", "-v", "0", "-c", code],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
