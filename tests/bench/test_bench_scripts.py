"""The benchmark scripts run from a checkout and write the figures the issues ask for.

Timing figures are not checked here (they depend on the machine); their presence, finiteness
and the FLOP count are.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_it_measures_throughput_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = _run(
        "throughput.py",
        *("--quick", "--batch-sizes", "1,2", "--images", "2", "--sweep-images", "1", "--repeats", "1"),
        # ViT-S-32 (50 tokens), the offline architecture's smaller sibling, on one thread (two threads
        # spin against each other when other work shares the cores): a fast test whatever the load.
        *("--backbone", "ViT-S-32", "--threads", "1", "--matmul-size", "512", "--out", str(out)),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Images per second by batch size" in done.stdout
    results = json.loads(out.read_text())

    for key in (
        "batched_vs_single",
        "one_pass_vs_per_block",
        "stop_early_vs_full",
        "fraction_of_matmul_peak",
    ):
        assert math.isfinite(results[key]["median"]) and results[key]["median"] > 0, key
        assert results[key]["min"] <= results[key]["median"] <= results[key]["max"], key
        assert math.isfinite(results[key]["best_runs"]) and results[key]["best_runs"] > 0, key
    assert set(results["images_per_s"]) == {"1", "2"}
    pipeline = results["pipeline"]  # from encoded files: one at a time, batched, batched with loader threads
    assert set(pipeline["images_per_s"]) == {"one", "inline", "threads"}
    assert all(rate["median"] > 0 for rate in pipeline["images_per_s"].values())
    assert pipeline["batched_vs_one_at_a_time"]["median"] > 0 and pipeline["loader_threads_vs_inline"]["median"] > 0
    assert all(math.isfinite(rate["median"]) and rate["median"] > 0 for rate in results["images_per_s"].values())
    assert math.isfinite(results["matmul_gflops"]["median"]) and results["matmul_gflops"]["median"] > 0
    assert results["peak_rss_mb"] > 0
    assert results["machine"]["cpu_cores"] >= 1 and results["machine"]["torch"]
    assert results["settings"]["pretrained"] is False

    # ViT-S-32 at 224 px to block 8 (9 blocks): L=50 tokens, D=384, MLP 1536, 32x32 patches.
    tokens, width, blocks = 50, 384, 9
    per_block = tokens * width * 3 * width + 2 * tokens**2 * width + tokens * width**2 + 2 * tokens * width * 1536
    by_hand = 2 * (49 * 3 * 32 * 32 * width + blocks * per_block) / 1e9
    assert math.isclose(results["backbone_gflops_per_image"], by_hand, rel_tol=1e-9)
    # torch's FlopCounterMode agrees, except that it cannot see the fused CPU attention kernel (2 L^2 D).
    attention = 2 * blocks * 2 * tokens**2 * width / 1e9
    counted = results["flop_counter_gflops_per_image"]
    assert any(math.isclose(counted, expected, rel_tol=1e-6) for expected in (by_hand, by_hand - attention))
    # The hooked full pass and the engine's early-stopping pass read the same features.
    assert results["features_max_abs_diff_hook_vs_extract"] < 1e-4


def test_it_imports_the_end_to_end_benchmark() -> None:
    done = _run("end_to_end.py", "--help", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--quick" in done.stdout
