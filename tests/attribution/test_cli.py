"""`python -m attribution synth|evaluate`: argument parsing, end to end, and one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from attribution.__main__ import format_table, main, parse_blocks

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attribution", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("text", "blocks"),
    [("0-11", list(range(12))), ("8", [8]), ("2,5,8", [2, 5, 8]), ("8,0-2, 2", [0, 1, 2, 8])],
)
def test_block_lists(text: str, blocks: list[int]) -> None:
    assert parse_blocks(text) == blocks


@pytest.mark.parametrize("text", ["", "a", "5-2", "1-", "2;3"])
def test_bad_block_lists(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="bad block list"):
        parse_blocks(text)


def test_synth_then_evaluate_end_to_end(tmp_path: Path) -> None:
    data, out = tmp_path / "synth", tmp_path / "out" / "r.json"
    synth = run("synth", str(data), "--seed", "1", "--per-class", "6", "--size", "64")
    assert synth.returncode == 0, synth.stderr
    assert "wrote 54 images (9 classes x 6, 64 px)" in synth.stdout
    (data / "real" / "broken.png").write_bytes(b"not an image")

    evaluate = run(
        "evaluate", str(data), "--known", "real,tconv-s1,nearest-s1", "--unknown", "tconv-s2",
        "--blocks", "1-2", "--head", "knn", "--shots", "3", "--out", str(out), "--no-progress",
    )  # fmt: skip

    assert evaluate.returncode == 0, evaluate.stderr
    assert f"warning: skipped {data / 'real' / 'broken.png'}: not a recognised image file\n" in evaluate.stderr
    assert "backbone ViT-S-16 has random weights (not pretrained): figures are a demonstration" in evaluate.stdout
    report = json.loads(out.read_text())
    assert set(report) == {"blocks", "best_block", "settings", "split", "protocol"}
    assert report["split"] == {"known": ["real", "tconv-s1", "nearest-s1"], "unknown": ["tconv-s2"]}
    assert sorted(report["blocks"]) == ["1", "2"]
    assert set(report["blocks"]["1"]) >= {"accuracy", "auroc", "oscr", "macro_f1"}
    assert report["settings"]["backbone"] == "ViT-S-16/random-seed0"
    assert report["settings"]["pretrained"] is False
    assert report["settings"]["counts"]["train"] == {"real": 3, "tconv-s1": 3, "nearest-s1": 3}
    assert format_table(report) in evaluate.stdout
    assert f"{report['best_block']:>5}" in next(line for line in evaluate.stdout.splitlines() if "*best" in line)
    with Image.open(out.with_suffix(".png")) as image:
        assert image.format == "PNG"


def test_a_bad_class_is_one_line_on_stderr_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("real", "tconv-s1"):
        (tmp_path / name).mkdir()
    status = main(
        [
            "evaluate",
            str(tmp_path),
            "--known",
            "real,dalle",
            "--unknown",
            "tconv-s1",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )

    err = capsys.readouterr().err
    assert status == 2
    assert err == "error: unknown class 'dalle'; available classes: real, tconv-s1\n"
    assert not (tmp_path / "r.json").exists()


def test_a_missing_checkpoint_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for index in range(3):
            Image.new("RGB", (32, 32)).save(tmp_path / name / f"{index}.png")
    missing = tmp_path / "missing.pt"
    status = main(
        ["evaluate", str(tmp_path), "--known", "a,b", "--unknown", "c", "--out", str(tmp_path / "r.json"),
         "--backbone", "ViT-S-16", "--pretrained", str(missing)]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"error: checkpoint file {missing} does not exist") and err.count("\n") == 1


def test_the_quality_options_parse() -> None:
    from attribution.__main__ import build_parser

    args = build_parser().parse_args(
        ["evaluate", "d", "--known", "a,b", "--unknown", "c", "--out", "r.json", "--blocks", "auto",
         "--select-by", "paper", "--unknown-val", "e,f", "--score", "log_msp"]
    )  # fmt: skip
    assert (args.blocks, args.select_by, args.unknown_val, args.score) == ("auto", "paper", ["e", "f"], "log_msp")
    defaults = build_parser().parse_args(["evaluate", "d", "--known", "a,b", "--unknown", "c", "--out", "r.json"])
    assert (defaults.blocks, defaults.select_by, defaults.score, defaults.tpr) == ([8], "logo", "auto", 0.95)
    for bad in (["--select-by", "auroc"], ["--score", "odin"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["evaluate", "d", "--known", "a,b", "--unknown", "c", "--out", "r", *bad])


def test_the_papers_criterion_needs_held_out_generators(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["evaluate", str(tmp_path), "--known", "a,b", "--unknown", "c", "--out", str(tmp_path / "r.json"),
         "--select-by", "paper"]
    )  # fmt: skip
    assert status == 2
    message = "error: --select-by paper needs --unknown-val: the generators whose images choose C\n"
    assert capsys.readouterr().err == message
