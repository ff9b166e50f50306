"""Publish one copy of every guarded burst at agreed times.

Run as ``python -m tests.integration.publish COPY BURSTS T0 INTERVAL SECONDS``
in several processes at once: copy ``c`` of burst ``k`` is sent at
``T0 + k * INTERVAL``, so each burst's copies leave different processes at the
same moment. Each copy uses a different sending path (``delay``,
``apply_async``, ``send_task`` by name) and the ids go to ``published.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tests.integration.proj import app, guarded


def main(argv: list[str]) -> None:
    copy, bursts, t0, interval, seconds = (int(argv[0]), int(argv[1]), float(argv[2]),
                                           float(argv[3]), float(argv[4]))
    path = os.path.join(os.environ["CCS_TEST_DIR"], "published.jsonl")
    for k in range(bursts):
        wait = t0 + k * interval - time.time()
        if wait > 0:
            time.sleep(wait)
        tag = f"burst-{k:03d}"
        if copy % 3 == 0:
            result = guarded.delay(seconds, tag=tag)
        elif copy % 3 == 1:
            result = guarded.apply_async(args=[seconds], kwargs={"tag": tag})
        else:
            result = app.send_task("tests.guarded", args=[seconds], kwargs={"tag": tag})
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"copy": copy, "burst": tag, "id": result.id}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
