"""Dataset mapping JSON: pairing by any naming, seeded split, validation, round trip."""

import json
from pathlib import Path

import pytest

from mediar3d.data.mapping import (load_mapping, mapping_from_dict, pair_files, save_mapping)
from mediar3d.errors import ConfigError, InputError


def _touch(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        (folder / name).write_bytes(b"")
        out.append(folder / name)
    return out


@pytest.mark.parametrize("images, labels", [
    (["a.tif", "b.tif"], ["a.tif", "b.tif"]),                                    # same stems
    (["cell_01_img.tif", "cell_02_img.tif"], ["cell_01_masks.tif", "cell_02_masks.tif"]),  # role words
    (["t000.tif", "t007.tif"], ["man_seg000.tif", "man_seg007.tif"]),            # CTC numbering
    (["raw-3.ome.tif", "raw-12.ome.tif"], ["label_12.tiff", "label_3.tiff"]),    # numbers only, any order
])
def test_pairing_rules(tmp_path, images, labels):
    imgs = _touch(tmp_path / "i", images)
    labs = _touch(tmp_path / "l", labels)
    pairs = pair_files(imgs, labs)
    assert len(pairs) == 2
    for img, lab in pairs:
        digits_i = "".join(c for c in img.name if c.isdigit()) or img.stem
        digits_l = "".join(c for c in lab.name if c.isdigit()) or lab.stem
        assert int(digits_i) == int(digits_l) if digits_i.isdigit() else digits_i == digits_l


def test_images_without_labels_are_left_out(tmp_path):
    imgs = _touch(tmp_path / "i", ["t000.tif", "t001.tif", "t002.tif"])
    labs = _touch(tmp_path / "l", ["man_seg001.tif"])
    assert pair_files(imgs, labs) == [(imgs[1], labs[0])]


def test_unpairable_names_raise_with_a_hint(tmp_path):
    imgs = _touch(tmp_path / "i", ["alpha.tif", "beta.tif"])
    labs = _touch(tmp_path / "l", ["gamma.tif", "delta.tif"])
    with pytest.raises(InputError, match="pair_by='order'"):
        pair_files(imgs, labs)
    assert len(pair_files(imgs, labs, pair_by="order")) == 2


def _mapping_obj(tmp_path, n=10, **extra):
    _touch(tmp_path / "d" / "im", [f"x{i}.tif" for i in range(n)])
    _touch(tmp_path / "d" / "gt", [f"x{i}_gt.tif" for i in range(n)])
    return {"seed": 3, "val_fraction": 0.3,
            "datasets": [{"name": "d", "images": "d/im/*.tif", "labels": "d/gt/*.tif", **extra}]}


def test_split_is_seeded_disjoint_and_stable(tmp_path):
    obj = _mapping_obj(tmp_path)
    first = mapping_from_dict(obj, tmp_path)
    again = mapping_from_dict(obj, tmp_path)
    other = mapping_from_dict({**obj, "seed": 4}, tmp_path)
    val = [p.image.name for _, p in first.pairs("val")]
    train = [p.image.name for _, p in first.pairs("train")]
    assert len(val) == 3 and len(train) == 7 and not set(val) & set(train)
    assert val == [p.image.name for _, p in again.pairs("val")]
    assert val != [p.image.name for _, p in other.pairs("val")]


def test_save_and_load_round_trip_with_relative_paths(tmp_path):
    mapping = mapping_from_dict(_mapping_obj(tmp_path, probability=0.5, supervision={"mode": "dilate", "decay": "gaussian"}),
                                tmp_path)
    path = save_mapping(mapping, tmp_path / "out" / "map.json")
    text = path.read_text()
    assert str(tmp_path) not in text                          # no absolute paths
    loaded = load_mapping(path)
    assert [(p.image, p.label, p.split) for _, p in loaded.pairs()] == [(p.image, p.label, p.split) for _, p in mapping.pairs()]
    d = loaded.datasets[0]
    assert d.probability == 0.5 and d.supervision.mode == "dilate" and d.supervision.decay == "gaussian"


@pytest.mark.parametrize("change, error, match", [
    ({"colour": 1}, ConfigError, "colour"),
    ({"supervision": {"mode": "sparse"}}, ConfigError, "sparse"),
    ({"supervision": {"mode": "dilate", "kernel": 4}}, ConfigError, "odd"),
    ({"orientations": ["z", "w"]}, ConfigError, "'w'"),
    ({"labels": "d/none/*.tif"}, InputError, "no files match"),
])
def test_bad_datasets_raise_clear_errors(tmp_path, change, error, match):
    obj = _mapping_obj(tmp_path)
    obj["datasets"][0].update(change)
    with pytest.raises(error, match=match):
        mapping_from_dict(obj, tmp_path)


def test_missing_listed_file_and_partial_probabilities(tmp_path):
    obj = {"datasets": [{"name": "a", "pairs": [{"image": "nope.tif", "label": "nope_gt.tif"}]}]}
    with pytest.raises(InputError, match="nope.tif"):
        mapping_from_dict(obj, tmp_path)
    obj = _mapping_obj(tmp_path, probability=0.2)
    obj["datasets"].append({**obj["datasets"][0], "name": "b", "probability": None})
    with pytest.raises(ConfigError, match="every dataset or for none"):
        mapping_from_dict(obj, tmp_path)


def test_load_mapping_reports_bad_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_mapping(path)
    path.write_text(json.dumps({"datasets": []}))
    with pytest.raises(ConfigError, match="non-empty"):
        load_mapping(path)


@pytest.mark.parametrize("value", [0, -3, "big", True])
def test_pair_diameter_must_be_a_positive_number(tmp_path, value):
    import json as _json

    from mediar3d.data.mapping import load_mapping
    from mediar3d.errors import ConfigError

    path = tmp_path / "m.json"
    path.write_text(_json.dumps({"datasets": [{"name": "d", "pairs": [
        {"image": "a.tif", "label": "b.tif", "diameter": value}]}]}))
    with pytest.raises(ConfigError, match="diameter"):
        load_mapping(path)


@pytest.mark.parametrize("value", [[1, 1], [2, 1], [0], "0,1", [0, float("nan")], [True, 2]])
def test_pair_intensity_range_must_be_low_below_high(tmp_path, value):
    from mediar3d.data.mapping import load_mapping
    from mediar3d.errors import ConfigError

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"datasets": [{"name": "d", "pairs": [
        {"image": "a.tif", "label": "b.tif", "intensity_range": value}]}]}))
    with pytest.raises(ConfigError, match="intensity_range"):
        load_mapping(path)
