"""Augmentations: seeded, image and labels move together, targets made after augmentation."""

import numpy as np
import pytest

from mediar3d.data.mapping import Supervision
from mediar3d.errors import ConfigError
from mediar3d.flows import masks_to_flows
from mediar3d.training.transforms import (AugmentConfig, IntensityDiversificationd, build_train_transforms,
                                          finish_sample, make_targets)

from training_helpers import blob_image


def _sample(shape=(40, 52), seed=0):
    image, labels = blob_image(shape, 4, 6.0, seed)
    return {"image": (labels > 0).astype(np.float32)[None], "label": labels[None],
            "valid": np.ones((1, *shape), np.float32)}


def _spatial_only(**kw):
    return AugmentConfig(diversify_prob=0, noise_prob=0, contrast_prob=0, smooth_prob=0, histogram_prob=0,
                         sharpen_prob=0, **kw)


def test_same_seed_same_sample_other_seed_other_sample():
    transform = build_train_transforms(32)
    out = []
    for seed in (5, 6, 5):
        transform.set_random_state(seed=seed)
        out.append(finish_sample(transform(_sample()), Supervision()))
    assert all(np.array_equal(out[0][k], out[2][k]) for k in out[0])
    assert not np.array_equal(out[0]["image"], out[1]["image"])


@pytest.mark.parametrize("seed", range(6))
def test_image_and_labels_share_flips_rotations_and_crops(seed):
    transform = build_train_transforms(32, _spatial_only(zoom_prob=0.0, flip_prob=1.0, rot90_prob=1.0))
    transform.set_random_state(seed=seed)
    out = transform(_sample(seed=seed))
    image = np.asarray(out["image"])[0]
    labels = np.asarray(out["label"])[0]
    assert image.shape == (32, 32)
    assert np.array_equal(image > 0.5, labels > 0)


def test_zoom_keeps_image_and_labels_aligned():
    transform = build_train_transforms(64, _spatial_only(zoom_prob=1.0, zoom_range=(1.4, 1.5)))
    transform.set_random_state(seed=1)
    out = transform(_sample())
    image = np.asarray(out["image"])[0]
    labels = np.asarray(out["label"])[0]
    agree = np.mean((image > 0.5) == (labels > 0))
    assert agree > 0.97
    assert set(np.unique(labels)) <= set(range(5))     # nearest: no new label values


def test_padding_is_outside_the_valid_region():
    transform = build_train_transforms(64, AugmentConfig(enabled=False))
    transform.set_random_state(seed=0)
    out = transform(_sample((30, 30)))
    valid = np.asarray(out["valid"])[0]
    assert valid.shape == (64, 64) and valid.sum() == 900


def test_intensity_diversification_scales_a_fraction_of_cells():
    image, labels = blob_image((64, 64), 10, 5.0, 3)
    ids = np.unique(labels)[1:]
    t = IntensityDiversificationd(prob=1.0, fraction=0.4, factors=(0.5, 0.5))
    t.set_random_state(seed=0)
    out = t({"image": image[None], "label": labels[None]})["image"][0]
    ratio = [float(np.median(out[labels == i] / image[labels == i])) for i in ids]
    assert sorted(ratio).count(0.5) == round(0.4 * len(ids))
    assert np.array_equal(out[labels == 0], image[labels == 0])


def test_targets_are_flows_of_the_augmented_labels():
    transform = build_train_transforms(32)
    transform.set_random_state(seed=3)
    sample = transform(_sample())
    done = finish_sample(sample, Supervision())
    labels = done["label"][0].numpy()
    expected = 5 * masks_to_flows(labels)
    assert np.allclose(done["target"][:2].numpy(), expected)
    assert np.array_equal(done["target"][2].numpy(), (labels > 0).astype(np.float32))


def test_make_targets_for_an_empty_slice():
    target, weight = make_targets(np.zeros((8, 8), np.int32), None, Supervision("dilate"))
    assert not target.any() and not weight.any()


def test_bad_augment_values_are_config_errors():
    with pytest.raises(ConfigError, match="zoom_prob"):
        AugmentConfig(zoom_prob=1.5)
    with pytest.raises(ConfigError, match="gamma_range"):
        AugmentConfig(gamma_range=(2.0, 1.0))


# ---- wiring: every augmentation of the default pipeline is applied ---------------------
_NO_INTENSITY = dict(diversify_prob=0.0, noise_prob=0.0, contrast_prob=0.0, smooth_prob=0.0, histogram_prob=0.0,
                     sharpen_prob=0.0)


