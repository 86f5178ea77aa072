"""Page numbers that cost the same at any size: the history counts at most `cap` matches."""

from __future__ import annotations

from django.contrib.auth.models import User

from webapp.common.pagination import CappedPaginator
from webapp.submissions.models import Submission
from webapp.submissions.selectors import submission_list


class SmallCap(CappedPaginator):
    cap = 10


def _submissions(user: User, count: int) -> None:
    team = user.membership.team
    Submission.objects.bulk_create(
        Submission(
            team=team, submitted_by=user, image=f"submissions/x/{n}.png", original_name=f"{n}.png",
            sha256=f"{n:064x}", size_bytes=1, image_format="PNG", width=1, height=1,
        )
        for n in range(count)
    )  # fmt: skip


def test_it_counts_exactly_up_to_the_cap_and_says_when_there_are_more(bob: User) -> None:
    _submissions(bob, 9)
    exact = SmallCap(submission_list(team=bob.membership.team), 4)
    assert (exact.count, exact.capped, exact.num_pages) == (9, False, 3)

    _submissions(bob, 21)  # 30 in all
    capped = SmallCap(submission_list(team=bob.membership.team), 4)
    assert (capped.count, capped.capped, capped.num_pages) == (10, True, 3)
    assert len(capped.page(3).object_list) == 2  # the last page offered ends at the cap
    Submission.objects.filter(pk__in=list(Submission.objects.values_list("pk", flat=True)[:20])).delete()
    at_cap = SmallCap(submission_list(team=bob.membership.team), 4)
    assert (at_cap.count, at_cap.capped) == (10, False)  # exactly the cap: nothing more to say
