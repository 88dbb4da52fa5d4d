"""Block geometry: cores tile the volume once, extents clip, sizes follow the memory budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediar3d.distributed import BlockGrid, choose_block_size, default_halo, should_use_blocks
from mediar3d.distributed.grid import intersect
from mediar3d.errors import ConfigError

pytestmark = pytest.mark.dask


@pytest.mark.parametrize("shape,block", [((10, 17, 23), (4, 8, 5)), ((5, 5, 5), 7), ((9, 1, 30), (3, 1, 30))])
def test_cores_cover_every_voxel_exactly_once(shape, block):
    grid = BlockGrid.create(shape, block, 2)
    hits = np.zeros(shape, np.int32)
    for index in grid.indices():
        hits[grid.core(index)] += 1
        ext = grid.extent(index)
        assert intersect(ext, grid.core(index)) == grid.core(index)
        for s, n in zip(ext, shape):
            assert 0 <= s.start and s.stop <= n
    assert (hits == 1).all()
    assert len(list(grid.indices())) == len(grid) == math.prod(grid.nblocks)
    assert [grid.flat(i) for i in grid.indices()] == list(range(len(grid)))


def test_extent_is_core_grown_by_halo_inside_the_volume():
    grid = BlockGrid.create((30, 30, 30), 10, (2, 3, 4))
    assert grid.extent((1, 1, 1)) == (slice(8, 22), slice(7, 23), slice(6, 24))
    assert grid.extent((0, 0, 2)) == (slice(0, 12), slice(0, 13), slice(16, 30))
    assert len(list(grid.neighbours((1, 1, 1)))) == 26
    assert len(list(grid.neighbours((0, 0, 0)))) == 7


def test_default_halo_scales_with_diameter_and_anisotropy():
    assert default_halo(20) == (30, 30, 30)
    hz, hy, hx = default_halo(20, anisotropy=3.0)
    assert hy == hx == 30 and hz == 10
    with pytest.raises(ConfigError):
        default_halo(0)


def test_block_size_fits_the_budget():
    shape, halo = (500, 2000, 2000), (20, 20, 20)
    budget = 2 * 2**30
    bs = choose_block_size(shape, halo, memory_limit=budget, bytes_per_voxel=64)
    ext = math.prod(b + 2 * h for b, h in zip(bs, halo))
    assert ext * 64 <= budget
    bigger = tuple(b + 16 for b in bs)
    assert math.prod(b + 2 * h for b, h in zip(bigger, halo)) * 64 > budget
    assert choose_block_size((10, 20, 30), (2, 2, 2), memory_limit=2**40) == (10, 20, 30)


def test_should_use_blocks_compares_estimate_with_memory():
    assert should_use_blocks((100, 100, 100), memory_limit=10**6 * 64 * 2 + 1, bytes_per_voxel=64) is False
    assert should_use_blocks((100, 100, 100), memory_limit=10**6 * 64, bytes_per_voxel=64) is True
    assert should_use_blocks((2, 100, 100, 100), memory_limit=10**6 * 64, bytes_per_voxel=64) is True


@pytest.mark.parametrize("kwargs", [dict(block_size=0, halo=1), dict(block_size=4, halo=-1), dict(block_size=(4, 4), halo=1)])
def test_bad_grid_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        BlockGrid.create((8, 8, 8), **kwargs)


@pytest.mark.parametrize("model_d,d,aniso", [(17.0, 8.1, 1.0), (30.0, 41.0, 2.7), (11.0, 11.0, 3.3), (None, None, 1.9)])
def test_snapped_zoom_puts_every_block_on_one_grid(model_d, d, aniso):
    from mediar3d.distributed.blockfns import snap_scale

    new_d, new_a, q = snap_scale(model_d, d, aniso)
    s = model_d / new_d if model_d else 1.0
    factors = np.array([new_a * s, s, s])
    old_s = model_d / d if model_d else 1.0
    assert np.allclose(factors, [aniso * old_s, old_s, old_s], rtol=1 / 16 + 1e-9)
    # a block starting at k*q with size m*q zooms to whole voxels: factor*q is an integer
    np.testing.assert_allclose(factors * q, np.round(factors * q), atol=1e-9)
    assert (q == 1) == (d == model_d and aniso == 1.0)
