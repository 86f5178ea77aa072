"""Image folders on disk: the GenImage layout, the paper's five GenImage splits, and ImageFolder walking.

GenImage (Zhu et al., NeurIPS 2023) has one folder per generator holding `train/ai`, `train/nature`,
`val/ai` and `val/nature` (the official download nests them one level deeper, as in
`ADM/imagenet_ai_0508_adm/train/ai`; both are found). `nature` images are ImageNet photographs: the
"real" class. The paper's known/unknown generator lists per split are a data file
(`attribution/data/genimage_splits.json`, with its source). Files are walked lazily and in a stable
order, so that importing a million images holds one directory listing at a time, not every path.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SPLITS_FILE = Path(__file__).parent / "data" / "genimage_splits.json"
LAYOUTS = ("imagefolder", "genimage")
PHASES = ("train", "val")
AI, NATURE = "ai", "nature"
REAL = "real"


@dataclass(frozen=True)
class GenImageSplit:
    """One of the paper's splits: the known classes ("real" first) and the unknown generators."""

    number: int
    known: tuple[str, ...]
    unknown: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "known": list(self.known), "unknown": list(self.unknown)}


@cache
def _splits_data() -> dict[str, Any]:
    return dict(json.loads(SPLITS_FILE.read_text()))


def genimage_splits() -> dict[int, GenImageSplit]:
    """The paper's five splits by number (1..5), as the authors' code defines them."""
    return {
        int(number): GenImageSplit(int(number), tuple(entry["known"]), tuple(entry["unknown"]))
        for number, entry in _splits_data()["splits"].items()
    }


def genimage_split(number: int | str) -> GenImageSplit:
    """Split `number` (1..5); ValueError otherwise."""
    splits = genimage_splits()
    try:
        return splits[int(number)]
    except (KeyError, ValueError):
        raise ValueError(
            f"GenImage split must be one of {', '.join(map(str, splits))} or all, got {number!r}"
        ) from None


def genimage_source() -> str:
    """Where the split lists come from (paper and authors' code)."""
    return str(_splits_data()["source"])


