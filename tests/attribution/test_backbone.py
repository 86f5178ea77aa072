"""The open_clip backbone: weights (seeded, checkpoint files), preprocessing, one-pass block features."""

from __future__ import annotations

import gc
import hashlib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from attribution.backbone import Backbone, BackboneLoadError, load_backbone
from attribution.config import OFFLINE_BACKBONE, BackboneConfig


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(OFFLINE_BACKBONE)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Four different small images of different sizes (the transform resizes and crops)."""
    rng = np.random.default_rng(7)
    sizes = [(64, 48), (48, 64), (80, 80), (50, 70)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def reference_cls_tokens(backbone: Backbone, batch: torch.Tensor) -> list[torch.Tensor]:
    """A plain pass through every block of the tower, written out from its parts: [N, width] per block."""
    visual = backbone.visual
    with torch.inference_mode():
        patches = visual.conv1(batch).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.expand(batch.shape[0], 1, -1)
        x = visual.ln_pre(torch.cat([cls, patches], dim=1) + visual.positional_embedding)
        tokens = []
        for block in visual.transformer.resblocks:
            x = block(x)
            tokens.append(x[:, 0].clone())
    return tokens


def weights(backbone: Backbone) -> dict[str, torch.Tensor]:
    return backbone.visual.state_dict()


def assert_same_weights(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    assert all(torch.equal(left[key], right[key]) for key in left)


def test_the_offline_backbone_is_a_frozen_random_vit_s_16(backbone: Backbone) -> None:
    assert "ViT-S-16" in open_clip.list_models()
    assert backbone.identity == "ViT-S-16/random-seed0"
    assert backbone.pretrained is False
    assert (backbone.num_blocks, backbone.width, backbone.image_size) == (12, 384, (224, 224))
    assert (str(backbone.device), backbone.precision) == ("cpu", "fp32")
    assert not backbone.visual.training
    assert not any(parameter.requires_grad for parameter in backbone.visual.parameters())
    gc.collect()
    assert not [item for item in gc.get_objects() if type(item) is open_clip.CLIP]  # text tower freed


def test_it_preprocesses_with_the_clip_eval_transform(backbone: Backbone) -> None:
    grey = Image.new("RGB", (300, 200), (128, 128, 128))

    tensor = backbone.preprocess(grey)

    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(OPENAI_DATASET_MEAN)) / torch.tensor(OPENAI_DATASET_STD)
    assert torch.allclose(tensor.mean(dim=(1, 2)), expected, atol=1e-4)


def test_one_pass_stops_at_the_deepest_block_and_matches_separate_and_full_passes(
    backbone: Backbone, images: list[Image.Image]
) -> None:
    batch = torch.stack([backbone.preprocess(image) for image in images[:2]])
    ran: list[int] = []
    hooks = [
        block.register_forward_hook(lambda *_, index=index: ran.append(index))
        for index, block in enumerate(backbone.visual.transformer.resblocks)
    ]
    try:
        together = backbone.extract(batch, [8, 2, 5])
    finally:
        for hook in hooks:
            hook.remove()

    assert ran == list(range(9))  # one pass, and blocks 9..11 never ran
    assert sorted(together) == [2, 5, 8]
    full = reference_cls_tokens(backbone, batch)
    for block in (2, 5, 8):
        assert together[block].shape == (2, 384) and together[block].dtype == np.float32
        np.testing.assert_allclose(together[block], backbone.extract(batch, [block])[block], atol=1e-5)
        np.testing.assert_allclose(together[block], full[block].numpy(), atol=1e-5)
    # The CLS token as it leaves the block: no final norm.
    assert not np.allclose(together[8], backbone.visual.ln_post(full[8]).numpy(), atol=1e-2)


def test_a_batch_equals_single_images_and_images_differ(
    backbone: Backbone, images: list[Image.Image]
) -> None:
    batched = backbone.extract(images, [8])[8]
    singles = np.concatenate([backbone.extract([image], [8])[8] for image in images])

    np.testing.assert_allclose(batched, singles, atol=1e-4)
    assert batched.shape == (4, 384)
    distances = np.linalg.norm(batched[:, None] - batched[None], axis=-1)
    assert distances[~np.eye(4, dtype=bool)].min() > 1e-3


def test_it_refuses_blocks_outside_the_model(backbone: Backbone, images: list[Image.Image]) -> None:
    for blocks in ([], [12], [-1]):
        with pytest.raises(ValueError, match="block"):
            backbone.extract(images[:1], blocks)
    assert backbone.extract([], [8])[8].shape == (0, 384)


def test_random_weights_follow_the_seed_and_leave_the_global_rng_alone(backbone: Backbone) -> None:
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)

    again = load_backbone(BackboneConfig("ViT-S-16", None, seed=0))
    draw = torch.rand(3)
    other = load_backbone(BackboneConfig("ViT-S-16", None, seed=1))

    assert torch.equal(draw, expected_draw)
    assert_same_weights(weights(again), weights(backbone))
    assert other.identity == "ViT-S-16/random-seed1"
    assert not torch.equal(weights(other)["conv1.weight"], weights(backbone)["conv1.weight"])


@pytest.fixture(scope="module")
def checkpoint_weights(backbone: Backbone) -> dict[str, torch.Tensor]:
    """Weights that differ from every seeded initialisation, so a load that does nothing fails."""
    generator = torch.Generator().manual_seed(99)
    return {
        key: value + 0.01 * torch.randn(value.shape, generator=generator)
        for key, value in weights(backbone).items()
    }


def checkpoint_layout(state: dict[str, torch.Tensor], layout: str) -> object:
    """A visual tower's state dict, or the layout of an open_clip training checkpoint: the whole
    CLIP model wrapped by DDP (`module.` keys) under `state_dict`."""
    if layout == "visual":
        return state
    whole = {f"module.visual.{key}": value for key, value in state.items()}
    whole |= {"module.logit_scale": torch.tensor(4.6), "module.text_projection": torch.zeros(384, 384)}
    return {"epoch": 3, "state_dict": whole}


@pytest.mark.parametrize("layout", ["visual", "clip"])
def test_it_loads_a_checkpoint_file(
    tmp_path: Path, checkpoint_weights: dict[str, torch.Tensor], layout: str
) -> None:
    path = tmp_path / "tower.pt"
    torch.save(checkpoint_layout(checkpoint_weights, layout), path)

    loaded = load_backbone(BackboneConfig("ViT-S-16", str(path)))

    assert_same_weights(weights(loaded), checkpoint_weights)
    assert loaded.identity == f"ViT-S-16/sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    assert loaded.pretrained is True
    assert not any(parameter.requires_grad for parameter in loaded.visual.parameters())


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vit-s-32.pt"
    torch.save(open_clip.create_model("ViT-S-32").visual.state_dict(), path)

    with pytest.raises(BackboneLoadError, match="size mismatch") as caught:
        load_backbone(BackboneConfig("ViT-S-16", str(path)))
    assert str(path) in str(caught.value) and "ViT-S-16" in str(caught.value)


def test_an_incomplete_checkpoint_is_refused(
    tmp_path: Path, checkpoint_weights: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "truncated.pt"
    keys = sorted(checkpoint_weights)
    torch.save({key: checkpoint_weights[key] for key in keys[: len(keys) // 2]}, path)

    with pytest.raises(BackboneLoadError, match="Missing key") as caught:
        load_backbone(BackboneConfig("ViT-S-16", str(path)))
    assert str(path) in str(caught.value) and "ViT-S-16" in str(caught.value)


def test_missing_or_unreadable_checkpoints_are_refused(tmp_path: Path) -> None:
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("these are not weights")
    missing = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(BackboneLoadError, match="does not exist") as caught:
        load_backbone(BackboneConfig("ViT-S-16", str(missing)))
    assert str(missing) in str(caught.value)

    with pytest.raises(BackboneLoadError, match="cannot be read") as caught:
        load_backbone(BackboneConfig("ViT-S-16", str(not_a_checkpoint)))
    assert str(not_a_checkpoint) in str(caught.value)


def test_it_refuses_unknown_models_precisions_and_absent_devices() -> None:
    with pytest.raises(BackboneLoadError, match="unknown open_clip model"):
        load_backbone(BackboneConfig("ViT-Nonexistent-1"))
    with pytest.raises(ValueError, match="precision"):
        load_backbone(OFFLINE_BACKBONE, precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(BackboneLoadError, match="CUDA is not available"):
            load_backbone(OFFLINE_BACKBONE, device="cuda")
