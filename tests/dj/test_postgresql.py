"""The Django tests again, on the real PostgreSQL server.

pytest-django sets up one database per session, so the second database runs
as a child pytest session over ``tests/dj`` with ``CCS_TEST_DJANGO_DB`` pointing
at PostgreSQL (Django creates and drops its own test database there). Its
output is shown in full if anything fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.dj.pg import require_postgres

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.skipif(os.environ.get("CCS_TEST_DJANGO_DB", "sqlite").startswith("postgres"),
                    reason="this is the PostgreSQL run itself")
def test_django_tests_pass_on_postgresql():
    require_postgres()
    env = dict(os.environ, CCS_TEST_DJANGO_DB="postgres:postgres",
               CCS_TEST_PG_TESTDB=f"test_ccs_{uuid.uuid4().hex[:10]}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
         "-o", "addopts=-ra --strict-markers"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    summary = proc.stdout.strip().splitlines()[-1]   # stderr may carry log lines
    assert " passed" in summary and "failed" not in summary, out[-3000:]
    # the database tests ran (test_database_is_the_configured_one checks the vendor)
    assert int(summary.split(" passed")[0].split()[-1]) >= 10, summary
