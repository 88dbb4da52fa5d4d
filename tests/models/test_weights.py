"""Weight files: local paths and file:// URLs with a sha256-checked cache; pretrained encoder layouts."""

from __future__ import annotations

import hashlib

import pytest
import torch
from segmentation_models_pytorch.encoders import get_encoder

from mediar3d.errors import ModelError
from mediar3d.models import create_model, resolve_weights, strip_prefixes
from mediar3d.models.hiera import HieraEncoder
from mediar3d.models.registry import KWARGS_ATTR

from .small import MICRO_HIERA, SMALL_CONFIGS


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "src" / "weights.pt"
    path.parent.mkdir()
    torch.save({"w": torch.arange(6.0)}, path)
    return path


def test_local_path_is_returned_and_checked(weights_file):
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert resolve_weights(weights_file) == weights_file
    assert resolve_weights(str(weights_file), sha256=digest[:12]) == weights_file
    with pytest.raises(ModelError, match="expected 00000000"):
        resolve_weights(weights_file, sha256="00000000")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_weights(weights_file.with_name("other.pt"))
    with pytest.raises(ModelError, match="not a hex digest"):
        resolve_weights(weights_file, sha256="xyz")


def test_file_url_is_downloaded_once_into_the_cache(weights_file, tmp_path):
    cache = tmp_path / "cache"
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    got = resolve_weights(weights_file.as_uri(), sha256=digest, cache_dir=cache)
    assert got == cache / "weights.pt"
    assert got.read_bytes() == weights_file.read_bytes()
    weights_file.unlink()  # the second call must not need the source any more
    assert resolve_weights(weights_file.as_uri(), sha256=digest, cache_dir=cache) == got
    assert sorted(p.name for p in cache.iterdir()) == ["weights.pt"]


def test_url_with_wrong_digest_leaves_nothing_in_the_cache(weights_file, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="sha256"):
        resolve_weights(weights_file.as_uri(), sha256="0123456789abcdef", cache_dir=cache)
    assert not any(cache.iterdir())


def test_stale_cached_file_is_replaced(weights_file, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "weights.pt").write_bytes(b"stale")
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    got = resolve_weights(weights_file.as_uri(), sha256=digest, cache_dir=cache)
    assert got.read_bytes() == weights_file.read_bytes()


def test_missing_url_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="could not download"):
        resolve_weights((tmp_path / "nothing.pt").as_uri(), cache_dir=tmp_path / "cache")


def test_strip_prefixes_only_when_every_key_has_it():
    t = torch.zeros(1)
    assert strip_prefixes({"module._orig_mod.a": t, "module._orig_mod.b": t}) == {"a": t, "b": t}
    assert set(strip_prefixes({"module.a": t, "b": t})) == {"module.a", "b"}


def test_mit_imagenet_file_initialises_a_grey_mediar(tmp_path):
    torch.manual_seed(0)
    rgb = get_encoder("mit_b0", in_channels=3, depth=5, weights=None).eval()
    state = {f"module.{k}": v for k, v in rgb.state_dict().items()}
    state["module.head.weight"] = torch.zeros(1000, 256)  # ImageNet classifier, to be dropped
    state["module.head.bias"] = torch.zeros(1000)
    torch.save({"state_dict": state}, tmp_path / "mit_b0.pth")
    net = create_model("mediar", **SMALL_CONFIGS["mediar"], encoder_weights=str(tmp_path / "mit_b0.pth")).eval()
    assert "encoder_weights" not in getattr(net, KWARGS_ATTR)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        grey = net.encoder(x)[2:]
        replicated = rgb(x.repeat(1, 3, 1, 1))[2:]
    for a, b in zip(grey, replicated):
        assert torch.allclose(a, b, atol=1e-4)


def test_safetensors_files_are_read_and_truncation_is_reported(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = get_encoder("mit_b0", in_channels=3, depth=5, weights=None)
    save_file(rgb.state_dict(), str(tmp_path / "model.safetensors"))  # smp-hub layout
    net = create_model("mediar", **SMALL_CONFIGS["mediar"], encoder_weights=str(tmp_path / "model.safetensors"))
    assert torch.equal(net.encoder.block1[0].attn.q.weight, rgb.block1[0].attn.q.weight)
    assert torch.allclose(net.encoder.patch_embed1.proj.weight, rgb.patch_embed1.proj.weight.sum(1, keepdim=True))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="cut.safetensors.*truncated or corrupt"):
        create_model("mediar", **SMALL_CONFIGS["mediar"], encoder_weights=str(tmp_path / "cut.safetensors"))


def test_wrong_mit_file_is_a_model_error(tmp_path):
    torch.save({"patch_embed1.proj.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="missing key"):
        create_model("mediar", **SMALL_CONFIGS["mediar"], encoder_weights=str(tmp_path / "bad.pth"))


def _sam2_checkpoint(encoder: HieraEncoder) -> dict:
    """Write `encoder` in SAM2's layout: image_encoder.trunk.* (mlp.layers.N) and image_encoder.neck.*."""
    model = {}
    for key, value in encoder.trunk.state_dict().items():
        key = key.replace("mlp.fc1", "mlp.layers.0").replace("mlp.fc2", "mlp.layers.1")
        model[f"image_encoder.trunk.{key}"] = value
    for key, value in encoder.neck.state_dict().items():
        model[f"image_encoder.neck.{key}"] = value
    model["sam_mask_decoder.conv_s0.weight"] = torch.zeros(2)  # other SAM2 parts are ignored
    return {"model": model}


def test_sam2_checkpoint_initialises_trunk_and_neck_of_a_grey_model(tmp_path):
    torch.manual_seed(0)
    rgb = HieraEncoder("tiny", in_channels=3, trunk_kwargs=MICRO_HIERA).eval()
    torch.save(_sam2_checkpoint(rgb), tmp_path / "sam2_hiera_tiny.pt")
    net = create_model("mediar-sam-light", **SMALL_CONFIGS["mediar-sam-light"],
                       encoder_weights=str(tmp_path / "sam2_hiera_tiny.pt")).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        grey = net.encoder(x)
        replicated = rgb(x.repeat(1, 3, 1, 1))
    assert len(grey) == 4 and all(f.shape[1] == 256 for f in grey)
    for a, b in zip(grey, replicated):
        assert torch.allclose(a, b, atol=1e-4)


def test_sam2_file_for_another_size_is_a_model_error(tmp_path):
    torch.save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1, 96, 7, 7)}}, tmp_path / "s.pt")  # full tiny
    with pytest.raises(ModelError, match="do not fit"):
        create_model("mediar-sam", **SMALL_CONFIGS["mediar-sam"], encoder_weights=str(tmp_path / "s.pt"))
