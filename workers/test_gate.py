"""A gate for the tests, off unless WORKERS_TEST_GATE_DIR names a folder (never set in a deployment).

With it set, a worker holds each task at a known point until the test lets it go, so that a test can
kill or stop a worker in the middle of a group, or watch a training job's page, without racing it:

- an attribution group holds once its submissions are claimed (status `processing`), before its first
  feature lookup: the task writes `attribution-<pid>-<n>.held` (the task's submission ids, JSON) in the
  folder and waits until the test deletes that file. A task that works in several claims (submissions
  tried before go one at a time) holds again at the first lookup after each forward pass;
- a training job holds before it starts, as `training-<pid>-<n>.held` (the job id).

While a file named `open` is in the folder nothing is held.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attribution.features import FeatureCache

ENV = "WORKERS_TEST_GATE_DIR"
_count = itertools.count(1)


def hold(kind: str, ids: Sequence[int]) -> None:
    """Wait here until the test releases this hold (at once when the gate is off or open)."""
    folder = os.environ.get(ENV)
    if not folder or (Path(folder) / "open").exists():
        return
    held = Path(folder) / f"{kind}-{os.getpid()}-{next(_count)}.held"
    partial = held.with_suffix(".tmp")
    partial.write_text(json.dumps([int(i) for i in ids]))
    partial.replace(held)  # the test never reads half a file
    while held.exists():
        time.sleep(0.01)


class _HoldingFeatureCache(FeatureCache):
    def __init__(self, root: Path, submission_ids: Sequence[int]) -> None:
        super().__init__(root)
        self._submission_ids = list(submission_ids)
        self._hold_next = True  # at the first lookup, and at the first one after a forward pass

    def get(self, sha256: str, backbone_identity: str, block: int) -> np.ndarray | None:
        if self._hold_next:
            self._hold_next = False
            hold("attribution", self._submission_ids)
        return super().get(sha256, backbone_identity, block)

    def put(self, sha256: str, backbone_identity: str, block: int, vector: np.ndarray) -> None:
        self._hold_next = True
        super().put(sha256, backbone_identity, block, vector)


def feature_cache(cache: FeatureCache, submission_ids: Sequence[int]) -> FeatureCache:
    """`cache` itself when the gate is off; else the same cache, whose first lookup holds the group."""
    if not os.environ.get(ENV):
        return cache
    return _HoldingFeatureCache(cache.root, submission_ids)
