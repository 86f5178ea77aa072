"""History and API queries as a team's submissions grow: does a filtered page cost the same at a million
verdicts as at twenty thousand?

    python -m bench.history_scale [--quick] [--rows 20000,200000,1000000] [--repeats 7]
                                  [--database-url postgres://postgres@127.0.0.1:5432/bench_history]

Seeds one team's submissions in a database of its own for each row count (PostgreSQL by default:
NAME_20000, NAME_200000, ...; created and migrated when missing, and kept, so a second run measures
again without seeding again), through the code path the worker uses for
verdicts: `webapp.submissions.services.verdicts_store`, in bulk, which also writes each submission's latest
verdict fields. Then, at each row count, after ANALYZE, it times (median of `--repeats`) the history page
(first page, filtered by decision, by generator, by case, page 50) and the API list (filtered by decision,
by label, and the 50th page of a label filter reached by following `next`), as a logged-in team member
through Django's test client: the query, the view and the rendering.

Writes bench/results/history_scale.json: `rows` (the counts), and for each query `ms` (median at each row
count) and `growth` (the median at the largest count over the median at the smallest). `--quick` uses
20,000 and 200,000 rows. The issue's targets: under 150 ms at 1,000,000 rows, growth under 3x.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/bench_history"
GENERATORS = [f"gen-{number}" for number in range(1, 9)]
CHUNK = 5_000


def _prepare_environment(database_url: str) -> None:
    """Settings for this process before Django reads them: the bench database, a private media folder and
    the no-server broker (nothing is queued: verdicts are stored directly)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="bench-history-"))
    os.environ["REDIS_URL"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    if database_url.startswith("postgres"):
        _create_database(database_url)


def _database_for(database_url: str, count: int) -> str:
    """A database of its own for each row count (`NAME_20000`, `NAME_1000000`, ...), kept between runs: a
    rerun measures again without seeding again, and each count is measured on exactly that many rows."""
    if database_url.startswith("sqlite"):
        stem, dot, suffix = database_url.rpartition(".")
        return f"{stem}-{count}.{suffix}" if dot and "/" not in suffix else f"{database_url}-{count}"
    parts = urlsplit(database_url)
    return parts._replace(path=f"{parts.path}_{count}").geturl()


def _use_database(database_url: str) -> dict[str, Any]:
    """Point this process's connection at `database_url` (created and migrated when missing) and return the
    bench's fixtures there."""
    from django.core.management import call_command
    from django.db import connections

    from webapp.settings import database_from_url

    if database_url.startswith("postgres"):
        _create_database(database_url)
    connections["default"].close()
    connections["default"].settings_dict.update(database_from_url(database_url))
    call_command("migrate", verbosity=0)
    return _fixtures()


def _create_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = parts._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def _fixtures() -> dict[str, Any]:
    """The bench team, its member, a head version and two cases (made once)."""
    from django.contrib.auth import get_user_model

    from webapp.cases.models import Case
    from webapp.registry.models import HeadVersion
    from webapp.teams.models import Membership, Team

    team, _ = Team.objects.get_or_create(name="History bench")
    user, created = get_user_model().objects.get_or_create(username="history-bench")
    if created:
        user.set_password("history-bench")
        user.save()
    Membership.objects.get_or_create(user=user, defaults={"team": team, "role": Membership.Role.MEMBER})
    head, _ = HeadVersion.objects.get_or_create(
        version=1,
        defaults={
            "artifact": "heads/bench.npz",
            "head_kind": "linear",
            "classes": ["real", *GENERATORS],
            "blocks": [8],
            "backbone": "ViT-S-16/random-seed0",
            "pretrained": False,
            "threshold": 0.5,
            "status": HeadVersion.Status.ACTIVE,
        },
    )
    cases = [Case.objects.get_or_create(team=team, title=f"Case {n}", defaults={"created_by": user})[0] for n in (1, 2)]
    return {"team": team, "user": user, "head": head, "cases": cases}


def _verdict_fields(number: int) -> dict[str, Any]:
    """A worker-like verdict: 30 % real, 40 % a known generator, 30 % unknown, by the row's number."""
    kind = number % 10
    label = "real" if kind < 3 else GENERATORS[number % len(GENERATORS)]
    decision = "real" if kind < 3 else ("known_generator" if kind < 7 else "unknown_generator")
    score = 0.9 if decision != "unknown_generator" else 0.3
    return {
        "label": label,
        "decision": decision,
        "score": score,
        "threshold": 0.5,
        "probabilities": {label: score, "real" if label != "real" else GENERATORS[0]: 1 - score},
        "nearest_references": [],
        "backbone": "ViT-S-16/random-seed0",
        "pretrained": False,
        "elapsed_ms": 80.0,
    }


def seed(target: int, fixtures: dict[str, Any]) -> float:
    """Add submissions (and a verdict each, through `verdicts_store`) until the team has `target`; seconds."""
    from django.utils import timezone

    from webapp.submissions.models import Submission
    from webapp.submissions.services import verdicts_store

    team, user, head, cases = fixtures["team"], fixtures["user"], fixtures["head"], fixtures["cases"]
    have = Submission.objects.filter(team=team).count()
    started = time.perf_counter()
    now = timezone.now()
    while have < target:
        numbers = range(have, min(have + CHUNK, target))
        rows = [
            Submission(
                team=team,
                case=cases[number % 2] if number % 10 == 0 else None,
                submitted_by=user,
                image=f"submissions/bench/{number:08d}.png",
                original_name=f"{number:08d}.png",
                sha256=f"{number:064x}",
                size_bytes=1000,
                image_format="PNG",
                width=224,
                height=224,
                status=Submission.Status.DONE,
                finished_at=now,
            )
            for number in numbers
        ]
        Submission.objects.bulk_create(rows, batch_size=CHUNK)
        _spread_in_time(rows, numbers, now)
        verdicts_store(
            head_version=head, verdicts=[(row, _verdict_fields(n)) for row, n in zip(rows, numbers, strict=True)]
        )
        have += len(rows)
        print(f"  seeded {have:,} rows", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return time.perf_counter() - started


def _spread_in_time(rows: list[Any], numbers: range, now: Any) -> None:
    """A minute apart, the newest last, as a team's history is (bulk_create stamps them all "now")."""
    from django.db import connection

    from webapp.submissions.models import Submission

    start = now - timedelta(minutes=1_000_000)
    if connection.vendor == "postgresql":  # one statement for the chunk
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Submission._meta.db_table} SET created_at = %s + (id - %s) * interval '1 minute' "
                "WHERE id = ANY(%s)",
                [start + timedelta(minutes=numbers[0]), rows[0].pk, [row.pk for row in rows]],
            )
        return
    for row, number in zip(rows, numbers, strict=True):
        row.created_at = start + timedelta(minutes=number)
    Submission.objects.bulk_update(rows, ["created_at"], batch_size=CHUNK)


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def query_urls(fixtures: dict[str, Any], client: Any) -> dict[str, str]:
    """The measured requests. The API's 50th page of a label filter is reached by following `next` 49 times
    first (setup, not measured), as a client paging through would."""
    case = fixtures["cases"][0]
    deep = "/api/v1/submissions/?label=gen-3&page_size=25"
    for _ in range(49):  # fewer where a small run has fewer pages: the last one then
        following = client.get(deep).json()["next"]
        if following is None:
            break
        deep = following
    return {
        "history": "/submissions/",
        "history_decision": "/submissions/?decision=unknown_generator",
        "history_generator": "/submissions/?label=gen-3",
        "history_case": f"/submissions/?case={case.pk}",
        "history_page_50": "/submissions/?page=50",
        "api_decision": "/api/v1/submissions/?decision=unknown_generator",
        "api_label": "/api/v1/submissions/?label=gen-3",
        "api_label_page_50": deep,
    }


