"""Class lists from CSV files (classes.py): the shipped 42 mammals, custom lists, bad files, and
a custom list carried through the dump matcher, the API search, a build, the reader, the report
and the Hugging Face export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import (
    CLASS_NAMES,
    CLASSES,
    ClassesFileError,
    get_class,
    load_classes,
    parse_classes,
    read_classes,
)
from flickr_mammal.clean.config import CleanConfig
from flickr_mammal.dump.match import ClassMatcher
from flickr_mammal.dump.read import MetadataConfig
from flickr_mammal.shard_index import class_names
from pipelines import build_dataset
from tests.flickr_mammal import dump_fixtures as d

BIRDS = """name,search,synonyms,exclude
Robin,,redbreast,robin hood
blue tit,,bluetit;blue-tit,
crow,carrion crow,,
"""


def _file(tmp_path: Path, text: str, name: str = "classes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_is_the_42_mammals_in_label_order() -> None:
    assert len(CLASSES) == 42 and list(CLASS_NAMES) == sorted(CLASS_NAMES)
    assert [c.label for c in CLASSES] == list(range(42))
    assert get_class("dog").imagenet_indices == tuple(range(151, 269))
    assert get_class("Elephant").imagenet_indices == (101, 385, 386)
    assert get_class("lion").exclude == ("sea lion",)
    assert [c.name for c in parse_classes("zebra,cat")] == ["cat", "zebra"]
    assert load_classes(None).classes == CLASSES


def test_a_custom_file_gives_labels_by_row_and_its_texts(tmp_path: Path) -> None:
    birds = read_classes(_file(tmp_path, BIRDS))
    assert birds.names == ("robin", "blue tit", "crow")
    robin, tit, crow = birds.classes
    assert (robin.label, tit.label, crow.label) == (0, 1, 2)
    assert robin.texts == ("robin", "redbreast") and robin.exclude == ("robin hood",)
    assert tit.texts == ("blue tit", "bluetit", "blue-tit")
    assert crow.search_text == "carrion crow" and crow.imagenet_indices == ()
    assert [c.name for c in birds.parse("crow, Robin")] == ["robin", "crow"]
    with pytest.raises(KeyError, match="known classes: robin, blue tit, crow"):
        birds.get("cat")


@pytest.mark.parametrize(("text", "message"), [
    ("name\ncat\nCat\n", "'cat' and 'cat': duplicate class name"),
    ("name,search\ncat,\n \n,x\n", "line 4: empty class name"),
    ("name\ncat,x\n", "line 2: more fields than the header's 1"),
    ("name,synonyms\ncat,kitty\nkitty,\n", "'kitty' and 'cat': a text of both classes"),
    ("name\nsea lion\nsealion\n", "'sealion' and 'sea lion'"),
    ("name,search\ncrow,bird\nraven,Bird\n", "'raven' and 'crow': a text of both"),
    ("label\ncat\n", "no 'name' column"),
    ("name,colour\ncat,red\n", "unknown column(s) ['colour']"),
    ("name\n", "lists no class"),
    ("name,exclude\ncat,Cat\n", "both searched and excluded"),
    ("name,imagenet\ncat,12;x\n", "imagenet must be ;-separated integers"),
    ("name,synonyms\ncat,!!\n", "has no letter or digit"),
])
def test_bad_files_get_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ClassesFileError) as err:
        read_classes(_file(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClassesFileError, match="cannot read class file"):
        read_classes(tmp_path / "nope.csv")


def test_matcher_uses_synonyms_and_excludes(tmp_path: Path) -> None:
    birds = read_classes(_file(tmp_path, BIRDS))
    matcher = ClassMatcher(birds.classes, url_encoded=True)
    assert matcher.match("a+Redbreast+in+snow") == ("robin",)
    assert matcher.match("Robin+Hood+statue") == ()             # excluded phrase names nothing
    assert matcher.match("robin+hood+and+a+robin") == ("robin",)  # a robin on its own counts
    assert matcher.match("", "", "garden,blue-tit") == ("blue tit",)
    assert matcher.match("a+crow") == () and matcher.match("carrion+crow") == ("crow",)


def test_lion_excludes_sea_lion_even_alone() -> None:
    matcher = ClassMatcher([get_class("lion")], url_encoded=True)
    assert matcher.match("A+Sea+Lion+on+the+rocks") == ()
    assert matcher.match("lion", "sealion") == ("lion",)


def _dump_config(out: Path, dump: Path, **changes) -> BuildConfig:
    return BuildConfig(out=out, per_class=100, min_upload_date=d.LO, max_upload_date=d.HI,
                       stages=("search",), progress=False, metadata=MetadataConfig(str(dump)),
                       **changes)


def test_a_dump_build_searches_the_file_classes(tmp_path: Path) -> None:
    rows = [d.row(201, "Redbreast"), d.row(202, "robin+hood"), d.row(203, "two+crows"),
            d.row(204, "Carrion+Crow"), d.row(205, "blue+tit", tags="bluetit"),
            d.row(206, "cat")]
    dump = d.write_dump(rows, tmp_path / "dump.tsv")
    classes = _file(tmp_path, BIRDS)
    build(_dump_config(tmp_path / "out", dump, classes_file=str(classes),
                       clean=CleanConfig("none")))
    with Catalog.open(tmp_path / "out" / "catalog.sqlite") as cat:
        found = {r.photo_id: (r.class_name, r.label) for r in cat.records()}
    assert found == {"201": ("robin", 0), "204": ("crow", 2), "205": ("blue tit", 1)}


def test_cli_classes_file_and_its_errors(tmp_path: Path, capsys) -> None:
    dump = d.write_dump([d.row(301, "redbreast")], tmp_path / "dump.tsv")
    classes = _file(tmp_path, BIRDS)
    base = ["--out", str(tmp_path / "out"), "--metadata", str(dump), "--stages", "search",
            "--min-upload-date", str(d.LO), "--max-upload-date", str(d.HI), "--no-progress",
            "--classes-file", str(classes)]
    assert build_dataset.main([*base, "--classifier", "none", "--classes", "robin"]) == 0
    assert build_dataset.main([*base, "--classes", "robin"]) == 2
    assert "use --classifier none with this class file" in capsys.readouterr().err
    bad = _file(tmp_path, "name\ncrow\ncrow\n", "bad.csv")
    assert build_dataset.main([*base[:-1], str(bad), "--classifier", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "duplicate class name" in err and "\n" not in err


def test_a_file_of_mammals_keeps_cleaning(tmp_path: Path) -> None:
    mammals = _file(tmp_path, "name,imagenet\ncat,281;282;283;284;285\ndog,151\n")
    with pytest.raises(ValueError, match="not of dog"):
        BuildConfig(out=tmp_path, stages=("shard",), classes_file=str(mammals))
    ok = _file(tmp_path, "name,imagenet\ncat,281;282;283;284;285\n", "ok.csv")
    config = BuildConfig(out=tmp_path, stages=("shard",), classes_file=str(ok))
    assert config.classes == ("cat",)


# ---- a whole build under another class list ---------------------------------------------------
BIRD_NAMES = ["robin", "blue tit", "crow"]


@pytest.fixture(scope="module")
def bird_build(synthetic_build, tmp_path_factory) -> Path:
    """The synthetic build under a bird class list: the fake Flickr's cat, dog and zebra photos,
    searched as robin, blue tit and crow (labels 0, 1, 2). Read-only."""
    classes = tmp_path_factory.mktemp("birds") / "birds.csv"
    classes.write_text("name,search\nrobin,cat\nblue tit,dog\ncrow,zebra\n", encoding="utf-8")
    return synthetic_build("--classes-file", str(classes), "--classes", "all")


def test_a_custom_class_build_loads_and_reports_its_own_classes(bird_build: Path) -> None:
    from flickr_mammal.reader import load_partitions

    index = pd.read_parquet(bird_build / "shards" / "shards.parquet")
    assert class_names(index) == tuple(BIRD_NAMES)
    parts = load_partitions(bird_build, by="continent", split="train")
    assert list(parts.counts.columns) == BIRD_NAMES and parts.class_names == tuple(BIRD_NAMES)
    held = index[(index["split"] == "train") & ~index["continent"].isin(["unknown", ""])
                 & index["continent"].notna()]
    assert parts.counts.sum().to_dict() == held["class_name"].value_counts().to_dict()
    table = pd.read_csv(bird_build / "report" / "class_by_continent.csv", index_col="class_name")
    assert table.index.tolist() == BIRD_NAMES


def test_a_custom_class_build_exports_to_hf_with_its_own_class_label(bird_build: Path,
                                                                     tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from flickr_mammal.hf import to_hf_dataset
    from pipelines import export_dataset

    train = to_hf_dataset(bird_build, "train", cache_dir=tmp_path / "cache")
    assert isinstance(train.features["label"], datasets.ClassLabel)
    assert train.features["label"].names == BIRD_NAMES
    index = pd.read_parquet(bird_build / "shards" / "shards.parquet").set_index("key")
    for row in train.select(range(5)):
        assert train.features["label"].int2str(row["label"]) == index.loc[row["key"],
                                                                          "class_name"]
    assert export_dataset.main([str(bird_build), str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    label = next(f for f in header["dataset_info"]["features"] if f["name"] == "label")
    assert label["dtype"]["class_label"]["names"] == {"0": "robin", "1": "blue tit", "2": "crow"}


def test_a_study_on_a_custom_class_build_sizes_its_model_by_that_list(bird_build: Path) -> None:
    from training.study.data_specs import dataset_spec

    spec = dataset_spec({"name": "flickr_mammal", "root": str(bird_build), "image_size": 32,
                         "val_samples": 8, "num_workers": 0})
    train, _, (classes, channels, crop) = spec.partitions("by_attribute", {}, 2, 0.0, seed=0)
    assert (classes, channels, crop) == (len(BIRD_NAMES), 3, 32) and len(train) == 2
