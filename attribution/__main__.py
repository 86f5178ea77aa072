"""Command line: `python -m attribution synth|evaluate ...` (see `--help` of each)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribution.config import OFFLINE_BACKBONE, PAPER_BACKBONE, BackboneConfig


def parse_blocks(text: str) -> list[int]:
    """Block indices from "0-11", "8", "2,5,8" or a mix such as "0-3,8"; sorted, no repeats."""
    blocks: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            first, last = int(low), int(high if dash else low)
            if last < first:
                raise ValueError
            blocks.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad block list {text!r}: use forms like 0-11, 8 or 2,5,8") from None
    return sorted(blocks)


def _blocks_or_auto(text: str) -> list[int] | str:
    return "auto" if text.strip() == "auto" else parse_blocks(text)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated class names")
    return names


def _shots(text: str) -> int | list[int]:
    try:
        values = [int(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --shots {text!r}: use N or N,N,...") from None
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m attribution`."""
    parser = argparse.ArgumentParser(prog="python -m attribution", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write the synthetic benchmark (an ImageFolder of PNG files)")
    synth.add_argument("out_dir", type=Path)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    synth.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")

    evaluate = commands.add_parser("evaluate", help="the paper's protocol on an ImageFolder, block by block")
    evaluate.add_argument("data_dir", type=Path)
    evaluate.add_argument("--known", type=_names, default=None, help="known classes, comma-separated")
    evaluate.add_argument("--unknown", type=_names, default=None, help="unknown classes, comma-separated")
    evaluate.add_argument(
        "--layout",
        choices=("imagefolder", "genimage"),
        default="imagefolder",
        help="imagefolder (DATA_DIR/<class>/*, needs --known and --unknown) or genimage "
        "(DATA_DIR/<generator>/train|val/ai|nature, with --split)",
    )
    evaluate.add_argument("--split", default=None, help="GenImage: the paper's split 1..5, or all (their mean)")
    evaluate.add_argument(
        "--per-class", type=int, default=None, help="GenImage: training images per class (default 4000, the authors')"
    )
    evaluate.add_argument("--test-per-class", type=int, default=None, help="GenImage: test images per class")
    evaluate.add_argument(
        "--perturb",
        nargs="+",
        default=None,
        metavar="NAME:LEVELS",
        help="score the best block's head on perturbed test images, e.g. jpeg:90,75,50 blur:1,2 resize:0.5 "
        "noise:0.02 brightness:0.5 contrast:0.5 saturation:0 rotation:10",
    )
    evaluate.add_argument(
        "--robust-train",
        nargs="+",
        default=None,
        metavar="NAME:LEVELS",
        help="add a perturbed copy of each training image per level, e.g. jpeg:75 blur:1 resize:0.5 noise:0.02",
    )
    evaluate.add_argument(
        "--blocks",
        type=_blocks_or_auto,
        default=[8],
        help="0-based blocks, e.g. 0-11 or 2,5,8; auto: every block, plus the block(s) chosen by held-out OSCR",
    )
    evaluate.add_argument("--head", choices=("linear", "knn"), default="linear")
    evaluate.add_argument(
        "--select-by",
        choices=("logo", "accuracy", "paper"),
        default="logo",
        help="how the linear probe's C is chosen: logo (default: AUROC with each known generator held out), "
        "accuracy, or paper (AUROC of the MSP against the --unknown-val classes)",
    )
    evaluate.add_argument(
        "--unknown-val",
        type=_names,
        default=None,
        help="generators left out of training whose images choose C with --select-by paper",
    )
    evaluate.add_argument(
        "--score",
        choices=("auto", "msp", "log_msp", "max_logit", "energy", "knn", "mahalanobis", "relative_mahalanobis"),
        default="auto",
        help="open-set score (default auto: the best held-out OSCR on the training part)",
    )
    evaluate.add_argument("--tpr", type=float, default=0.95, help="share of known images the threshold accepts")
    evaluate.add_argument("--shots", type=_shots, default=None, help="training images per class: N or N,N,...")
    evaluate.add_argument(
        "--backbone",
        default=None,
        help=f"open_clip model (default {OFFLINE_BACKBONE.model_name} with random weights; "
        f"{PAPER_BACKBONE.model_name} when --pretrained is given)",
    )
    evaluate.add_argument(
        "--pretrained",
        default=None,
        help=f"open_clip pretrained tag or local checkpoint (the paper's: {PAPER_BACKBONE.pretrained})",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder")
    evaluate.add_argument("--out", type=Path, required=True, help="JSON report")
    evaluate.add_argument("--plot", type=Path, default=None, help="PNG figure (default: --out with .png)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_synth(args: argparse.Namespace) -> None:
    from attribution.synth import make_benchmark

    started = time.perf_counter()
    manifest = make_benchmark(args.out_dir, seed=args.seed, per_class=args.per_class, size=args.size)
    total = sum(manifest["counts"].values())
    print(
        f"wrote {total} images ({len(manifest['classes'])} classes x {args.per_class}, "
        f"{args.size} px) to {args.out_dir} in {time.perf_counter() - started:.1f} s"
    )
    print(f"known: {','.join(manifest['known'])}")
    print(f"unknown: {','.join(manifest['unknown'])}")


def run_evaluate(args: argparse.Namespace) -> None:
    from attribution.evaluate import UnreadableImagesWarning, evaluate, plot_blocks

    if args.backbone is None and args.pretrained is None:
        config = OFFLINE_BACKBONE
    else:
        default_name = OFFLINE_BACKBONE.model_name if args.pretrained is None else PAPER_BACKBONE.model_name
        config = BackboneConfig(args.backbone or default_name, args.pretrained)
    if not config.pretrained:
        print(
            f"backbone {config.model_name} has random weights (not pretrained): figures are a demonstration, not CLIP's"
        )
    if args.layout == "imagefolder" and (args.known is None or args.unknown is None):
        raise ValueError("--known and --unknown are needed with an ImageFolder (or use --layout genimage --split N)")
    if args.layout == "genimage" and args.split is None:
        raise ValueError("--layout genimage needs --split 1..5 or all")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImagesWarning)  # listed below, one line per file
        report = evaluate(
            args.data_dir,
            known=args.known or (),
            unknown=args.unknown or (),
            layout=args.layout,
            genimage_split=args.split,
            per_class=args.per_class,
            test_per_class=args.test_per_class,
            perturb=args.perturb,
            robust_train=args.robust_train,
            blocks=args.blocks,
            head=args.head,
            select_by=args.select_by,
            score_method=args.score,
            unknown_val=args.unknown_val,
            tpr=args.tpr,
            shots=args.shots,
            backbone_config=config,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
        )
    report["settings"]["wall_time_s"] = round(time.perf_counter() - started, 1)
    settings = report["settings"]
    for item in settings["skipped"]:
        print(f"warning: skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"backbone {settings['backbone']}, {settings['head']} head, seed {settings['seed']}")
    print(format_table(report))
    if "auto" in report:
        auto = report["auto"]
        if auto.get("blocks") is None:
            print(f"\nauto blocks skipped: {auto['skipped']}")
        else:
            print(f"\nauto: blocks {auto['blocks']} ({auto['feature_join']} join)")
            print(format_table({"blocks": {"auto": auto}, "best_block": None}))
    for shots, sub_report in report.get("shots", {}).items():
        print(f"\n{shots} training images per class:")
        print(format_table(sub_report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot = args.plot or args.out.with_suffix(".png")
    plot_blocks(report, plot)
    if "robustness" in report:
        from attribution.robustness import format_robustness, plot_robustness

        print(f"\nrobustness (block {report['robustness_block']}):")
        print(format_robustness(report))
        plot = plot.with_name(f"{plot.stem}-robustness.png")
        plot_robustness(report, plot)
    print(f"wrote {args.out} and {plot} ({settings['wall_time_s']} s)")


def format_table(report: dict[str, Any]) -> str:
    """Per-block table in percent (accuracy, AUROC, OSCR and macro F1; the known test images accepted and
    the unknown ones rejected at the threshold) with the score and C, the best block starred."""
    lines = [
        f"{'block':>5}  {'accuracy':>8}  {'AUROC':>6}  {'OSCR':>6}  {'macroF1':>7}  {'accept':>6}  {'reject':>6}"
        "  score, C"
    ]
    for block, scores in sorted(report["blocks"].items(), key=lambda item: int(item[0]) if item[0].isdigit() else -1):
        mark = "  *best" if block.isdigit() and int(block) == report["best_block"] else ""
        chosen = f"C {scores['C']:.3g}" if "C" in scores else f"k {scores.get('k')}"
        accept, reject = scores["known_acceptance_at_threshold"], scores["unknown_rejection_at_threshold"]
        lines.append(
            f"{block:>5}  {100 * scores['accuracy']:8.1f}  {100 * scores['auroc']:6.1f}  "
            f"{100 * scores['oscr']:6.1f}  {100 * scores['macro_f1']:7.1f}  "
            f"{100 * accept:6.1f}  {100 * reject:6.1f}"
            f"  {scores['score_method']}, {chosen}{mark}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on a user error, with a one-line message)."""
    args = build_parser().parse_args(argv)
    from attribution.backbone import BackboneLoadError

    try:
        if args.command == "synth":
            run_synth(args)
        else:
            run_evaluate(args)
    except (ValueError, OSError, BackboneLoadError) as error:  # ImageRejected is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
