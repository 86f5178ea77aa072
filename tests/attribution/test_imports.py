"""The engine stays free of the web framework and the queue: no module of `attribution` imports them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import attribution

PACKAGE = Path(attribution.__file__).resolve().parent


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: the test process itself has Django loaded by other tests' fixtures.
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300
    )


def test_the_package_imports_light() -> None:
    result = run_python(
        "import sys, attribution\n"
        "heavy = ('torch', 'open_clip', 'sklearn', 'django', 'celery')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    assert result.returncode == 0, result.stderr


def test_no_engine_module_imports_django_or_celery() -> None:
    modules = sorted(
        "attribution." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")  # importing __main__ may run the CLI
    )
    assert {"attribution.backbone", "attribution.features", "attribution.images"} <= set(modules)

    result = run_python(
        "import importlib, sys\n"
        "import attribution, attribution.backbone, attribution.features, attribution.images\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery', 'kombu'))\n"
        "assert not leaked, leaked\n"
    )
    assert result.returncode == 0, result.stderr


def test_no_engine_file_mentions_django_or_celery_in_any_import() -> None:
    """Also imports inside functions, which importing the modules would not run."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.name}: {name}" for name in names if name.split(".")[0] in ("django", "celery")
            ]
    assert not offenders
