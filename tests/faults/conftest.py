"""Fault tests run on RabbitMQ and Redis (real servers; skipped on a laptop
without them, a failure under CI=true)."""

from __future__ import annotations

import pytest

from tests.conftest import require_broker


@pytest.fixture(params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    require_broker(request.param)
    return request.param
