"""The name -> factory registry."""

from __future__ import annotations

import pytest

from mediar3d.errors import ModelError
from mediar3d.models import DEFAULT_MODEL, create_model, get_model_entry, list_models, register_model
from mediar3d.models.registry import ARCH_ATTR, KWARGS_ATTR

from .small import SMALL_CONFIGS


def test_thesis_networks_and_default_are_registered():
    names = list_models()
    for name in ("mediar", "mediar-sam", "mediar-sam-light", "unet-small"):
        assert name in names
    assert DEFAULT_MODEL in list_models(spatial_dims=2)
    assert names == sorted(names)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ModelError) as error:
        create_model("medar")
    message = str(error.value)
    assert "'medar'" in message
    for name in list_models():
        assert name in message


def test_unknown_option_names_the_option_and_the_valid_ones():
    with pytest.raises(ModelError, match=r"no option\(s\) 'chanels'.*channels"):
        create_model("unet-small", chanels=(8, 16))


def test_bad_option_values_are_model_errors():
    with pytest.raises(ModelError, match="mit_b9"):
        create_model("mediar", encoder="mit_b9")
    with pytest.raises(ModelError, match="huge"):
        create_model("mediar-sam-light", encoder="huge")
    with pytest.raises(ModelError, match="in_channels"):
        create_model("unet-small", in_channels=0)


def test_create_model_records_name_and_resolved_kwargs_without_init_weights():
    net = create_model("unet-small", **SMALL_CONFIGS["unet-small"])
    assert getattr(net, ARCH_ATTR) == "unet-small"
    recorded = getattr(net, KWARGS_ATTR)
    assert recorded == {"in_channels": 1, "channels": [8, 16, 32]}  # defaults filled in, tuples as lists
    assert "encoder_weights" not in getattr(create_model("mediar", **SMALL_CONFIGS["mediar"]), KWARGS_ATTR)


def test_registering_a_taken_name_fails():
    with pytest.raises(ModelError, match="registered twice"):
        register_model("unet-small")(lambda: None)


def test_re_registering_the_same_factory_replaces_it():
    """What importlib.reload does: the same module defines the same factory again."""
    from mediar3d.models import registry

    made = []
    try:
        for version in (1, 2):
            def factory(version=version):
                return version

            register_model("test-reloaded")(factory)
            made.append(factory)
        assert get_model_entry("test-reloaded").factory is made[1]
    finally:
        registry._REGISTRY.pop("test-reloaded", None)


def test_entries_carry_thesis_counts_and_dimensionality():
    assert get_model_entry("mediar").thesis_params_m == pytest.approx(121.30)
    assert get_model_entry("mediar-sam").thesis_params_m == pytest.approx(223.12)
    assert get_model_entry("mediar-sam-light").thesis_params_m == pytest.approx(219.79)
    assert {e.spatial_dims for e in list_models(verbose=True) if e.name in SMALL_CONFIGS} == {2}
    with pytest.raises(ModelError, match="valid names"):
        get_model_entry("nope")
