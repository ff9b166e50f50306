""""Run selected tasks" in the admin honours the singleton setting, against a
real worker on Redis: it does not send a singleton while an identical task
runs, says what blocks it, and sends it once nothing does.

The admin's Celery app is the test cluster's client app (configured like its
workers); the admin views run through Django's test client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client
from django_celery_beat.models import PeriodicTask

from ccs_beat.contrib.django.admin import SingletonPeriodicTaskAdmin
from ccs_beat.contrib.django.models import SingletonSettings
from tests.conftest import require_broker
from tests.dj.adminkit import message_texts, post_action
from tests.integration.harness import Cluster, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    cluster = Cluster(require_broker("redis"), tmp_path,
                      settings={"ccs_beat_inspect_timeout": 1.0})
    monkeypatch.setattr(SingletonPeriodicTaskAdmin, "celery_app", cluster.app)
    try:
        cluster.start_worker("w1", concurrency=2)
        yield cluster
    finally:
        cluster.close()


def test_run_selected_tasks_holds_back_a_singleton_while_an_identical_task_runs(
        admin_client: Client, make_task: Callable[..., PeriodicTask], cluster: Cluster) -> None:
    report = make_task("report", task="tests.sleep", args="[0.5]", kwargs='{"tag": "manual"}',
                       queue=cluster.queue)
    SingletonSettings.objects.create(periodic_task=report, enabled=True, key="name")
    blocker = cluster.send(6.0, tag="blocker")
    wait_until(lambda: cluster.runs("blocker"), 20, what="the identical task to start")

    held = message_texts(post_action(admin_client, "run_tasks", [report]))

    warnings = [text for level, text in held if level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("report not sent, it is a singleton")
    assert blocker in warnings[0]
    assert not any("task(s) sent" in text for _, text in held)

    wait_until(lambda: cluster.finished_runs("blocker"), 20, what="the blocker to end")
    sent = message_texts(post_action(admin_client, "run_tasks", [report]))

    infos = [text for level, text in sent if level == "info"]
    assert len(infos) == 1 and infos[0].startswith("1 task(s) sent: report ("), sent
    wait_until(lambda: cluster.finished_runs("manual"), 20, what="the manual run")
    runs = cluster.runs("manual")
    assert len(runs) == 1 and runs[0].id in infos[0]
    assert runs[0].start >= cluster.finished_runs("blocker")[0].end