def _one_blob(shape=(32, 32)):
    """One off-centre object: flips and rotations move it, a zoom changes its area."""
    labels = np.zeros(shape, np.int32)
    labels[4:12, 6:16] = 1
    return {"image": np.where(labels > 0, 0.8, 0.2).astype(np.float32)[None], "label": labels[None],
            "valid": np.ones((1, *shape), np.float32)}


def _outputs(config, seeds=range(12), make=_one_blob):
    transform = build_train_transforms(32, config)
    out = []
    for seed in seeds:
        transform.set_random_state(seed=seed)
        sample = transform(make())
        out.append((np.asarray(sample["image"])[0], np.asarray(sample["label"])[0]))
    return out


def test_default_pipeline_zooms():
    areas = {int((lab > 0).sum()) for _, lab in _outputs(AugmentConfig(flip_prob=0.0, rot90_prob=0.0, **_NO_INTENSITY))}
    assert len(areas - {80}) > 0  # some draws zoomed the 8 x 10 object


@pytest.mark.parametrize(("flip", "rot90"), [(1.0, 0.0), (0.0, 1.0)])
def test_default_pipeline_flips_and_rotates(flip, rot90):
    original = _one_blob()["label"][0] > 0
    config = AugmentConfig(zoom_prob=0.0, flip_prob=flip, rot90_prob=rot90, **_NO_INTENSITY)
    moved = [not np.array_equal(lab > 0, original) for _, lab in _outputs(config)]
    assert any(moved)
    if rot90:  # a rotation by 90 degrees turns the 8 x 10 box into 10 x 8
        boxes = {tuple(np.ptp(np.nonzero(lab), axis=1) + 1) for _, lab in _outputs(config)}
        assert (10, 8) in boxes


@pytest.mark.parametrize("name", ["diversify", "noise", "contrast", "smooth", "histogram", "sharpen"])
def test_default_pipeline_applies_each_intensity_augmentation(name):
    def textured():  # graded intensities (gamma and histogram shifts keep a two-level image) and 4 cells
        _, labels = blob_image((32, 32), 4, 5.0, 0)
        image = np.linspace(0.1, 0.9, 32 * 32, dtype=np.float32).reshape(32, 32)
        return {"image": image[None], "label": labels[None], "valid": np.ones((1, 32, 32), np.float32)}

    config = AugmentConfig(zoom_prob=0.0, flip_prob=0.0, rot90_prob=0.0, **{**_NO_INTENSITY, f"{name}_prob": 1.0})
    original = textured()["image"][0]
    assert any(not np.allclose(image, original, atol=1e-4) for image, _ in _outputs(config, range(3), textured))


@pytest.mark.parametrize("builder", ["2d", "3d"])
def test_augmentation_runs_without_monai_metadata_and_gives_the_same_numbers(builder, monkeypatch):
    """No MetaTensor reaches the transforms (tracking doubles the cost); the numbers and MONAI's setting stay."""
    from monai.data import MetaTensor, get_track_meta
    from monai.transforms import Compose

    from mediar3d.training.trainer3d import build_volume_transforms

    if builder == "2d":
        transform, sample = build_train_transforms(32), _sample()
    else:
        labels = np.stack([blob_image((40, 52), 4, 6.0, 1)[1]] * 12)
        transform = build_volume_transforms((8, 32, 32))
        sample = {"image": (labels > 0).astype(np.float32)[None], "label": labels[None],
                  "valid": np.ones((1, *labels.shape), np.float32)}
    last = type(transform.transforms[-1])
    call, seen = last.__call__, []

    def recording(self, data, *args, **kwargs):
        seen.append(isinstance(data["image"], MetaTensor))
        return call(self, data, *args, **kwargs)

    monkeypatch.setattr(last, "__call__", recording)
    transform.set_random_state(seed=3)
    plain = transform(dict(sample))
    tracked = Compose(transform.transforms)  # the same steps with MONAI's default tracking
    tracked.set_random_state(seed=3)
    reference = tracked(dict(sample))
    assert get_track_meta()  # restored after the call
    assert seen == [False, True]  # metadata tracked only in the reference run
    assert not any(isinstance(v, MetaTensor) for v in plain.values())
    for key in ("image", "label", "valid"):
        assert np.array_equal(np.asarray(plain[key]), np.asarray(reference[key]))
