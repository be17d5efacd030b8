"""flickr_mammal.clean.parallel on CPU: two processes judge disjoint chunks like one does."""

from collections import Counter
from pathlib import Path

from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from flickr_mammal.classes import CLASSES
from flickr_mammal.clean.parallel import clean_on_devices
from flickr_mammal.clean.stage import CleanConfig, Cleaner, clean_records
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status

LITE0 = "efficientnet_lite0_pypi"


def test_two_processes_judge_every_record_once_as_one_process_does(tmp_path: Path):
    layout = Layout.at(tmp_path)
    arrays = [skdata.chelsea(), load_sample_image("china.jpg"), skdata.coffee()]
    records = []
    for i, array in enumerate(arrays):
        photo_id = str(10 + i)
        path = layout.image_path(photo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        records += [PhotoRecord(photo_id, "o", c.name, c.label, 1.0, 2.0,
                                status=Status.DOWNLOADED) for c in CLASSES[:8]]
    config = CleanConfig(LITE0, device="cpu", batch_size=4, num_workers=0)
    one = {(r.photo_id, r.class_name): r for r in
           clean_records(records, layout.image_path, Cleaner.load(config), chunk_size=5)}
    two = list(clean_on_devices(iter(records), layout.image_path, config, ["cpu", "cpu"],
                                chunk_size=5))
    assert Counter((r.photo_id, r.class_name) for r in two) == Counter(one.keys())  # once each
    for r in two:
        assert (r.status, r.clean_rank) == (one[r.photo_id, r.class_name].status,
                                            one[r.photo_id, r.class_name].clean_rank)
    assert any(r.status is Status.KEPT for r in two)
