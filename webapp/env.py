"""Typed readers for environment variables (the only place settings come from)."""

from __future__ import annotations

import os
from pathlib import Path


def envstr(name: str, default: str = "") -> str:
    """A string; `NAME_FILE` (a path, as Docker secrets give) wins over `NAME`."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = envstr(name, "")
    if value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def envint(name: str, default: int) -> int:
    value = envstr(name, "")
    return default if value == "" else int(value)


def envfloat(name: str, default: float) -> float:
    value = envstr(name, "")
    return default if value == "" else float(value)


def envlist(name: str, default: list[str]) -> list[str]:
    value = envstr(name, "")
    if value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]
