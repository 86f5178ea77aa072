"""Each benchmark runs as `python -m bench.NAME --quick` (small sizes where a flag allows) from a checkout and
writes the figures it promises.

Timing figures are not checked here (they depend on the machine); their presence, finiteness and the
FLOP count are. The end-to-end run starts the real stack (migrate, seed_demo, gunicorn, a Celery worker)
on a temporary SQLite database, the tests' Redis and a broker key prefix of its own.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.stack import REPO_ROOT


def _run(
    module: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _finite_positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _summary(value: dict[str, Any]) -> bool:
    return _finite_positive(value["median"]) and value["min"] <= value["median"] <= value["max"]


def test_it_measures_throughput_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = _run(
        "throughput",
        *("--quick", "--batch-sizes", "1,2", "--images", "2", "--sweep-images", "1", "--repeats", "1"),
        # ViT-S-32 (50 tokens), the offline architecture's smaller sibling, on one thread (two threads
        # spin against each other when other work shares the cores): a fast test whatever the load.
        *("--backbone", "ViT-S-32", "--threads", "1", "--matmul-size", "512", "--auto-candidates", "1,2"),
        *("--out", str(out)),
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
        assert _summary(results[key]), key
        assert _finite_positive(results[key]["best_runs"]), key
    assert set(results["images_per_s"]) == {"1", "2"}
    # The worker's automatic choice, timed among the same sizes, and how it fared in the interleaved rounds.
    assert results["auto_batch_size"] in (1, 2) and [t["batch_size"] for t in results["auto_batch_timings"]] == [1, 2]
    assert 0 < results["auto_vs_best"] <= 1
    pipeline = results["pipeline"]  # from encoded files: one at a time, batched, batched with loader threads
    assert set(pipeline["images_per_s"]) == {"one", "inline", "threads"}
    assert all(rate["median"] > 0 for rate in pipeline["images_per_s"].values())
    assert pipeline["batched_vs_one_at_a_time"]["median"] > 0 and pipeline["loader_threads_vs_inline"]["median"] > 0
    assert all(_summary(rate) for rate in results["images_per_s"].values())
    assert _summary(results["matmul_gflops"])
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


def test_it_times_head_training_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "retrain.json"
    done = _run("retrain", "--quick", "--classes", "2,3", "--per-class", "2,5", "--out", str(out), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Head training with cached features" in done.stdout
    results = json.loads(out.read_text())
    assert [(cell["classes"], cell["per_class"]) for cell in results["grid"]] == [(2, 2), (2, 5), (3, 2), (3, 5)]
    assert all(_summary(cell["seconds"]) and cell["head"] for cell in results["grid"])
    # The headline cell is always measured, even when the grid leaves it out.
    assert _finite_positive(results["seconds_10x50"]) and _summary(results["seconds_10x50_range"])
    assert results["target_10x50_s"] == 5.0 and results["quick"] is True and results["repeats"] == 1
    assert results["peak_rss_mb"] > 0 and results["command"].startswith("python -m bench.retrain --quick")


@pytest.mark.redis
@pytest.mark.worker
def test_it_runs_uploads_end_to_end_through_the_real_stack(tmp_path: Path) -> None:
    out = tmp_path / "end_to_end.json"
    # The tests' Redis, but not their database: the benchmark makes a temporary SQLite database of its own.
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "VAR_DIR")}
    done = _run(
        "end_to_end",
        *("--quick", "--images", "6", "--clients", "2", "--web-workers", "1", "--out", str(out)),
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "End to end: 6 uploads from 2 clients" in done.stdout
    results = json.loads(out.read_text())
    for key in ("p50_s", "p95_s", "max_s", "verdicts_per_s", "inference_images_per_s", "fraction_of_inference_rate",
                "seconds_first_upload_to_last_verdict", "cold_start_latency_s", "peak_worker_rss_mb"):
        assert _finite_positive(results[key]), key
    assert results["p50_s"] <= results["p95_s"] <= results["max_s"]
    assert math.isclose(results["fraction_of_inference_rate"],
                        results["verdicts_per_s"] / results["inference_images_per_s"], rel_tol=1e-9)
    assert results["worker_processes"] >= 2  # the worker's main process and its pool process
    assert _summary(results["upload_response_s"]) and _summary(results["inference_images_per_s_runs"])
    settings = results["settings"]
    assert (settings["uploads"], settings["clients"], settings["web_workers"]) == (6, 2, 1)
    assert settings["database"] == "temporary SQLite" and settings["redis"] == os.environ["REDIS_URL"]
    assert settings["engine"]["device"] == "cpu"


def test_the_gpu_check_runs_its_cpu_smoke_and_writes_the_figures(tmp_path: Path) -> None:
    # The real check needs a GPU; `--cpu-smoke` runs its parts tiny on the CPU, which checks the script. The
    # paper's ViT-B-16 part (the same code as the offline backbone's, four times the FLOPs) is left out here.
    out = tmp_path / "gpu_check.json"
    done = _run("gpu_check", "--cpu-smoke", "--parts", "consistency,matmul,offline", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["cpu_smoke"] is True and results["errors"] == {}, results["errors"]
    assert results["parts"] == ["consistency", "matmul", "offline"]
    # The CPU against itself: the same features in fp32.
    fp32 = results["consistency"]["fp32"]
    assert fp32["worst_max_abs_diff"] < 1e-5 and fp32["worst_min_cosine"] > 0.9999
    assert set(results["matmul_tflops"]) >= {"fp32", "tf32", "fp16", "bf16"}
    (offline,) = results["throughput"].values()
    assert set(offline) >= {"fp32", "fp16+channels_last"}
    assert all(_summary(rate) for variant in ("fp32", "fp16+channels_last")
               for rate in offline[variant]["images_per_s"].values())
    assert _finite_positive(results["seconds"]) and results["peak_rss_mb"] > 0


def test_it_times_the_history_as_it_grows_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "history_scale.json"
    database = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var")}
    done = _run(
        "history_scale", "--rows", "200,500", "--repeats", "1", "--database-url", database, "--out", str(out),
        timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["rows"] == [200, 500] and results["database"] == "sqlite"
    queries = results["queries"]
    assert {"history", "history_decision", "history_generator", "api_decision", "api_label_page_50"} <= set(queries)
    for figures in queries.values():
        assert set(figures["ms"]) == {"200", "500"} and all(_finite_positive(ms) for ms in figures["ms"].values())
        assert _finite_positive(figures["growth"])


def test_it_times_reading_provenance_beside_the_upload_check(tmp_path: Path) -> None:
    out = tmp_path / "provenance.json"
    done = _run("provenance", "--quick", "--repeats", "2", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["image"]["width"] * results["image"]["height"] >= 12_000_000
    assert results["image"]["bytes_signed"] > results["image"]["bytes_unsigned"]  # the manifest is in the file
    assert all(_summary(figure) for figure in results["seconds"].values())
    assert math.isfinite(results["added_fraction_signed"]) and results["target_fraction"] == 0.2


def test_it_closes_the_loop_on_the_synthetic_benchmark_and_writes_the_figures(tmp_path: Path) -> None:
    """Upload, cluster the unknown pile, register, train, attribute held-out images: the whole loop through the
    platform's services on a temporary database. A stricter threshold than the default sends the benchmark's new
    generators to the pile, where the offline backbone lets them be found at all."""
    out = tmp_path / "feedback_loop.json"
    env = {**os.environ, "TRAINING_THRESHOLD_TPR": "0.8", "VAR_DIR": str(tmp_path / "var")}
    done = _run("feedback_loop", "--quick", "--review", "oracle", "--out", str(out), timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["pretrained"] is False and len(results["new"]) == 2
    uploads = results["uploads"]
    assert [uploads[name]["uploaded"] for name in results["known"]] == [8] * len(results["known"])
    assert [uploads[name]["uploaded"] for name in results["new"]] == [16, 16]
    clusters = results["clusters"]
    assert clusters["unknown_pile"] == sum(row["rejected_as_unknown"] for row in uploads.values())
    assert clusters["clustered"] == sum(clusters["sizes"]) <= clusters["unknown_pile"]
    assert clusters["purity"] is None or 0 < clusters["purity"] <= 1
    for name in results["new"]:
        registered = results["registered"][name]
        if registered["registered"]:  # the oracle review leaves only the generator's own images
            assert registered["references_of_other_classes"] == 0 and registered["references"] > 0
    if results["second_head"] is not None:
        assert {f"new-{name}" for name, row in results["registered"].items() if row["registered"]} <= set(
            results["second_head"]["classes"]
        )
        assert all(0 <= share <= 1 for share in results["known_held_out_share"].values())


def test_it_compares_the_clustering_methods_on_the_unknown_pile(tmp_path: Path) -> None:
    out = tmp_path / "unknown_clustering.json"
    done = _run("unknown_clustering", "--quick", "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for pile in ("rejected", "unknown_classes"):
        settings = results["mean"][pile]
        assert {name.split()[0].split("-")[0] for name in settings} >= {"average", "hdbscan"}, sorted(settings)
        for figures in settings.values():
            assert all(0 <= figures[key] <= 1 for key in ("purity", "recall", "F")) and figures["clusters"] >= 0
