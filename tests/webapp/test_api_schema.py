"""schemathesis against the live API with a real token: no server error and no answer outside the schema.

The server is pytest-django's live server (a real HTTP server on a free localhost port) over the test
database, holding a team with a case, a submission and its verdict, a generator, head versions and a
training job, so that the endpoints answer with data and not only with 404s. The token is that of a team
admin who is also site staff: every operation is allowed, so each one reaches its own logic (who may do
what is the access matrix's business).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.cases.services import case_create
from webapp.registry import services as registry
from webapp.registry.models import TrainingJob
from webapp.submissions.services import submission_create

ST = str(Path(sys.executable).with_name("st"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis(url: str, token: str, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [
        ST, "run", f"{url}/api/schema/", "--header", f"Authorization: Token {token}", "--checks", CHECKS,
        # Revoking the token would leave the rest of the run unauthenticated.
        "--exclude-operation-id", "auth_token_destroy",
        "--max-examples", "20", "--seed", "20240607", "--workers", "2", "--request-timeout", "30", *options,
    ]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


@pytest.mark.redis  # re-attribution and training requests are queued on the test broker
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live_server, alice: User, bob: User, staff: User, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    team = alice.membership.team
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    head = head_version_row(1, classes=("real", "gen-x"))
    head_version_row(2, classes=("real", "gen-x"))
    generator = registry.generator_create(actor=staff, name="Gen X", slug="gen-x", family="gan")
    registry.reference_image_create(
        generator=generator, upload=uploaded("x.png", image_bytes(seed=600)), uploaded_by=staff, enqueue=False
    )
    case = case_create(team=team, user=alice, title="Schema case")
    submission = submission_create(
        team=team, user=bob, uploaded_file=uploaded("s.png", image_bytes(seed=601)), case=case
    )
    verdict_row(submission, head, label="gen-x", decision="known_generator")
    TrainingJob.objects.create(requested_by=None, status=TrainingJob.Status.DONE)

    result = schemathesis(live_server.url, Token.objects.create(user=alice).key, tmp_path,
                          "--phases", "fuzzing,stateful")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "generated" in result.stdout  # it did test: schemathesis says how many cases it made
