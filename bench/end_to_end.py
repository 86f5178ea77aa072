"""End to end: uploads through the API of the real stack, against the worker's pure-inference rate.

It starts everything itself with `bench.stack`, on this machine only: a temporary VAR_DIR,
the database of DATABASE_URL (or a temporary SQLite file), the Redis of REDIS_URL (default
database 14 of the local server, or a redis-server of its own where none answers; the
broker's keys under a prefix of this run's own), `manage.py migrate` and `seed_demo` (the
demo registry and its active head), gunicorn on a free localhost port and one Celery
worker (`-Q attribution,training --concurrency 1`). Then several client
threads upload the images of `python -m attribution synth` one request each to
`POST /api/v1/submissions/`, the main thread polls until every one has its verdict, and it
reports upload-to-verdict latency (client clock at the start of the upload to the verdict's
`created_at`, the same host's clock), verdicts per second, the peak resident memory of the
worker processes, and the engine's pure-inference rate on the same files (decode,
preprocess, forward to the head's blocks at the worker's batch size), measured in this
process before the stack starts and after it stops. Everything started is stopped at the
end, on error too. Usage:

    python -m bench.end_to_end --quick
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python -m bench.end_to_end
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import base_parser, machine, peak_rss_mb, print_table, summarize, write_results
from bench.stack import (
    REPO_ROOT,
    Process,
    RedisServer,
    WebServer,
    WorkerProcess,
    high_water_mb,
    manage,
    process_tree,
    redis_answers,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEMO_USER = "demo"  # made by `manage.py seed_demo`


@dataclass
class Upload:
    path: Path
    started: float = 0.0  # epoch seconds, client clock
    answered: float = 0.0
    submission_id: int | None = None
    error: str = ""
    seen_done: float = 0.0  # when the poller first saw it done (epoch seconds)
    status: str = ""
    verdict_at: float = 0.0  # the verdict's created_at (epoch seconds, server clock: the same host)


@dataclass
class Stack:
    """The running stack (bench.stack's processes), the address of its API and its token."""

    env: dict[str, str]
    web: WebServer
    worker: WorkerProcess
    token: str

    @property
    def base_url(self) -> str:
        return self.web.base_url


class MemoryWatch:
    """The highest VmHWM seen of each process of the worker's tree (children can be replaced)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, float] = {}

    def sample(self) -> None:
        for pid in process_tree(self.pid):
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), high_water_mb(pid))

    def figures(self) -> dict[str, float]:
        return {
            "peak_worker_rss_mb": sum(self.peaks.values()),
            "peak_worker_rss_mb_largest_process": max(self.peaks.values(), default=0.0),
            "worker_processes": len(self.peaks),
        }


@contextlib.contextmanager
def running_stack(args: Any) -> Iterator[Stack]:
    """Start migrate, seed_demo, gunicorn and a Celery worker (and Redis where none answers); stop them
    all on the way out."""
    var_dir = Path(tempfile.mkdtemp(prefix="attribution-bench-"))
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{var_dir / 'db.sqlite3'}",
        # The broker's keys under a prefix of this run's own: nothing left by an earlier run, or sent by
        # another run on the same Redis database, reaches this worker.
        "CELERY_BROKER_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:12]}:",
        "THROTTLE_UPLOAD": "100000/minute",  # the benchmark measures the pipeline, not the throttle
        "PYTHONUNBUFFERED": "1",
    }
    processes: list[Process] = []
    own_redis: RedisServer | None = None
    try:
        if not os.environ.get("REDIS_URL") and not redis_answers(redis_url) and shutil.which("redis-server"):
            own_redis = RedisServer(var_dir / "redis").start()  # for this run only, without persistence
            redis_url = own_redis.url
        env["REDIS_URL"] = redis_url
        print(f"stack in {var_dir}: {env['DATABASE_URL']}, {redis_url}", flush=True)
        manage(env, "migrate", "--noinput")
        print(manage(env, "seed_demo").strip(), flush=True)
        token_output = manage(env, "drf_create_token", DEMO_USER)
        match = re.search(r"\b([0-9a-f]{40})\b", token_output)
        if match is None:
            raise RuntimeError(f"no token in {token_output!r}")
        web = WebServer(env=env, log_dir=var_dir, workers=args.web_workers)
        processes.append(web)
        worker = WorkerProcess(env=env, log_dir=var_dir, name_prefix="bench")
        processes.append(worker)
        web.wait_ready()
        worker.wait_ready()
        yield Stack(env=env, web=web, worker=worker, token=match.group(1))
    except BaseException:
        for process in processes:
            print(f"\n--- {process.name} log (tail) ---\n{process.log_tail(30)}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.stop()
        if own_redis is not None:
            own_redis.kill()
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)


# ---------------------------------------------------------------- HTTP (urllib: localhost only)


def _request(
    stack: Stack,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str = "",
    auth: bool = True,
) -> tuple[int, Any]:
    request = urllib.request.Request(stack.base_url + path, data=body, method=method)
    if auth:
        request.add_header("Authorization", f"Token {stack.token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError:
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def _upload(stack: Stack, upload: Upload) -> None:
    boundary = uuid.uuid4().hex
    body = b"".join([
        f"--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="image"; filename="{upload.path.name}"\r\n'.encode(),
        b"Content-Type: image/png\r\n\r\n",
        upload.path.read_bytes(),
        f"\r\n--{boundary}--\r\n".encode(),
    ])  # fmt: skip
    upload.started = time.time()
    status, answer = _request(
        stack,
        "POST",
        "/api/v1/submissions/",
        body=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    upload.answered = time.time()
    if status == 201 and isinstance(answer, dict):
        upload.submission_id = int(answer["id"])
        upload.status = str(answer["status"])
    else:
        upload.error = f"HTTP {status}: {str(answer)[:300]}"


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _poll(stack: Stack, uploads: list[Upload], *, timeout: float, memory: MemoryWatch, interval: float) -> None:
    """Poll the progress endpoint until every accepted upload is done or failed."""
    by_id = {upload.submission_id: upload for upload in uploads if upload.submission_id is not None}
    deadline = time.monotonic() + timeout
    while True:
        memory.sample()
        open_ids = sorted(i for i, upload in by_id.items() if upload.status not in ("done", "failed"))
        if not open_ids:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(open_ids)} submissions without a verdict after {timeout:.0f} s")
        status, answer = _request(stack, "GET", "/api/v1/submissions/progress/?ids=" + ",".join(map(str, open_ids)))
        now = time.time()
        if status == 200:
            for row in answer["submissions"]:
                upload = by_id[int(row["id"])]
                upload.status = row["status"]
                if upload.status in ("done", "failed") and not upload.seen_done:
                    upload.seen_done = now
        time.sleep(interval)


def _run_uploads(
    stack: Stack, paths: Sequence[Path], *, clients: int, timeout: float, memory: MemoryWatch
) -> list[Upload]:
    uploads = [Upload(path) for path in paths]
    todo: queue.Queue[Upload] = queue.Queue()
    for upload in uploads:
        todo.put(upload)

    def client() -> None:
        while True:
            try:
                upload = todo.get_nowait()
            except queue.Empty:
                return
            _upload(stack, upload)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        memory.sample()
        for thread in threads:
            thread.join(timeout=0.2)
    _poll(stack, uploads, timeout=timeout, memory=memory, interval=0.25)
    for upload in uploads:  # the verdict's own timestamp: exact, whatever the polling interval
        if upload.submission_id is None:
            continue
        status, answer = _request(stack, "GET", f"/api/v1/submissions/{upload.submission_id}/")
        if status == 200 and answer.get("verdict"):
            upload.verdict_at = _epoch(answer["verdict"]["created_at"])
        elif status == 200:
            upload.error = upload.error or f"no verdict: status {answer['status']} {answer.get('error', '')}"
    return uploads


# ---------------------------------------------------------------- the engine in this process


def worker_engine(env: dict[str, str]) -> dict[str, Any]:
    """The engine settings of a worker started with `env`, read as workers/runtime.py reads them."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "from workers import runtime as r; c = r.backbone_config_from_settings(); "
        "print(json.dumps({'model_name': c.model_name, 'pretrained': c.pretrained, 'seed': c.seed, "
        "'device': r.device_from_settings(), 'precision': s.ATTRIBUTION_PRECISION, "
        "'blocks': list(s.ATTRIBUTION_BLOCKS), 'batch_size': s.ATTRIBUTION_BATCH_SIZE, "
        "'loader_threads': s.ATTRIBUTION_LOADER_THREADS}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    engine: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return engine


def inference_rate(engine: dict[str, Any], paths: Sequence[Path], batch_sizes: Sequence[int]) -> dict[int, float]:
    """Images per second of decode + preprocess + forward on `paths`, no cache, at each batch size, with
    the worker's loader threads (the pipeline a worker runs, without the queue and the database)."""
    from attribution.backbone import load_backbone
    from attribution.config import BackboneConfig
    from attribution.features import extract_features

    config = BackboneConfig(engine["model_name"], engine["pretrained"], engine["seed"])
    backbone = load_backbone(config, device=engine["device"], precision=engine["precision"])
    extract_features(backbone, list(paths[:2]), engine["blocks"], batch_size=2)  # warm up
    rates = {}
    for size in batch_sizes:
        start = time.perf_counter()
        extract_features(
            backbone, list(paths), engine["blocks"], batch_size=size, loader_threads=engine["loader_threads"]
        )
        rates[size] = len(paths) / (time.perf_counter() - start)
    return rates


def synth_images(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` images made by `python -m attribution synth` (classes interleaved)."""
    per_class = -(-count // 9)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "attribution",
            "synth",
            str(folder),
            "--seed",
            str(seed),
            "--per-class",
            str(per_class),
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    by_class = [sorted(directory.glob("*.png")) for directory in sorted(folder.iterdir()) if directory.is_dir()]
    interleaved = [path for row in zip(*by_class, strict=False) for path in row]
    if len(interleaved) < count:
        raise RuntimeError(f"synth made {len(interleaved)} images, {count} were asked for")
    return interleaved[:count]


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="uploads (default 200, quick 40)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent upload clients (threads)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--seed", type=int, default=None, help="synth seed (default: from the clock, so a "
                        "database kept from an earlier run holds no duplicates)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for all verdicts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIR (logs, database)")
    args = parser.parse_args(argv)
    args.images = args.images or (40 if args.quick else 200)
    args.seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="attribution-bench-images-") as folder:
        # One more than asked: the first is the warm-up upload, not counted.
        warm_up, *paths = synth_images(Path(folder), args.images + 1, args.seed)
        probe_env = {**os.environ, "VAR_DIR": folder, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
        engine = worker_engine(probe_env)
        sizes = sorted({engine["batch_size"], 1})
        print(f"{len(paths)} images (synth seed {args.seed}); worker engine {engine}", flush=True)
        before = inference_rate(engine, paths, sizes)
        print(f"pure inference before the run: {before}", flush=True)

        with running_stack(args) as stack:
            memory = MemoryWatch(stack.worker.pid)
            redis_used = stack.env["REDIS_URL"]
            warm = _run_uploads(stack, [warm_up], clients=1, timeout=args.timeout, memory=memory)
            if warm[0].error or not warm[0].verdict_at:
                raise RuntimeError(f"the warm-up upload failed: {warm[0].error}")
            # Not counted: the first task loads the backbone and the head into the worker.
            cold_latency = warm[0].verdict_at - warm[0].started
            started = time.time()
            uploads = _run_uploads(stack, paths, clients=args.clients, timeout=args.timeout, memory=memory)
            memory.sample()
        after = inference_rate(engine, paths, sizes)
        print(f"pure inference after the run: {after}", flush=True)

    failed = [upload for upload in uploads if upload.error or not upload.verdict_at]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(uploads)} uploads got no verdict, e.g. {failed[0].error}")
    latencies = np.array([upload.verdict_at - upload.started for upload in uploads])
    seen = np.array([upload.seen_done - upload.started for upload in uploads])
    duration = max(upload.verdict_at for upload in uploads) - started
    verdicts_per_s = len(uploads) / duration
    rate_runs = [before[engine["batch_size"]], after[engine["batch_size"]]]
    inference = float(np.mean(rate_runs))
    results: dict[str, Any] = {
        "p50_s": float(np.percentile(latencies, 50)),
        "p95_s": float(np.percentile(latencies, 95)),
        "max_s": float(latencies.max()),
        "p50_s_seen_by_poller": float(np.percentile(seen, 50)),
        "verdicts_per_s": verdicts_per_s,
        "inference_images_per_s": inference,
        "inference_images_per_s_runs": summarize(rate_runs),
        "inference_images_per_s_by_batch_size": {str(size): summarize([before[size], after[size]]) for size in sizes},
        "fraction_of_inference_rate": verdicts_per_s / inference,
        **memory.figures(),
        "upload_response_s": summarize([upload.answered - upload.started for upload in uploads]),
        "seconds_first_upload_to_last_verdict": duration,
        "cold_start_latency_s": cold_latency,
        "bench_process_peak_rss_mb": peak_rss_mb(),
        "settings": {
            "uploads": len(uploads),
            "warm_up_uploads": 1,
            "clients": args.clients,
            "web_workers": args.web_workers,
            "synth_seed": args.seed,
            "engine": engine,
            "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "temporary SQLite",
            "redis": redis_used,
            "latency": "client clock at upload start to the verdict's created_at (same host)",
            "inference": "decode + preprocess + forward in this process, before and after the run, no cache",
        },
        "machine": machine(engine["device"]),
    }
    print_table(
        f"End to end: {len(uploads)} uploads from {args.clients} clients, one Celery worker",
        ["figure", "value"],
        [
            ["latency p50 (s)", results["p50_s"]],
            ["latency p95 (s)", results["p95_s"]],
            ["verdicts per second", verdicts_per_s],
            [f"pure inference, batch {engine['batch_size']} (images/s)", inference],
            *([["pure inference, batch 1 (images/s)", float(np.mean([before[1], after[1]]))]] if 1 in before else []),
            ["fraction of inference rate", results["fraction_of_inference_rate"]],
            ["peak worker RSS, all processes (MiB)", results["peak_worker_rss_mb"]],
            ["cold start: first upload to verdict (s)", cold_latency],
        ],
    )
    write_results("end_to_end", results, args.out)
    return results


if __name__ == "__main__":
    main()
