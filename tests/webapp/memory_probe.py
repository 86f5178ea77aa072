"""Run in a fresh process by test_hostile_files: post the hostile set through the real upload API and
report the peak memory it took.

`PYTHONPATH=. python tests/webapp/memory_probe.py USERNAME` (a script: Django is set up before the `tests`
packages are imported) with DATABASE_URL naming the test database (committed data)
and MEDIA_ROOT its media. Prints one JSON line: the answers' statuses and the growth of the peak resident
set over the resident set before the set was posted (MB). The process is fresh, so its peak before the set
is its own start-up, not whatever an earlier test allocated; the growth measured this way can only be
overstated, never hidden. Exits non-zero where the kernel does not report the peak (VmHWM).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def memory_mb(field: str) -> float:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError as error:
        raise SystemExit(f"cannot measure memory: /proc/self/status unreadable ({error})") from error
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"cannot measure memory: no {field} in /proc/self/status")


def main(username: str) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User

    from tests.fixtures import api_client
    from tests.webapp import image_bytes, uploaded
    from tests.webapp.test_hostile_files import ACCEPTED, REFUSED

    client = api_client(User.objects.get(username=username))

    def post(name: str, data: bytes) -> int:
        response = client.post("/api/v1/submissions/", {"image": uploaded(name, data)}, format="multipart")
        return int(response.status_code)

    files = [(name, make()) for name, make, _ in REFUSED + ACCEPTED]
    warm = post("warm.png", image_bytes(seed=80))  # the first request's imports and caches, before measuring
    before = memory_mb("VmRSS")
    answers = [post(name, data) for name, data in files]
    peak = memory_mb("VmHWM")
    after = post("after.png", image_bytes(seed=79))
    print(json.dumps({"warm": warm, "answers": answers, "after": after, "growth_mb": peak - before,
                      "rss_before_mb": before, "peak_mb": peak}))


if __name__ == "__main__":
    main(sys.argv[1])
