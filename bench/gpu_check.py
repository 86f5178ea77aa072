"""One short check on a GPU machine: CPU/GPU feature agreement, then throughput by precision.

1. The offline backbone built from the same seed on the CPU and on CUDA: CLS features of
   every block for the same 16 synthetic images, in fp32 and under fp16 and bf16 autocast
   (max abs diff and cosine similarity against the CPU's fp32 features).
2. Matrix-multiply peaks on the GPU: fp32 (TF32 off), TF32, fp16, bf16.
3. `bench.throughput.measure` for the offline backbone and for the paper's ViT-B-16
   architecture (random weights: the same FLOPs as the pretrained one) in fp32, TF32, fp16,
   bf16 and fp16 with channels-last inputs, at batch sizes 1, 32, 64, 128.

Each part fails soft (the error is printed and recorded, the next part runs) and parts that
would overrun the time budget are skipped. `--cpu-smoke` runs everything tiny on the CPU,
to check the script itself on a machine without a GPU; `--parts` runs some of the parts
(consistency, matmul, offline, paper: 1, 2 and the two backbones of 3). Usage:

    python -m bench.gpu_check [--out bench/results/gpu_check.json]
    python -m bench.gpu_check --cpu-smoke --out /tmp/gpu_check_smoke.json
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attribution.backbone import load_backbone
from attribution.config import DEFAULT_BLOCKS, OFFLINE_BACKBONE, BackboneConfig
from bench.common import (
    RESULTS_DIR,
    interleave,
    machine,
    matmul_case,
    peak_rss_mb,
    print_table,
    summarize,
    write_results,
)
from bench.throughput import measure

PARTS = ("consistency", "matmul", "offline", "paper")  # --parts: the four parts of the docstring, in order
RANDOM_PAPER_ARCHITECTURE = BackboneConfig("ViT-B-16", None, 0)  # the paper's ViT-B-16, random weights
# name -> (precision for load_backbone, TF32 matmuls, channels-last inputs)
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "fp32": ("fp32", False, False),
    "tf32": ("fp32", True, False),
    "fp16": ("fp16", False, False),
    "bf16": ("bf16", False, False),
    "fp16+channels_last": ("fp16", False, True),
}


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 tensor-core matmuls and convolutions on or off, restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def synthetic_images(count: int) -> tuple[list[Image.Image], str]:
    """`count` images of `python -m attribution synth` (generator outputs only if scikit-image is missing)."""
    from attribution import synth

    try:
        with tempfile.TemporaryDirectory() as folder:
            synth.make_benchmark(folder, seed=0, per_class=-(-count // len(synth.CLASSES)))
            paths = sorted(Path(folder).glob("*/*.png"))[:count]
            return [Image.open(path).convert("RGB") for path in paths], "attribution.synth.make_benchmark(seed=0)"
    except ImportError:
        images = []
        for index in range(count):
            spec = synth.GENERATORS[index % len(synth.GENERATORS)]
            latent = np.random.default_rng([0, index]).standard_normal((1, synth.LATENT_DIM))
            trace = synth.generator_traces(spec, latent, 96)[0]
            pixels = np.clip(np.rint((0.5 + 0.15 * trace) * 255.0), 0, 255).astype(np.uint8)
            images.append(Image.fromarray(pixels, "RGB"))
        return images, "attribution.synth generator outputs (scikit-image missing)"


def consistency(device: str, count: int) -> dict[str, Any]:
    """CPU fp32 features against `device` features in each precision, for every block."""
    images, source = synthetic_images(count)
    cpu = load_backbone(OFFLINE_BACKBONE, device="cpu")
    blocks = list(range(cpu.num_blocks))
    reference = cpu.extract(images, blocks)
    results: dict[str, Any] = {"images": len(images), "source": source, "backbone": cpu.identity}
    for precision in ("fp32", "fp16", "bf16"):
        try:
            with tf32(False):
                backbone = load_backbone(OFFLINE_BACKBONE, device=device, precision=precision)
                features = backbone.extract(images, blocks)
        except Exception as error:  # fail soft: record and go on with the next precision
            traceback.print_exc()
            results[precision] = {"error": repr(error)}
            continue
        per_block = {}
        for block in blocks:
            ours, theirs = features[block].astype(np.float64), reference[block].astype(np.float64)
            cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
            per_block[str(block)] = {
                "max_abs_diff": float(np.abs(ours - theirs).max()),
                "max_abs_value": float(np.abs(theirs).max()),
                "min_cosine": float(cosine.min()),
            }
        results[precision] = {
            "worst_max_abs_diff": max(entry["max_abs_diff"] for entry in per_block.values()),
            "worst_min_cosine": min(entry["min_cosine"] for entry in per_block.values()),
            "blocks": per_block,
        }
    return results


def matmul_peaks(device: str, size: int, repeats: int) -> dict[str, Any]:
    """TFLOP/s of a square matmul in fp32 (TF32 off), TF32, fp16 and bf16, interleaved."""
    cases: dict[str, Callable[[], object]] = {}
    flops: dict[str, float] = {}
    for name, dtype, allow_tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("fp16", torch.float16, False),
        ("bf16", torch.bfloat16, False),
    ):
        with tf32(allow_tf32):
            multiply, flops[name] = matmul_case(device, size, dtype)

        def run(multiply: Callable[[], None] = multiply, allow_tf32: bool = allow_tf32) -> None:
            with tf32(allow_tf32):
                multiply()

        cases[name] = run
    seconds = interleave(cases, repeats)
    return {
        "size": size,
        **{name: summarize(flops[name] / np.asarray(seconds[name]) / 1e12) for name in cases},
    }


def throughput(
    device: str, config: BackboneConfig, settings: dict[str, Any], variants: Sequence[str]
) -> dict[str, Any]:
    """`bench.throughput.measure` for `config` in each of `variants` (names of VARIANTS)."""
    results: dict[str, Any] = {}
    for variant in variants:
        precision, allow_tf32, channels_last = VARIANTS[variant]
        try:
            with tf32(allow_tf32):
                backbone = load_backbone(config, device=device, precision=precision)
                if channels_last:
                    backbone.visual.to(memory_format=torch.channels_last)
                results[variant] = measure(backbone, channels_last=channels_last, **settings)
        except Exception as error:  # fail soft: record and go on with the next variant
            traceback.print_exc()
            results[variant] = {"error": repr(error)}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if "images_per_s" in results.get("fp32", {}):  # medians of separate runs: the GPU is not shared
        base = results["fp32"]["images_per_s"]
        results["speedup_vs_fp32"] = {
            variant: {size: figures["images_per_s"][size]["median"] / base[size]["median"] for size in base}
            for variant, figures in results.items()
            if variant != "fp32" and "images_per_s" in figures
        }
    return results


def report(results: dict[str, Any]) -> None:
    """Print the tables."""
    check = results.get("consistency", {})
    rows = [
        [
            precision,
            check[precision]["blocks"][str(DEFAULT_BLOCKS[-1])]["max_abs_diff"],
            check[precision]["worst_max_abs_diff"],
            check[precision]["worst_min_cosine"],
        ]
        for precision in ("fp32", "fp16", "bf16")
        if "blocks" in check.get(precision, {})
    ]
    if rows:
        print_table(
            f"GPU vs CPU fp32 features ({check['backbone']}, {check['images']} images, all blocks)",
            [
                "precision",
                f"block {DEFAULT_BLOCKS[-1]} max abs diff",
                "worst max abs diff",
                "worst min cosine",
            ],
            rows,
        )
    peaks = results.get("matmul_tflops", {})
    if "fp32" in peaks:
        rows = [
            [name, peaks[name]["min"], peaks[name]["median"], peaks[name]["max"]]
            for name in ("fp32", "tf32", "fp16", "bf16")
        ]
        print_table(f"Matmul {peaks['size']}^2, TFLOP/s", ["dtype", "min", "median", "max"], rows)
    for model, variants in results.get("throughput", {}).items():
        rows = []
        for variant in VARIANTS:
            figures = variants.get(variant)
            if figures is None:
                continue
            if "error" in figures:
                rows.append([variant, figures["error"][:60]])
                continue
            rows.append(
                [
                    variant,
                    *(rate["median"] for rate in figures["images_per_s"].values()),
                    figures["fraction_of_matmul_peak"]["median"],
                    figures.get("fraction_of_same_dtype_matmul_peak", figures["fraction_of_matmul_peak"])["median"],
                    figures["one_pass_vs_per_block"]["median"],
                    figures["stop_early_vs_full"]["median"],
                ]
            )
        sizes = next((list(f["images_per_s"]) for f in variants.values() if "images_per_s" in f), [])
        print_table(
            f"{model}: images/s (median) by batch size",
            [
                "variant",
                *(f"batch {size}" for size in sizes),
                "of fp32 mm",
                "of same-dtype mm",
                "one pass vs per block",
                "stop early vs full",
            ],
            rows,
        )
        speedups = variants.get("speedup_vs_fp32", {})
        if speedups:
            print_table(
                f"{model}: images/s against fp32 (ratio of medians)",
                ["variant", *(f"batch {size}" for size in sizes)],
                [[variant, *ratios.values()] for variant, ratios in speedups.items()],
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gpu_check.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="everything tiny, on the CPU (checks the script)")
    parser.add_argument(
        "--parts",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(PARTS),
        help=f"comma-separated, of {','.join(PARTS)} (default all)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip parts that would start later (default 200; smoke: none)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    device = "cpu" if args.cpu_smoke else "cuda"
    budget = args.budget_s or (float("inf") if args.cpu_smoke else 200.0)
    sizes: dict[str, Any] = {"blocks": list(DEFAULT_BLOCKS)}
    if args.cpu_smoke:
        sizes.update(batch_sizes=[1, 2], images=2, sweep_images=1, repeats=1, matmul_size=256, pipeline_batch=2)
        count, peak_size, peak_repeats = 2, 256, 1
    else:
        sizes.update(batch_sizes=[1, 32, 64, 128], images=128, sweep_images=32, repeats=3, matmul_size=8192)
        count, peak_size, peak_repeats = 16, 8192, 5
    results: dict[str, Any] = {"machine": machine(device), "cpu_smoke": args.cpu_smoke, "errors": {}}
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("consistency", lambda: consistency(device, count)),
        ("matmul_tflops", lambda: matmul_peaks(device, peak_size, peak_repeats)),
        (
            f"throughput/{OFFLINE_BACKBONE.model_name} random",
            # on the CPU every precision runs in fp32: fp32 and the channels-last path check the script
            lambda: throughput(device, OFFLINE_BACKBONE, sizes,
                               ["fp32", "fp16+channels_last"] if args.cpu_smoke else list(VARIANTS)),
        ),
        (
            f"throughput/{RANDOM_PAPER_ARCHITECTURE.model_name} random",
            lambda: throughput(
                device,
                RANDOM_PAPER_ARCHITECTURE,
                {**sizes, "images": sizes["images"] // 2 or 1},
                # on the CPU every precision runs in fp32: one variant is enough to check the script
                ["fp32"] if args.cpu_smoke else list(VARIANTS),
            ),
        ),
    ]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}: choose among {', '.join(PARTS)}")
    parts = [(name, part) for (name, part), key in zip(parts, PARTS, strict=True) if key in args.parts]
    results["parts"] = list(args.parts)
    for name, part in parts:
        elapsed = time.perf_counter() - started
        if elapsed > budget:
            print(f"\nskipping {name}: {elapsed:.0f} s spent of a {budget:.0f} s budget")
            results["errors"][name] = "skipped: over the time budget"
            continue
        print(f"\n[{elapsed:6.1f} s] {name} ...", flush=True)
        try:
            value = part()
        except Exception as error:  # fail soft: record, print and go on
            traceback.print_exc()
            results["errors"][name] = repr(error)
            continue
        if name.startswith("throughput/"):
            results.setdefault("throughput", {})[name.split("/", 1)[1]] = value
        else:
            results[name] = value
    results["seconds"] = time.perf_counter() - started
    results["peak_rss_mb"] = peak_rss_mb()
    path = write_results("gpu_check", results, args.out)
    try:
        report(results)
    except Exception:  # the JSON is written; a table that cannot be printed must not lose it
        traceback.print_exc()
    print(f"\n{results['seconds']:.0f} s in all; errors: {results['errors'] or 'none'}; figures in {path}")
    return results


if __name__ == "__main__":
    main()
