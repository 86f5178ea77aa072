from pathlib import Path

import pytest

from webapp import env
from webapp.settings import BASE_DIR, database_from_url


def test_it_reads_postgres_urls() -> None:
    db = database_from_url("postgres://alice:s%40cret@db.example:6543/attribution")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "alice", "s@cret", "db.example", "6543", "attribution"
    )


def test_it_reads_relative_and_absolute_sqlite_urls() -> None:
    assert database_from_url("sqlite:///var/x.sqlite3")["NAME"] == str(BASE_DIR / "var/x.sqlite3")
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


def test_it_refuses_other_database_urls() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        database_from_url("mysql://x/y")


def test_it_prefers_the_file_variant_for_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SOME_SECRET", "from-the-environment")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))
    assert env.envstr("SOME_SECRET") == "from-a-file"


def test_it_parses_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "yes")
    monkeypatch.setenv("COUNT", "7")
    monkeypatch.setenv("HOSTS", "a.example, b.example")
    assert env.envbool("FLAG", False) is True
    assert env.envint("COUNT", 1) == 7
    assert env.envlist("HOSTS", []) == ["a.example", "b.example"]
    assert env.envint("MISSING", 3) == 3
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ValueError, match="FLAG"):
        env.envbool("FLAG", False)