def time_queries(fixtures: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median milliseconds of each request, as a logged-in member through Django's test client; each answer
    is checked, so a broken page cannot pass for a fast one."""
    from django.test import Client

    client = Client()
    client.force_login(fixtures["user"])
    medians = {}
    for name, url in query_urls(fixtures, client).items():
        client.get(url)  # warm: connection, templates, the database's caches
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        medians[name] = round(1000 * statistics.median(seconds), 2)
    return medians


def main(argv: list[str] | None = None) -> int:
    from bench.common import base_parser, int_list, machine, peak_rss_mb, print_table, write_results

    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int_list, default=None, help="row counts (default 20000,200000,1000000)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    args = parser.parse_args(argv)
    counts = sorted(args.rows or ([20_000, 200_000] if args.quick else [20_000, 200_000, 1_000_000]))

    _prepare_environment(_database_for(args.database_url, counts[0]))
    import django

    django.setup()
    from django.db import connection

    by_count: dict[int, dict[str, float]] = {}
    seeding: dict[int, float] = {}
    for count in counts:
        fixtures = _use_database(_database_for(args.database_url, count))
        seeding[count] = round(seed(count, fixtures), 1)
        _analyze()
        by_count[count] = time_queries(fixtures, args.repeats)
        print(f"{count:,} rows: " + ", ".join(f"{k} {v} ms" for k, v in by_count[count].items()), file=sys.stderr)

    smallest, largest = counts[0], counts[-1]
    results_by_query: dict[str, dict[str, Any]] = {
        name: {
            "ms": {str(count): by_count[count][name] for count in counts},
            "growth": round(by_count[largest][name] / by_count[smallest][name], 2),
        }
        for name in by_count[smallest]
    }
    print_table(
        f"History and API, median ms of {args.repeats} ({connection.vendor})",
        ["query", *[f"{count:,} rows" for count in counts], "growth"],
        [[name, *[r["ms"][str(c)] for c in counts], r["growth"]] for name, r in results_by_query.items()],
    )
    write_results(
        "history_scale",
        {
            "rows": counts,
            "database": connection.vendor,
            "repeats": args.repeats,
            "seed_seconds": {str(count): seconds for count, seconds in seeding.items()},
            "queries": results_by_query,
            "max_ms_at_largest": max(r["ms"][str(largest)] for r in results_by_query.values()),
            "max_growth": max(float(r["growth"]) for r in results_by_query.values()),
            "peak_rss_mb": peak_rss_mb(),
            "machine": machine("cpu"),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