def default_cache_dir() -> Path:
    """Where `evaluate` caches features of a GenImage run when no cache folder is given:
    $ATTRIBUTION_CACHE_DIR, else $XDG_CACHE_HOME/attribution/features (~/.cache/...)."""
    explicit = os.environ.get("ATTRIBUTION_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attribution" / "features"


def protocol_report(files: GenImageFiles, *, per_class: int | None, select_by: str) -> dict[str, Any]:
    """`report["protocol"]` of a GenImage run: what trains, what chooses C, what tests, and the counts."""
    return {
        "name": "genimage",
        "train": f"<generator>/train/ai of the known generators and their train/nature as real, at most "
        f"{per_class if per_class is not None else samples_per_class()} per class (seeded choice)",
        "validation": "C chosen by "
        + (
            "the AUROC of the maximum softmax probability against the unknown generators' val/ai images, as the "
            "authors do (optimistic: they are also the unknown test images)"
            if select_by == "paper"
            else f"{select_by} on a split of the training images (not the authors' choice; --select-by paper is)"
        ),
        "test": "<generator>/val: known classes' val images and the unknown generators' val/ai images; the "
        "authors' val set doubles as their test set",
        "authors": genimage_protocol(),
        "counts": files.counts(),
    }


def genimage_protocol() -> str:
    """The train/validation/test protocol of the authors, in words."""
    return str(_splits_data()["protocol"])


def samples_per_class() -> int:
    """The authors' cap on training images per class (4000)."""
    return int(_splits_data()["samples_per_class"])


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def generator_folders(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Generator name -> the folder holding its `train/` and `val/` (the generator folder itself or, as in
    the official download, the one subfolder that holds them). Folders with neither are left out."""
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"data directory {base} does not exist")
    found: dict[str, Path] = {}
    for folder in _visible_dirs(base):
        candidates = [folder, *_visible_dirs(folder)]
        holder = next((c for c in candidates if any((c / phase).is_dir() for phase in PHASES)), None)
        if holder is not None:
            found[folder.name] = holder
    return found


def walk_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every visible file under `folder`, recursively, in sorted order, one directory listing at a time."""
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(current) / name


def interleave(iterators: Sequence[Iterator[Path]]) -> Iterator[Path]:
    """Round-robin over several iterators until all are exhausted (real photographs drawn evenly from
    every generator's `nature` folder)."""
    live = list(iterators)
    while live:
        still = []
        for iterator in live:
            item = next(iterator, None)
            if item is not None:
                yield item
                still.append(iterator)
        live = still


def class_folders(
    root: str | os.PathLike[str], *, layout: str = "imagefolder", phase: str = "train", real_label: str = REAL
) -> dict[str, list[Path]]:
    """Class name -> the folders whose files (recursively) belong to it.

    `imagefolder`: `root/<class>/**`. `genimage`: `root/<generator>/[<sub>/]<phase>/ai` is the generator's
    class and every generator's `<phase>/nature` is `real_label`; `phase` is `train`, `val` or `all`."""
    base = Path(root)
    if layout == "imagefolder":
        if not base.is_dir():
            raise ValueError(f"data directory {base} does not exist")
        return {folder.name: [folder] for folder in _visible_dirs(base)}
    if layout != "genimage":
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    phases = PHASES if phase == "all" else (phase,)
    if any(p not in PHASES for p in phases):
        raise ValueError(f"phase must be train, val or all, got {phase!r}")
    folders: dict[str, list[Path]] = {}
    nature: list[Path] = []
    for name, holder in generator_folders(base).items():
        ai = [holder / p / AI for p in phases if (holder / p / AI).is_dir()]
        if ai:
            folders[name] = ai
        nature += [holder / p / NATURE for p in phases if (holder / p / NATURE).is_dir()]
    if not folders and not nature:
        raise ValueError(f"{base} is not in the GenImage layout: no <generator>/{'|'.join(phases)}/ai or nature folder")
    if nature:
        folders = {real_label: nature, **folders}
    return folders


def class_files(folders: Sequence[Path]) -> Iterator[Path]:
    """The files of one class (`class_folders` value), lazily; several folders are interleaved."""
    return interleave([walk_files(folder) for folder in folders]) if len(folders) > 1 else walk_files(folders[0])


@dataclass
class GenImageFiles:
    """The files of one split: known training images and known test images per class, unknown test
    images per generator (all from `val/`)."""

    split: GenImageSplit
    train: dict[str, list[Path]] = field(default_factory=dict)
    test: dict[str, list[Path]] = field(default_factory=dict)
    unknown: dict[str, list[Path]] = field(default_factory=dict)

    def class_files(self) -> dict[str, list[Path]]:
        """Every file by class: a known class's training then test files, then each unknown generator's."""
        return {name: self.train[name] + self.test[name] for name in self.split.known} | dict(self.unknown)

    def test_paths(self) -> set[Path]:
        return set(chained(self.test))

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            part: {name: len(paths) for name, paths in getattr(self, part).items()}
            for part in ("train", "test", "unknown")
        }


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _sample(paths: list[Path], n: int | None, seed: int) -> list[Path]:
    """At most `n` of `paths`, a seeded choice kept in path order (GenImage's names are sorted by ImageNet
    class, so the first N would be a few classes only)."""
    if n is None or len(paths) <= n:
        return paths
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), size=n, replace=False))
    return [paths[i] for i in keep]


def split_files(
    root: str | os.PathLike[str],
    split: GenImageSplit,
    *,
    per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
) -> GenImageFiles:
    """The files of `split` under a GenImage `root`: training images of the known classes from `train/`
    (at most `per_class`, default the authors' 4000), known test images from `val/` (at most
    `test_per_class`), unknown generators' `val/ai` images. "real" is the `nature` images of the known
    generators' folders. ValueError when a class of the split is missing or empty."""
    per_class = samples_per_class() if per_class is None else per_class
    found = generator_folders(root)
    by_key = {_key(name): folder for name, folder in found.items()}
    # The split's names as the authors write them, matched to the folders however the download spells them
    # ("stable_diffusion_v_1_4" is "Stable Diffusion V1.4", "glide" is "GLIDE").
    generators = {name: by_key[_key(name)] for name in (*split.known, *split.unknown) if _key(name) in by_key}
    needed = [name for name in (*split.known, *split.unknown) if name != REAL]
    if missing := [name for name in needed if name not in generators]:
        raise ValueError(
            f"GenImage split {split.number}: no folder for {', '.join(missing)} under {root} "
            f"(found: {', '.join(found) or 'none'})"
        )
    files = GenImageFiles(split)
    known_generators = [name for name in split.known if name != REAL]
    for part, phase, cap in (("train", "train", per_class), ("test", "val", test_per_class)):
        target: dict[str, list[Path]] = getattr(files, part)
        for index, name in enumerate(split.known):
            if name == REAL:
                folders = [generators[g] / phase / NATURE for g in known_generators]
                paths = (
                    list(class_files([f for f in folders if f.is_dir()])) if any(f.is_dir() for f in folders) else []
                )
            else:
                folder = generators[name] / phase / AI
                paths = list(walk_files(folder)) if folder.is_dir() else []
            target[name] = _sample(paths, cap, seed + index)
    for index, name in enumerate(split.unknown):
        folder = generators[name] / "val" / AI
        files.unknown[name] = _sample(
            list(walk_files(folder)) if folder.is_dir() else [], test_per_class, seed + 100 + index
        )
    for part in ("train", "test", "unknown"):
        if empty := [name for name, paths in getattr(files, part).items() if not paths]:
            where = "train" if part == "train" else "val"
            raise ValueError(f"GenImage split {split.number}: no {where} images for {', '.join(empty)}")
    return files


