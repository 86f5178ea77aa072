"""Backbone configurations: which open_clip model, which weights, which blocks.

Light on purpose (no torch import), so settings code and the CLI can name a
configuration without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneConfig:
    """An open_clip vision tower and its weights.

    `pretrained` is an open_clip pretrained tag (for example `laion2b_s34b_b88k`),
    the path of a local checkpoint file (a state dict of the whole CLIP model or of
    its visual tower, saved with `torch.save`), or `None` for random weights drawn
    with `seed` (never labelled as pretrained).
    """

    model_name: str = "ViT-S-16"
    pretrained: str | None = None
    seed: int = 0


# The offline default: small, builds without any download, random weights.
OFFLINE_BACKBONE = BackboneConfig()
# The paper's production backbone: OpenCLIP ViT-B/16 trained on LAION-2B.
PAPER_BACKBONE = BackboneConfig("ViT-B-16", "laion2b_s34b_b88k")
# 0-based block indices, as in open_clip's `forward_intermediates`: block 8 of 12 is the paper's best.
DEFAULT_BLOCKS: tuple[int, ...] = (8,)
