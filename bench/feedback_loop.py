"""The loop closed on the synthetic benchmark: new generators found in the unknown pile, registered, learnt.

Everything runs in this process through the platform's own services (no web server, no Celery: what a worker
would run is called directly), on a temporary SQLite database and media folder:

1. The demo registry: "real" and the benchmark's four known generators (`attribution.synth.DEFAULT_KNOWN`),
   `--references` images each, and a head trained on them and activated.
2. A team uploads `--uploads` images of each known class mixed with `--new-uploads` images of each of two
   generators the head does not know (`--new`, default the first two of `DEFAULT_UNKNOWN`); the worker's
   service attributes them (`verdict_create_batch`), keeping the features of those it rejects as unknown.
3. The periodic clustering of the unknown pile runs once (`unknown_clusters_refresh`). Measured: the clusters'
   purity (members of a cluster's majority class over all clustered members) and, for each new generator, the
   share of its uploaded images that ended in its own cluster (the cluster it is the majority of; the largest
   one when several).
4. Each new generator's cluster is registered as a new generator (`unknown_cluster_register`: its members
   become references; with `--review oracle`, members of another class are removed first, as an admin who can
   tell them apart would) and the training job it starts is run here (`training_job_run`) and activated.
5. `--held-out` new images of each new generator, never uploaded, are attributed by the new head: the share
   attributed to their registered generator, beside the same share for the known classes' held-out images.

    python -m bench.feedback_loop [--quick] [--review none|oracle] [--seed 0]

With random backbone weights (no pretrained CLIP can be downloaded here) the features tell the synthetic
generators apart only partly, so these figures measure the loop's machinery, not CLIP's. Prints a summary
and writes bench/results/feedback_loop.json.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import base_parser, machine, write_results


def _prepare_environment() -> Path:
    var_dir = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{var_dir}/bench.sqlite3"
    os.environ["REDIS_URL"] = ""  # the filesystem broker: whatever is sent waits there, this process runs it
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    return var_dir


def _split(folder: Path, *counts: int) -> list[list[Path]]:
    files = sorted(folder.iterdir())
    parts, start = [], 0
    for count in counts:
        parts.append(files[start : start + count])
        start += count
    if start > len(files):
        raise SystemExit(f"{folder} has {len(files)} images, {start} are needed")
    return parts


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def run(args: Any) -> dict[str, Any]:
    var_dir = _prepare_environment()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from PIL import Image

    from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN, make_benchmark
    from webapp.feedback.models import UnknownCluster
    from webapp.feedback.services.clusters import unknown_cluster_register, unknown_clusters_refresh
    from webapp.registry.models import HeadVersion, TrainingJob
    from webapp.registry.selectors import head_version_active
    from webapp.registry.services import head_train_now, head_version_activate, registry_seed_from_folder
    from webapp.registry.services.training import training_job_run
    from webapp.submissions.models import Submission
    from webapp.submissions.services import submission_create_batch, verdict_create_batch
    from webapp.teams.models import Membership, Team
    from workers.runtime import get_backbone, get_feature_cache, load_attributor

    call_command("migrate", verbosity=0)
    User = get_user_model()
    staff = User.objects.create_user("bench-admin", password="x", is_staff=True)
    analyst = User.objects.create_user("bench-analyst", password="x")
    team = Team.objects.create(name="Bench team", slug="bench-team")
    Membership.objects.create(team=team, user=analyst, role=Membership.Role.MEMBER)
    backbone, cache = get_backbone(), get_feature_cache()

    new = args.new or DEFAULT_UNKNOWN[:2]
    per_class = args.references + args.uploads + args.new_uploads + args.held_out
    data = var_dir / "synth"
    started = time.perf_counter()
    make_benchmark(data, seed=args.seed, per_class=per_class, size=backbone.image_size[0])
    timings: dict[str, float] = {"synth_s": time.perf_counter() - started}

    # 1. The demo registry and its head.
    started = time.perf_counter()
    registry_seed_from_folder(source_dir=data, classes=DEFAULT_KNOWN, per_class=args.references, actor=staff)
    first_head = head_version_activate(
        head_version=head_train_now(actor=staff, backbone=backbone, cache=cache), actor=staff
    )
    timings["first_head_s"] = time.perf_counter() - started

    # 2. Uploads: known classes (images after the references) and the two new generators.
    truth: dict[int, str] = {}
    held_out: dict[str, list[Path]] = {}
    uploads: list[tuple[str, Path]] = []
    for name in DEFAULT_KNOWN:
        _, uploaded, held = _split(data / name, args.references, args.uploads, args.held_out)
        uploads += [(name, path) for path in uploaded]
        held_out[name] = held
    for name in new:
        uploaded, held = _split(data / name, args.new_uploads, args.held_out)
        uploads += [(name, path) for path in uploaded]
        held_out[name] = held
    started = time.perf_counter()
    for start in range(0, len(uploads), 20):
        chunk = uploads[start : start + 20]
        files = [path.open("rb") for _, path in chunk]
        try:
            outcomes = submission_create_batch(team=team, user=analyst, uploaded_files=files)
        finally:
            for file in files:
                file.close()
        for (name, _), outcome in zip(chunk, outcomes, strict=True):
            assert outcome.submission is not None, outcome.error
            truth[outcome.submission.pk] = name
    loaded = load_attributor(
        head_version_id=first_head.pk, version=first_head.version, artifact_name=first_head.artifact.name or ""
    )
    verdict_create_batch(
        submission_ids=list(truth), head_version=first_head, attributor=loaded.attributor, feature_cache=cache
    )
    timings["uploads_s"] = time.perf_counter() - started
    decisions = dict(Submission.objects.filter(pk__in=truth).values_list("pk", "verdict_decision"))
    rejected = {name: 0 for name in [*DEFAULT_KNOWN, *new]}
    uploaded_per_class = Counter(truth.values())
    for pk, decision in decisions.items():
        rejected[truth[pk]] += decision == "unknown_generator"

    # 3. The unknown pile, clustered.
    started = time.perf_counter()
    unknown_clusters_refresh()
    timings["clustering_s"] = time.perf_counter() - started
    clusters = list(UnknownCluster.objects.filter(status=UnknownCluster.Status.OPEN).prefetch_related("members"))
    members = {c.pk: [m.submission_id for m in c.members.all()] for c in clusters}
    majority = {pk: Counter(truth[s] for s in ids).most_common(1)[0] for pk, ids in members.items() if ids}
    clustered = sum(len(ids) for ids in members.values())
    purity = _share(sum(count for _, count in majority.values()), clustered)
    own_cluster: dict[str, int | None] = {}
    for name in new:
        theirs = [pk for pk, (label, _) in majority.items() if label == name]
        own_cluster[name] = max(theirs, key=lambda pk: len(members[pk])) if theirs else None

    # 4. Register each new generator's cluster and train.
    registered: dict[str, Any] = {}
    for name in new:
        cluster_pk = own_cluster[name]
        if cluster_pk is None:
            registered[name] = {"registered": False, "reason": "no cluster has it as its majority"}
            continue
        exclude = [s for s in members[cluster_pk] if truth[s] != name] if args.review == "oracle" else []
        result = unknown_cluster_register(
            cluster=UnknownCluster.objects.get(pk=cluster_pk),
            name=f"New {name}",
            slug=f"new-{name}",
            exclude_submission_ids=exclude,
            actor=staff,
        )
        registered[name] = {
            "registered": True,
            "cluster": cluster_pk,
            "references": result.reference_count,
            "references_of_other_classes": sum(truth[s] != name for s in members[cluster_pk] if s not in exclude),
            "excluded_in_review": len(exclude),
        }
    started = time.perf_counter()
    new_head: HeadVersion | None = None
    job = TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED).order_by("-pk").first()
    if job is not None:
        done = training_job_run(job_id=job.pk, backbone=backbone, cache=cache)
        assert done.head_version is not None, done.error
        new_head = head_version_activate(head_version=done.head_version, actor=staff)
    timings["second_head_s"] = time.perf_counter() - started

    # 5. Held-out images of every class, attributed by the new head and, for comparison, by the first one
    #    (which can only reject the new generators' images: "rejected" is its right answer there).
    held_out_results: dict[str, Any] = {}
    if new_head is not None:
        assert head_version_active() == new_head
        for key, head in (("first_head", first_head), ("second_head", new_head)):
            attributor = load_attributor(
                head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name or ""
            ).attributor
            for name, paths in held_out.items():
                expected = f"new-{name}" if name in new else name
                results = attributor.attribute([Image.open(path).convert("RGB") for path in paths])
                hits = sum(r.label == expected and r.decision != "unknown_generator" for r in results)
                held_out_results.setdefault(name, {"images": len(paths)})[key] = {
                    "attributed_to_it": hits,
                    "share": _share(hits, len(paths)),
                    "rejected": sum(r.decision == "unknown_generator" for r in results),
                }

    report = {
        "machine": machine(backbone.device),
        "backbone": backbone.identity,
        "pretrained": backbone.pretrained,
        "seed": args.seed,
        "review": args.review,
        "known": list(DEFAULT_KNOWN),
        "new": list(new),
        "references_per_class": args.references,
        "first_head": {"version": first_head.version, "metrics": _headline(first_head.metrics)},
        "uploads": {
            name: {"uploaded": uploaded_per_class[name], "rejected_as_unknown": rejected[name]}
            for name in [*DEFAULT_KNOWN, *new]
        },
        "clusters": {
            "count": len(clusters),
            "clustered": clustered,
            "unknown_pile": sum(rejected.values()),
            "purity": purity,
            "sizes": sorted((len(ids) for ids in members.values()), reverse=True),
            "majorities": {str(pk): {"class": label, "members": count} for pk, (label, count) in majority.items()},
        },
        "own_cluster_share": {
            name: _share(
                sum(truth[s] == name for s in members.get(own_cluster[name] or 0, [])), uploaded_per_class[name]
            )
            for name in new
        },
        "registered": registered,
        "second_head": (
            {"version": new_head.version, "classes": new_head.classes, "metrics": _headline(new_head.metrics)}
            if new_head
            else None
        ),
        "held_out": held_out_results,
        "new_held_out_share": _share(
            sum(held_out_results.get(name, {}).get("second_head", {}).get("attributed_to_it", 0) for name in new),
            sum(held_out_results.get(name, {}).get("images", 0) for name in new),
        ),
        "known_held_out_share": {
            key: _share(
                sum(held_out_results.get(name, {}).get(key, {}).get("attributed_to_it", 0) for name in DEFAULT_KNOWN),
                sum(held_out_results.get(name, {}).get("images", 0) for name in DEFAULT_KNOWN),
            )
            for key in ("first_head", "second_head")
        },
        "timings_s": {key: round(value, 2) for key, value in timings.items()},
    }
    return report


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics.get(key) for key in ("accuracy", "macro_f1", "auroc", "oscr")}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--review", choices=["none", "oracle"], default="none")
    parser.add_argument("--new", nargs=2, default=None, help="two generators of the benchmark the head does not know")
    parser.add_argument("--references", type=int, default=None, help="references per known class (default 20)")
    parser.add_argument("--uploads", type=int, default=None, help="uploaded images per known class (default 20)")
    parser.add_argument("--new-uploads", type=int, default=None, help="uploaded images per new generator (40)")
    parser.add_argument("--held-out", type=int, default=None, help="held-out images per class (default 20)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.references = args.references or (10 if quick else 20)
    args.uploads = args.uploads or (8 if quick else 20)
    args.new_uploads = args.new_uploads or (16 if quick else 40)
    args.held_out = args.held_out or (8 if quick else 20)
    report = run(args)
    clusters = report["clusters"]
    print(f"backbone {report['backbone']} (pretrained: {report['pretrained']}), review: {report['review']}")
    for name, row in report["uploads"].items():
        print(f"  {name:16s} uploaded {row['uploaded']:3d}, rejected as unknown {row['rejected_as_unknown']:3d}")
    print(
        f"clusters: {clusters['count']} (sizes {clusters['sizes']}), {clusters['clustered']} of "
        f"{clusters['unknown_pile']} unknown images clustered, purity {clusters['purity']}"
    )
    for name in report["new"]:
        print(f"  {name}: share of its uploads in its own cluster {report['own_cluster_share'][name]}")
    print("held-out images attributed to their class (rejected as unknown), first head -> second head:")
    for name, row in report["held_out"].items():
        first, second = row["first_head"], row["second_head"]
        print(
            f"  {name:16s} {first['attributed_to_it']:3d}/{row['images']} ({first['rejected']:2d})"
            f" -> {second['attributed_to_it']:3d}/{row['images']} ({second['rejected']:2d})"
        )
    print(f"new generators' held-out images attributed to them: {report['new_held_out_share']}")
    print(f"known classes' held-out images attributed to them (first, second head): {report['known_held_out_share']}")
    write_results("feedback_loop", report, args.out)
    return report


if __name__ == "__main__":
    main()
