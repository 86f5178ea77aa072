"""Issue #18, finding 2: a team cannot tell whether another team uploaded an image. The feature cache is
per team (another team's image costs a full forward pass, as a new one does, so `elapsed_ms` says
nothing), and stored files get random names (no content prefix, no collision suffix)."""

from __future__ import annotations

import re
from pathlib import Path

from django.contrib.auth.models import User

from attribution.features import FeatureCache
from attribution.predict import Attributor
from tests.webapp import image_bytes, uploaded
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission
from webapp.submissions.services import feature_cache_key, submission_create, verdict_create_batch
from webapp.teams.models import Team

STORED_NAME = re.compile(r"submissions/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.png")


def cached_vectors(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.npy"))


def test_another_teams_copy_of_an_image_looks_like_a_new_image(
    team_a: Team, team_b: Team, bob: User, charlie: User, active_head: HeadVersion, tmp_path: Path
) -> None:
    from workers.runtime import load_attributor

    attributor: Attributor = load_attributor(
        head_version_id=active_head.pk, version=active_head.version, artifact_name=str(active_head.artifact.name)
    ).attributor
    cache = FeatureCache(tmp_path / "features")
    shared, fresh = image_bytes(seed=1801), image_bytes(seed=1802)

    def attribute(team: Team, user: User, data: bytes, name: str) -> Submission:
        submission = submission_create(team=team, user=user, uploaded_file=uploaded(name, data))
        before = cached_vectors(cache.root)
        (verdict,) = verdict_create_batch(
            submission_ids=[submission.pk], head_version=active_head, attributor=attributor, feature_cache=cache
        )
        # A cache miss, as for any image this team never sent: the features were computed (and stored).
        assert cached_vectors(cache.root) == before + len(attributor.blocks)
        assert verdict.elapsed_ms > 0
        submission.refresh_from_db()
        return submission

    first = attribute(team_a, bob, shared, "a.png")
    copy = attribute(team_b, charlie, shared, "b.png")
    new = attribute(team_b, charlie, fresh, "c.png")

    assert first.sha256 == copy.sha256 and copy.duplicate_of is None
    assert feature_cache_key(first) != feature_cache_key(copy)
    for submission in (first, copy, new):
        name = str(submission.image.name)
        assert STORED_NAME.fullmatch(name), name
        assert submission.sha256[:16] not in name
    assert copy.image.name != first.image.name
    # Within a team the cache still serves: the same image again is a duplicate, not analysed twice.
    again = submission_create(team=team_a, user=bob, uploaded_file=uploaded("again.png", shared))
    assert again.duplicate_of_id == first.pk
