"""The frozen open_clip vision tower and the intermediate CLS features the method uses.

Only the visual tower is kept. `Backbone.extract` runs one forward pass that stops at
the deepest requested block and returns the CLS token of each requested block, with
no final norm and no projection (the paper's features).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from open_clip.transformer import VisionTransformer
from PIL import Image

from attribution.config import BackboneConfig
from attribution.images import sha256_of

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class BackboneLoadError(RuntimeError):
    """The backbone cannot be built: unknown model, missing or mismatched checkpoint, failed download."""


class Backbone:
    """A frozen open_clip ViT vision tower with its evaluation transform.

    Build it with `load_backbone`. `identity` names the weights exactly (it keys the
    feature cache and is stored with every trained head); `pretrained` is False only
    for random weights.
    """

    def __init__(
        self,
        config: BackboneConfig,
        visual: VisionTransformer,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        identity: str,
        pretrained: bool,
        device: torch.device,
        precision: str,
    ) -> None:
        self.config = config
        self.visual = visual
        self.identity = identity
        self.pretrained = pretrained
        self.device = device
        self.precision = precision
        self.num_blocks: int = len(visual.transformer.resblocks)
        self.width: int = int(visual.transformer.width)
        self.image_size: tuple[int, int] = tuple(visual.image_size)
        self._transform = transform

    def __repr__(self) -> str:
        return f"Backbone({self.identity!r}, device={str(self.device)!r}, precision={self.precision!r})"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's own evaluation transform (resize, centre crop, CLIP mean/std): Tensor[3, H, W]."""
        return self._transform(image)

    def validate_blocks(self, blocks: Iterable[int]) -> tuple[int, ...]:
        """Sorted, de-duplicated 0-based block indices; ValueError if empty or out of range."""
        chosen = tuple(sorted({int(block) for block in blocks}))
        if not chosen:
            raise ValueError("at least one block is needed")
        if chosen[0] < 0 or chosen[-1] >= self.num_blocks:
            raise ValueError(
                f"blocks must be in 0..{self.num_blocks - 1} for {self.config.model_name}, got {chosen}"
            )
        return chosen

    def extract(
        self, images: Sequence[Image.Image] | torch.Tensor, blocks: Iterable[int]
    ) -> dict[int, np.ndarray]:
        """CLS token of each requested block for a batch, in one forward pass.

        images: N PIL images, or an already preprocessed Tensor[N, 3, H, W].
        Returns {block: float32 array [N, width]}; the pass stops after the deepest block.
        """
        take = self.validate_blocks(blocks)
        if isinstance(images, torch.Tensor):
            batch = images
        elif len(images) == 0:
            return {block: np.zeros((0, self.width), dtype=np.float32) for block in take}
        else:
            batch = torch.stack([self.preprocess(image) for image in images])
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a Tensor[N, 3, H, W], got shape {tuple(batch.shape)}")
        with torch.inference_mode(), self._autocast():
            output = self.visual.forward_intermediates(
                batch.to(self.device, torch.float32),
                indices=list(take),
                stop_early=True,
                intermediates_only=True,
                output_fmt="NLC",
                output_extra_tokens=True,
            )
        # One [N, 1, width] prefix (CLS) tensor per taken block, in block order.
        prefixes = output["image_intermediates_prefix"]
        return {
            block: prefix[:, 0].float().cpu().numpy() for block, prefix in zip(take, prefixes, strict=True)
        }

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.precision in _AUTOCAST_DTYPES:
            return torch.autocast("cuda", dtype=_AUTOCAST_DTYPES[self.precision])
        return contextlib.nullcontext()


def load_backbone(
    config: BackboneConfig, *, device: str = "cpu", precision: str = "fp32", cache_dir: str | None = None
) -> Backbone:
    """Build the frozen visual tower of `config` on `device`.

    `config.pretrained` is an open_clip tag (downloaded and cached by open_clip), a local
    checkpoint file, or None for random weights seeded by `config.seed` (the global torch
    random state is left as it was). `precision` fp16/bf16 means autocast on CUDA; on
    other devices features are always computed in fp32. `cache_dir` is where open_clip keeps
    downloaded weights (its own default when None).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    name = config.model_name
    if name not in open_clip.list_models():
        raise BackboneLoadError(f"unknown open_clip model {name!r}")
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise BackboneLoadError(f"device {device!r} was asked for but CUDA is not available")

    checkpoint = _checkpoint_path(config)
    state = _read_checkpoint(checkpoint) if checkpoint is not None else None  # fail before building
    tag = config.pretrained if config.pretrained is not None and checkpoint is None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            model, _, transform = open_clip.create_model_and_transforms(
                name, pretrained=tag, device="cpu", cache_dir=cache_dir
            )
        except RuntimeError as error:
            raise BackboneLoadError(f"could not load open_clip weights {name}/{tag}: {error}") from error
    visual = model.visual
    del model  # the text tower is never used
    if not isinstance(visual, VisionTransformer):
        raise BackboneLoadError(
            f"{name} has no open_clip VisionTransformer tower; only ViT models are supported"
        )

    if checkpoint is not None and state is not None:
        try:
            visual.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise BackboneLoadError(
                f"checkpoint {checkpoint} does not match the {name} visual tower: "
                + " ".join(str(error).split())[:500]
            ) from error
        identity = f"{name}/sha256:{sha256_of(checkpoint)[:12]}"
    elif tag is not None:
        identity = f"{name}/{tag}"
    else:
        identity = f"{name}/random-seed{config.seed}"
    visual.to(torch_device).eval().requires_grad_(False)
    effective_precision = precision if torch_device.type == "cuda" else "fp32"
    return Backbone(
        config,
        visual,
        transform,
        identity=identity,
        pretrained=config.pretrained is not None,
        device=torch_device,
        precision=effective_precision,
    )


def _checkpoint_path(config: BackboneConfig) -> Path | None:
    """The checkpoint file `config.pretrained` names, or None when it is None or an open_clip tag."""
    if config.pretrained is None:
        return None
    path = Path(config.pretrained).expanduser()
    if path.is_file():
        return path
    if config.pretrained in open_clip.list_pretrained_tags_by_model(config.model_name):
        return None
    raise BackboneLoadError(
        f"checkpoint file {path} does not exist, and {config.pretrained!r} is not an open_clip "
        f"pretrained tag for {config.model_name}"
    )


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The visual tower's state dict from a state dict of the whole CLIP model (`visual.` keys),
    of the visual tower alone, or an open_clip training checkpoint (`state_dict`, `module.` keys)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on foreign or damaged files
        raise BackboneLoadError(f"checkpoint {path} cannot be read: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise BackboneLoadError(f"checkpoint {path} does not hold a state dict")
    state = {str(key).removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith("visual.") for key in state):
        state = {
            key.removeprefix("visual."): value for key, value in state.items() if key.startswith("visual.")
        }
    return state
