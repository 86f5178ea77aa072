"""The staff audit page (issue #16): paging, filters by actor, action, team and day, links to the objects,
details in words, CSV export; and the site's 403 page, not Django admin's login, for non-staff."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tests.webapp import head_version_row
from webapp.audit.models import AuditEvent
from webapp.audit.services import audit_record
from webapp.cases.services import case_create


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_log_filters_links_and_says_details_in_words(alice: User, bob: User, charlie: User, staff: User) -> None:
    case = case_create(team=bob.membership.team, user=bob, title="Harbour")
    theirs = case_create(team=charlie.membership.team, user=charlie, title="Theirs")
    head = head_version_row(2)
    audit_record(actor=staff, action="activate", target=head, detail={"version": 2, "previous": 1, "automatic": False})
    old = audit_record(actor=alice, action="export", team=alice.membership.team, target=case, detail={"rows": 3})
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    client = logged_in(staff)

    page = client.get("/audit/").content.decode()
    assert f'<a href="/cases/{case.pk}/">case #{case.pk}</a>' in page
    assert '<a href="/registry/heads/2/">head v2</a>' in page
    assert "<dt>automatic</dt><dd>no</dd>" in page and "<dt>previous</dt><dd>1</dd>" in page
    assert "{'" not in page  # no raw dicts

    by_actor = client.get("/audit/", {"actor": "charlie"}).content.decode()
    assert f"case #{theirs.pk}" in by_actor and f"case #{case.pk}<" not in by_actor
    by_team = client.get("/audit/", {"team": bob.membership.team.pk}).content.decode()
    assert f"case #{case.pk}" in by_team and f"case #{theirs.pk}" not in by_team
    by_action = client.get("/audit/", {"action": "export"}).content.decode()
    assert "<code>export</code>" in by_action and "<code>case_create</code>" not in by_action
    recent = client.get("/audit/", {"date_from": (timezone.now() - timedelta(days=2)).date().isoformat()})
    assert "<code>export</code>" not in recent.content.decode()
    bad = client.get("/audit/", {"date_from": "yesterday"})
    assert bad.status_code == 200 and "No events." in bad.content.decode()

    exported = client.get("/audit/export.csv", {"action": "case_create"})
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert sorted(r["actor"] for r in rows) == ["bob", "charlie"] and {r["action"] for r in rows} == {"case_create"}


def test_the_log_is_paged(staff: User) -> None:
    AuditEvent.objects.bulk_create([AuditEvent(action=f"event-{i:03d}") for i in range(120)])
    client = logged_in(staff)
    first = client.get("/audit/").content.decode()
    assert "Page 1 of 3" in first and "<code>event-119</code>" in first and "<code>event-069</code>" not in first
    third = client.get("/audit/", {"page": 3}).content.decode()
    assert "<code>event-000</code>" in third and "<code>event-119</code>" not in third


def test_staff_pages_answer_non_staff_with_the_site_403_page(bob: User) -> None:
    for path in ("/audit/", "/audit/export.csv", "/workers/", "/django-admin/", "/django-admin/audit/auditevent/"):
        response = logged_in(bob).get(path)
        assert response.status_code == 403, path
        assert b'data-testid="error-403"' in response.content and b"/django-admin/login" not in response.content
    assert Client().get("/django-admin/")["Location"].startswith("/django-admin/login/")


def test_the_navigation_marks_the_current_section(bob: User, staff: User) -> None:
    page = logged_in(bob).get("/cases/").content.decode()
    assert '<a href="/cases/" aria-current="page">Cases</a>' in page
    assert '<a href="/submissions/">History</a>' in page
    heads = logged_in(staff).get("/audit/").content.decode()
    assert '<a href="/audit/" aria-current="page">Audit</a>' in heads