def write_genimage_tree(
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    names: dict[str, str],
    *,
    real_class: str = REAL,
    train_fraction: float = 0.6,
    real_to: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Copy an ImageFolder into the GenImage layout: class `c` of `names` becomes `out/<names[c]>/train|val/ai`
    (the first `train_fraction` of its files in train), and the `real_class` files are dealt round-robin to
    the generators' `train|val/nature` (those of `real_to` only, when given). For tests and demonstrations
    without GenImage (e.g. the synthetic benchmark with split 1's folder names). Returns the counts written."""
    import shutil

    source, out = Path(source_dir), Path(out_dir)
    counts: dict[str, int] = {}

    def place(files: list[Path], target: Path) -> int:
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)
        return len(files)

    def halves(files: list[Path]) -> tuple[list[Path], list[Path]]:
        cut = max(1, min(len(files) - 1, round(train_fraction * len(files))))
        return files[:cut], files[cut:]

    generators = list(names.values()) if real_to is None else list(real_to)
    for class_name, generator in names.items():
        train, val = halves(sorted(walk_files(source / class_name)))
        counts[generator] = place(train, out / generator / "train" / AI) + place(val, out / generator / "val" / AI)
    real_train, real_val = halves(sorted(walk_files(source / real_class)))
    for phase, files in (("train", real_train), ("val", real_val)):
        for index, generator in enumerate(generators):
            counts[REAL] = counts.get(REAL, 0) + place(
                files[index :: len(generators)], out / generator / phase / NATURE
            )
    return counts


def chained(groups: dict[str, list[Path]]) -> list[Path]:
    """All paths of a class -> paths mapping, in class order."""
    return list(itertools.chain.from_iterable(groups.values()))


_MEAN_KEYS = (
    "accuracy",
    "auroc",
    "oscr",
    "auroc_msp",
    "oscr_msp",
    "macro_f1",
    "known_acceptance_at_threshold",
    "unknown_rejection_at_threshold",
)


def _mean_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _MEAN_KEYS:
        values = [entry[key] for entry in entries if isinstance(entry.get(key), (int, float))]
        if len(values) == len(entries):
            out[key] = float(np.mean(values))
            out[f"{key}_per_split"] = [float(v) for v in values]
    if all(isinstance(entry.get("C"), (int, float)) for entry in entries):
        out["C"] = float(np.exp(np.mean(np.log([entry["C"] for entry in entries]))))  # geometric mean
    elif all("k" in entry for entry in entries):
        out["k"] = "/".join(str(entry["k"]) for entry in entries)
    out["score_method"] = "/".join(sorted({str(entry.get("score_method")) for entry in entries}))
    return out


def mean_reports(reports: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The paper's table: the mean over splits of each block's figures (each also listed per split, as
    `<metric>_per_split`) and of the robustness figures; the splits' own reports under `"splits"`."""
    if not reports:
        raise ValueError("no split reports to average")
    numbers = sorted(reports)
    first = reports[numbers[0]]
    blocks = [b for b in first["blocks"] if all(b in reports[n]["blocks"] for n in numbers)]
    mean_blocks = {b: _mean_entry([reports[n]["blocks"][b] for n in numbers]) for b in blocks}
    best = max(mean_blocks, key=lambda b: (mean_blocks[b]["oscr"], mean_blocks[b]["accuracy"], -int(b)))
    report: dict[str, Any] = {
        "blocks": mean_blocks,
        "best_block": int(best),
        "split": {"number": "all", "splits": [reports[n]["split"] for n in numbers], "source": genimage_source()},
        "protocol": first.get("protocol"),
    }
    if all("robustness" in reports[n] for n in numbers):
        robustness: dict[str, dict[str, dict[str, Any]]] = {}
        for name, levels in first["robustness"].items():
            for level in levels:
                entries = [reports[n]["robustness"].get(name, {}).get(level) for n in numbers]
                if all(entries):
                    robustness.setdefault(name, {})[level] = _mean_entry(entries)
        report["robustness"] = robustness
        report["robustness_block"] = [reports[n].get("robustness_block") for n in numbers]
        clean = [reports[n].get("robustness_clean") for n in numbers]
        if all(clean):
            report["robustness_clean"] = _mean_entry(clean)  # type: ignore[arg-type]
    report["settings"] = dict(first.get("settings", {})) | {"split": "all"}
    report["splits"] = {str(n): reports[n] for n in numbers}
    return report
