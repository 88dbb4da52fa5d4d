"""The whole-volume memory estimate: it bounds what a run allocates, and tracks the network grid."""

import tracemalloc

import numpy as np

from helpers import OracleNet2D, blob_volume

from mediar3d.inference import run_segmentation
from mediar3d.inference import memory
from mediar3d.inference.memory import estimate_peak_bytes, network_voxels
from mediar3d.io.memory import available_memory, physical_memory
from mediar3d.postprocess import follow


def test_estimate_bounds_the_arrays_a_run_allocates(monkeypatch):
    """tracemalloc sees NumPy's allocations (not torch's): the run's arrays stay under the estimate
    without its runtime and network terms, and take most of it (a float32 pipeline would not fit)."""
    monkeypatch.setattr(memory, "ACTIVATION_BYTES_PER_PIXEL", 0)
    monkeypatch.setattr(follow, "FIELD_SLAB_VOXELS", 4096)  # slabs as small, relative to V, as on a large volume
    image, truth = blob_volume((32, 96, 96))
    shape, tile, batch, net = image.shape, 64, 4, OracleNet2D()
    options = dict(progress=False, tile=tile, batch_size=batch, intensity_range=(0.0, 1.0))
    run_segmentation(image[:8, :32, :32], net, **options)  # imports and compiled kernels first
    tracemalloc.start()
    try:
        image = image.copy()  # the input counts too
        labels = run_segmentation(image, net, **options).labels
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels.max() == truth.max()
    data = estimate_peak_bytes(shape, input_itemsize=4, foreground=float(np.mean(truth > 0)), tile=tile,
                               batch_size=batch, runtime=0)
    assert 0.6 * data < peak <= 1.1 * data


def test_estimate_follows_the_network_grid():
    assert network_voxels((32, 100, 100), anisotropy=2.0, scale=1.5) == 96 * 150 * 150
    assert network_voxels((100, 100), anisotropy=2.0, scale=1.5) == 150 * 150  # an image: no z
    shape = (64, 512, 512)
    base = estimate_peak_bytes(shape, runtime=0, tile=256)
    zoomed = estimate_peak_bytes(shape, anisotropy=2.0, scale=1.5, runtime=0, tile=256)
    assert 3.5 < zoomed / base < 2 * 1.5**3  # the grid grows 6.75x; the input and batch terms less
    assert estimate_peak_bytes(shape, tile=512) > estimate_peak_bytes(shape, tile=256)  # larger network calls
    assert estimate_peak_bytes(shape, keep_flows=True, tile=256) > estimate_peak_bytes(shape, tile=256)


def test_available_memory_is_known_and_below_the_total():
    assert 0 < available_memory() <= physical_memory()
