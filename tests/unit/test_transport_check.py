"""A broker transport without broadcast is refused when beat starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from kombu.transport import TRANSPORT_ALIASES, memory

from ccs_beat import ConfigurationError, SingletonScheduler


class PointToPointTransport(memory.Transport):
    """Like SQS: direct queues only, no fanout exchange (SQS itself needs boto3)."""

    implements = memory.Transport.implements.extend(exchange_type=frozenset(["direct"]))
    driver_type = driver_name = "p2p"


@pytest.fixture(autouse=True)
def p2p_alias() -> Iterator[None]:
    TRANSPORT_ALIASES["p2p"] = f"{__name__}:PointToPointTransport"
    yield
    TRANSPORT_ALIASES.pop("p2p", None)


def make_app(broker: str, default_policy: object = "skip") -> Celery:
    app = Celery("t", broker=broker, set_as_current=False)
    app.conf.beat_schedule = {"gc": {"task": "blobs.gc", "schedule": 60.0}}
    app.conf.ccs_beat_default_policy = default_policy
    return app


def test_beat_refuses_a_transport_without_broadcast_naming_it(tmp_path):
    app = make_app("p2p://")
    with pytest.raises(ConfigurationError) as info:
        SingletonScheduler(app=app, schedule_filename=str(tmp_path / "s"))
    assert "'p2p'" in str(info.value) and "broadcast" in str(info.value)


def test_transport_without_broadcast_is_fine_when_no_entry_is_checked(tmp_path):
    app = make_app("p2p://", default_policy="allow")
    scheduler = SingletonScheduler(app=app, schedule_filename=str(tmp_path / "s"))
    try:
        assert scheduler.ccs_coordinator is not None
        assert not scheduler.ccs_coordinator.policy_for("gc", {}).checked
    finally:
        scheduler.close()


def test_a_transport_with_broadcast_passes_the_check(tmp_path):
    scheduler = SingletonScheduler(app=make_app("memory://"),
                                   schedule_filename=str(tmp_path / "s"))
    try:
        assert scheduler.ccs_coordinator.policy_for("gc", {}).checked
    finally:
        scheduler.close()
