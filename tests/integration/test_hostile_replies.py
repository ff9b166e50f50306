"""Any process on the broker can answer beat's broadcast. A reply that is not
even JSON, or that comes from a worker name no real worker has (control
characters: a NUL would make the ledger unsaveable on PostgreSQL, a newline
would forge log lines), is named and set aside: the real workers' answers
still decide.

A real worker on Redis runs a task; a rogue consumer bound to the same pidbox
exchange answers every broadcast with what the test gives it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from ccs_beat.cluster import ClusterReader
from ccs_beat.logs import printable
from tests.integration.harness import Cluster, wait_until

pytestmark = pytest.mark.timeout(90)


def rogue_replier(url: str, namespace: str, stop: threading.Event,
                  reply: bytes = b"{not json") -> None:
    """Answer each broadcast on ``namespace``'s mailbox with ``reply``."""
    with Connection(url) as conn:
        channel = conn.channel()
        queue = Queue(f"rogue-{namespace}", Exchange(f"{namespace}.pidbox", type="fanout",
                                                     durable=False),
                      auto_delete=True, durable=False, channel=channel)
        producer = Producer(channel)

        def answer(body: dict, message) -> None:
            reply_to = body.get("reply_to") if isinstance(body, dict) else None
            if reply_to:
                producer.publish(reply, exchange=reply_to["exchange"],
                                 routing_key=reply_to["routing_key"],
                                 content_type="application/json", content_encoding="utf-8",
                                 headers={"ticket": body.get("ticket")})

        with conn.Consumer(queue, callbacks=[answer], no_ack=True):
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    continue


def read_beside_a_rogue(cluster: Cluster, reply: bytes, rogue_name: str) -> tuple[str, Any]:
    """``(id of a task running on w1, the first read that met the rogue's reply)``."""
    cluster.start_worker("w1", concurrency=2)
    running = cluster.send(40.0, tag="long")   # still running whenever the rogue is met
    wait_until(lambda: cluster.runs("long"), 20, what="the task to start")
    stop = threading.Event()
    rogue = threading.Thread(target=rogue_replier, daemon=True,
                             args=(cluster.broker_url, f"ctl-{cluster.queue}", stop, reply))
    rogue.start()
    reader = ClusterReader(cluster.app, timeout=2.0, worker_expiry=30.0)
    met = []   # a read returns once the known worker answered: the rogue may be later

    def meets_the_rogue() -> bool:
        snap = reader.read(None)
        if rogue_name in snap.garbled:
            met.append(snap)
        return bool(met)
    try:
        wait_until(meets_the_rogue, 20, what="a read that met the rogue reply")
    finally:
        stop.set()
        rogue.join(timeout=5)
        reader.close()
    return running, met[0]


def test_an_undecodable_reply_is_set_aside_and_the_workers_answers_still_decide(redis_cluster):
    cluster = redis_cluster
    running, snap = read_beside_a_rogue(cluster, b"{not json", "(undecodable reply)")

    assert snap.failure is None, snap.failure
    assert cluster.hostname("w1") in snap.workers
    assert snap.find(running) is not None and snap.find(running).state == "active"
    assert "could not be decoded" in snap.garbled["(undecodable reply)"]


def test_a_reply_from_a_worker_name_with_control_characters_is_set_aside(redis_cluster):
    cluster = redis_cluster
    hostile = "celery@w\x00x\n[2026-01-01 00:00:00,000: CRITICAL/MainProcess] forged"
    body = {hostile: {"ccs": 1, "now": time.time(), "pool": None, "peers": None,
                      "active": [{"id": "rogue-1", "name": "tests.sleep", "args": [1],
                                  "kwargs": {}, "time_start": time.time(), "stamp": None}],
                      "reserved": [], "scheduled": []}}
    escaped = printable(hostile)

    running, snap = read_beside_a_rogue(cluster, json.dumps(body).encode(), escaped)

    assert hostile not in snap.workers and snap.find("rogue-1") is None
    assert "control characters" in snap.garbled[escaped]
    assert snap.find(running) is not None and snap.find(running).state == "active"
