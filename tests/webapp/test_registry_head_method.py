"""A head trained by the web app records how it was chosen (blocks, score, C, criterion) and shows it in the API
and on its page; with ATTRIBUTION_BLOCKS=auto the training chooses the blocks itself."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.fixtures import api_client
from webapp.registry import services


@override_settings(ATTRIBUTION_BLOCKS="auto")
def test_a_head_trained_with_blocks_auto_records_the_choice_and_shows_it(
    registry_references: dict[str, int], staff: User, engine
) -> None:
    backbone, cache = engine
    head = services.head_train_now(actor=staff, backbone=backbone, cache=cache)

    choice = head.metrics["block_choice"]
    assert head.blocks and set(head.blocks) <= set(range(backbone.num_blocks))
    assert 1 <= len(head.blocks) <= 3 and head.blocks == sorted(choice["blocks"])
    method = api_client(staff).get("/api/v1/heads/").json()["results"][0]["method"]
    assert method["blocks"] == head.blocks and method["blocks_chosen_by_training"] is True
    assert method["select_by"] == "logo" and method["class_weight"] == "balanced" and method["C"] > 0
    assert method["score_method"] in method["score_comparison"]
    assert set(method["score_comparison"]) >= {"msp", "log_msp", "max_logit", "energy", "mahalanobis"}

    client = Client()
    client.force_login(staff)
    page = client.get(f"/registry/heads/{head.version}/").content.decode()
    assert "chosen by this training on held-out OSCR" in page
    assert "held-out generators' open-set quality" in page and f"score {method['score_method']}" in page
    assert 'data-testid="score-comparison"' in page


def test_an_old_head_reads_as_the_defaults_of_its_time(staff: User) -> None:
    from webapp.registry.models import HeadVersion

    HeadVersion.objects.create(
        version=1, artifact="heads/v1.npz", head_kind="linear", classes=["real", "sdxl"], blocks=[8],
        backbone="ViT-S-16/random-seed0", pretrained=False, threshold=0.5,
        metrics={"accuracy": 0.9, "hyperparameters": {"head": "linear", "C": 10.0, "select_by": "accuracy"}},
    )  # fmt: skip
    method = api_client(staff).get("/api/v1/heads/").json()["results"][0]["method"]
    assert (method["blocks"], method["score_method"]) == ([8], "msp")
    assert (method["C"], method["select_by"]) == (10.0, "accuracy")
    assert method["feature_join"] == "concat" and method["blocks_chosen_by_training"] is False
