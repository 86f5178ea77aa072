"""Helpers shared by the benchmark scripts: arguments, timing, FLOPs, tables, JSON results.

Every script runs its cases side by side in one process (`interleave`), so that the
ratios it reports hold on a machine that other work slows down at random moments,
and writes its figures to `bench/results/NAME.json` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares: --quick and --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (a minute or two), for checks")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/NAME.json)")
    return parser


def int_list(text: str) -> list[int]:
    """Parse '1,8,32' (an argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def summarize(measurements: Iterable[float]) -> dict[str, Any]:
    """min, median and max of repeated measurements (and the values themselves)."""
    values = [float(value) for value in measurements]
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "values": values,
    }


def interleave(
    cases: Mapping[str, Callable[[], object]], repeats: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Seconds per call of each case, `repeats` rounds, cases interleaved within each round.

    The starting case rotates from round to round, so no case always runs first (or just
    after the same neighbour); a warm-up call of each case comes first and is not timed.
    Callables that queue work on a GPU must synchronise before they return.
    """
    names = list(cases)
    if warmup:
        for name in names:
            cases[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def synchronize(device: Any) -> None:
    """Wait for queued GPU work on `device` (a no-op on CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_case(
    device: Any, size: int, dtype: Any = None, *, min_seconds: float = 0.1
) -> tuple[Callable[[], None], float]:
    """A square matrix multiply on `device` as a timing case, and the FLOPs of one call.

    The operands are made once (float32 unless `dtype`), so the case times only the products;
    one call repeats the multiply often enough to last about `min_seconds` (2 n^3 FLOPs each).
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    dtype = dtype or torch.float32
    left = torch.randn(size, size, generator=generator).to(device, dtype)
    right = torch.randn(size, size, generator=generator).to(device, dtype)
    product = torch.empty(size, size, device=device, dtype=dtype)

    def multiply(times: int) -> None:
        for _ in range(times):
            torch.mm(left, right, out=product)
        synchronize(device)

    multiply(1)  # warm up (kernel selection, first-touch of the output)
    start = time.perf_counter()
    multiply(1)
    reps = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-9)))
    return (lambda: multiply(reps)), 2.0 * size**3 * reps


def machine(device: Any) -> dict[str, Any]:
    """What ran the benchmark: CPU model and cores, Python, torch and open_clip versions, the device."""
    import open_clip
    import torch

    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "device": str(device),
        "load_average_1_5_15_min": list(os.getloadavg()),  # other work on the machine slows every figure
        # OpenMP's spin-waiting (libgomp's default) costs a lot when other processes share the cores
        "threading_env": {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
            if name in os.environ
        },
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def format_value(value: Any) -> str:
    """A table cell: floats with three significant figures, everything else as str."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print an aligned plain-text table under a title."""
    cells = [[format_value(value) for value in row] + [""] * (len(headers) - len(row)) for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(str(header).ljust(width) for header, width in zip(headers, widths, strict=True)))
    print("  ".join("-" * width for width in widths))
    for row in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def write_results(name: str, results: Mapping[str, Any], out: Path | None = None) -> Path:
    """Write `results` as JSON to `out` or bench/results/NAME.json; return the path."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nwrote {path}")
    return path
