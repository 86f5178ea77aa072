"""The mutation check: does each promise in tests/mutation/breaks.py have a test that fails when it breaks?

    .venv/bin/python -m tests.mutation [--only TEXT] [--source DIR] [--no-baseline] [--list]

The files of the working tree (tracked and untracked, not ignored) are copied to a temporary folder; the
repository itself is never edited. First the tests named by the breaks run there unchanged (a break whose
tests already fail cannot be judged). Then, for each break, its lines are edited in the copy, its tests
run, and the file is restored. A break is `caught` when its tests fail, `SURVIVED` when they pass, and
`not applied` when its original line is no longer found (the code moved on: update the list). Exits 1 if
any break survived, 2 if none survived but some could not be judged, 0 when every break was caught.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.breaks import BREAKS, Break, Edit

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
TIMEOUT_S = 420  # a break whose tests hang past this counts as caught (the hang is the failure)


@dataclass
class Outcome:
    name: str
    status: str  # caught, SURVIVED, not applied, baseline fails, error
    detail: str
    seconds: float


def copy_tree(source: Path, target: Path) -> None:
    """The files git would see in `source` (tracked and untracked, not ignored), as they are now."""
    git = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=source, capture_output=True)
    listed = git.stdout.decode().split("\0") if git.returncode == 0 else []
    if not any(listed):  # not a git checkout: everything but the virtualenv and scratch folders
        listed = [str(p.relative_to(source)) for p in source.rglob("*")
                  if p.is_file() and p.relative_to(source).parts[0] not in (".venv", "var", ".git")]
    for name in filter(None, listed):
        src = source / name
        if src.is_file():  # a tracked file deleted in the working tree is left out
            dst = target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def resolve(tree: Path, edit: Edit) -> Path | None:
    candidates = (edit.path,) if isinstance(edit.path, str) else edit.path
    return next((tree / c for c in candidates if (tree / c).is_file()), None)


def apply(tree: Path, brk: Break) -> tuple[dict[Path, str], str]:
    """Edit the copy; returns the original texts to restore and, when an edit cannot be made, why."""
    originals: dict[Path, str] = {}
    for edit in brk.edits:
        path = resolve(tree, edit)
        if path is None:
            return originals, f"no file {edit.path}"
        text = originals.get(path) or path.read_text()
        originals.setdefault(path, text)
        lines = path.read_text().split("\n")
        hits = [i for i, line in enumerate(lines) if line.strip() == edit.line.strip()]
        if edit.occurrence is not None:
            hits = hits[edit.occurrence:edit.occurrence + 1]
        if len(hits) != 1:
            found = "not found" if not hits else f"found {len(hits)} times"
            return originals, f"{path.relative_to(tree)}: line {found}: {edit.line!r}"
        line = lines[hits[0]]
        indent = line[: len(line) - len(line.lstrip())]
        lines[hits[0]] = indent + edit.replacement if edit.replacement else ""
        path.write_text("\n".join(lines))
    return originals, ""


def apply_check(source: Path, brk: Break) -> tuple[None, str]:
    """Whether `apply` would succeed on `source`, without editing it (a scratch copy of the files named)."""
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as folder:
        for edit in brk.edits:
            for candidate in (edit.path,) if isinstance(edit.path, str) else edit.path:
                if (source / candidate).is_file():
                    (Path(folder) / candidate).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / candidate, Path(folder) / candidate)
        return None, apply(Path(folder), brk)[1]


def restore(originals: dict[Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text)


def pytest(tree: Path, tests: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    command = [str(PYTHON), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        run = subprocess.run(command, cwd=tree, env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT_S}s"
    lines = [line for line in run.stdout.splitlines() if line.strip()] or run.stderr.strip().splitlines() or [""]
    first_error = next((line[2:].strip() for line in lines if line.startswith("E ")), "")
    return run.returncode, (lines[-1] + (f" | {first_error}" if first_error else ""))[:200]


def judge(tree: Path, brk: Break, baseline_ok: bool | None) -> Outcome:
    started = time.monotonic()
    if baseline_ok is False:
        return Outcome(brk.name, "baseline fails", "its tests fail without the break", 0.0)
    originals, problem = apply(tree, brk)
    try:
        if problem:
            return Outcome(brk.name, "not applied", problem, 0.0)
        code, summary = pytest(tree, list(brk.tests), brk.env)
    finally:
        restore(originals)
    seconds = time.monotonic() - started
    if code is None:
        return Outcome(brk.name, "caught", summary, seconds)
    if code == 0:
        return Outcome(brk.name, "SURVIVED", summary, seconds)
    if code in (1, 2, 3):
        return Outcome(brk.name, "caught", summary, seconds)
    return Outcome(brk.name, "error", f"pytest exited {code}: {summary}", seconds)


def baselines(tree: Path, breaks: list[Break]) -> dict[str, bool]:
    """Whether each break's tests pass on the unbroken copy (one pytest run per environment)."""
    by_env: dict[tuple[tuple[str, str], ...], list[Break]] = {}
    for brk in breaks:
        by_env.setdefault(tuple(sorted(brk.env.items())), []).append(brk)
    ok: dict[str, bool] = {}
    for env, group in by_env.items():
        tests = sorted({test for brk in group for test in brk.tests})
        command = [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-rfE", *tests]
        run = subprocess.run(command, cwd=tree, env={**os.environ, **dict(env)}, capture_output=True, text=True)
        failed = [line.split()[1] for line in run.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        print(f"baseline{' ' + str(dict(env)) if env else ''}: {(run.stdout.strip().splitlines() or [''])[-1]}",
              flush=True)
        for test in failed:
            print(f"    failing unbroken: {test}", flush=True)
        for brk in group:
            ok[brk.name] = run.returncode in (0, 1) and not any(
                f == t or f.startswith(t.rstrip("/") + ("" if "::" in t else "::")) for f in failed for t in brk.tests
            )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="breaks whose name contains this text")
    parser.add_argument("--source", type=Path, default=REPO, help="the tree to copy (default: this checkout)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests unbroken")
    parser.add_argument("--list", action="store_true", help="list the breaks and their tests, run nothing")
    args = parser.parse_args()
    breaks = [b for b in BREAKS if not args.only or any(text in b.name for text in args.only)]
    if args.list:  # with whether each break's lines are found in the source tree now
        for brk in breaks:
            _, problem = apply_check(args.source.resolve(), brk)
            print(f"{brk.name}: {'NOT APPLICABLE: ' + problem if problem else 'applies'}\n    "
                  + "\n    ".join(brk.tests))
        return 0
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as folder:
        tree = Path(folder)
        copy_tree(args.source.resolve(), tree)
        ok = {} if args.no_baseline else baselines(tree, breaks)
        for brk in breaks:
            outcome = judge(tree, brk, ok.get(brk.name))
            print(f"{outcome.status:>14}  {outcome.seconds:5.0f}s  {outcome.name}  [{outcome.detail}]", flush=True)
            outcomes.append(outcome)
    width = max(len(o.name) for o in outcomes)
    print(f"\n| {'break':<{width}} | result | seconds |\n|{'-' * (width + 2)}|--------|---------|")
    for o in outcomes:
        print(f"| {o.name:<{width}} | {o.status} | {o.seconds:.0f} |")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("caught", "SURVIVED")}
    unjudged = len(outcomes) - counts["caught"] - counts["SURVIVED"]
    print(f"\n{counts['caught']} caught, {counts['SURVIVED']} survived, {unjudged} not judged")
    if counts["SURVIVED"]:
        return 1
    return 2 if unjudged else 0


if __name__ == "__main__":
    sys.exit(main())
