"""Stitching rules: ownership by centre, majority-overlap links, components, per-block remaps."""

from __future__ import annotations

import numpy as np
import pytest

from mediar3d.distributed import BlockGrid
from mediar3d.distributed.stitch import (
    block_remaps,
    centroids,
    fragment_links,
    merge_components,
    prepare_block,
    reference_stitch,
)

pytestmark = pytest.mark.dask


def test_centroids_match_scipy(balls):
    from scipy import ndimage as ndi

    labels = balls((12, 20, 16), 8, seed=3)
    n = int(labels.max())
    ours = centroids(labels, n)
    theirs = np.array(ndi.center_of_mass(labels > 0, labels, range(1, n + 1)))
    np.testing.assert_allclose(ours[1:], theirs, atol=1e-9)
    assert np.isnan(ours[0]).all()


def test_every_object_is_owned_by_exactly_one_block(balls):
    # balls centred on a block corner, edges and faces, plus random ones
    labels = balls((24, 32, 32), 25, radius=(3, 5), seed=1, centres=[(12, 16, 16), (12, 16, 5), (5, 16, 25)])
    grid = BlockGrid.create(labels.shape, (12, 16, 16), 10)
    owners: dict[int, int] = {}
    for index in grid.indices():
        ext = labels[grid.extent(index)]
        block = prepare_block(ext, grid, index)
        for k in range(1, block.n + 1):
            gt = int(np.unique(ext[block.labels == k])[0])
            assert np.unique(ext[block.labels == k]).size == 1
            if block.owned[k]:
                owners[gt] = owners.get(gt, 0) + 1
    assert owners == {int(i): 1 for i in np.unique(labels) if i}


def _piece(other, owned_other, b=7):
    return [(b, (slice(None),) * 3, np.asarray(other, np.int32).reshape(1, 1, -1), np.asarray(owned_other, bool))]


@pytest.mark.parametrize("covered,linked", [(6, True), (5, True), (4, False), (1, False)])
def test_fragment_links_to_owned_object_only_by_majority_overlap(covered, linked):
    core = np.ones((1, 1, 10), np.int32)  # one fragment (not owned here)
    other = [1] * covered + [0] * (10 - covered)
    links = fragment_links(core, np.array([False, False]), _piece(other, [False, True]))
    assert (links.tolist() == [[1, 7, 1]]) == linked
    assert len(links) == int(linked)


def test_owned_objects_never_link_and_each_fragment_links_once():
    core = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 2], np.int32).reshape(1, 1, -1)
    owned = np.array([False, True, False])  # 1 is owned here, 2 is a fragment
    # neighbour 7 sees our owned object 1; neighbour 8 owns two objects over fragment 2
    p7 = _piece([1] * 4 + [0] * 6, [False, True], b=7)
    p8 = _piece([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], [False, True, True], b=8)
    links = fragment_links(core, owned, p7 + p8)
    assert links.tolist() == [[2, 8, 2]]


def test_unowned_fragments_join_by_iou():
    core = np.ones((1, 1, 10), np.int32)
    good = fragment_links(core, np.array([False, False]), _piece([1] * 9 + [0], [False, False]))
    bad = fragment_links(core, np.array([False, False]), _piece([1] * 4 + [0] * 6, [False, False]))
    assert good.tolist() == [[1, 7, 1]] and bad.size == 0


def test_components_hold_at_most_one_root():
    rng = np.random.default_rng(0)
    n = 400
    owned = rng.random(n) < 0.3
    target = np.where(owned, -1, rng.integers(0, n, n))
    target[target == np.arange(n)] = -1
    src = np.flatnonzero(target >= 0)
    links = np.stack([src + 1, target[src] + 1], 1)
    merges = merge_components(links)
    final = np.arange(1, n + 1)
    final[merges.sources - 1] = merges.targets
    roots = (target < 0)
    for comp in np.unique(final):
        assert roots[final == comp].sum() <= 1
    assert (merges.targets < merges.sources).all()


def test_block_remaps_agree_with_whole_volume_reference():
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 30, size=12)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    total = int(counts.sum())
    links = rng.integers(1, total + 1, size=(40, 2))
    merges = merge_components(links)
    remaps = block_remaps(offsets, counts, merges)
    # a "volume": each block a row of its local labels 0..n, padded with background
    width = int(counts.max()) + 1
    local = np.zeros((len(counts), width), np.int64)
    for b, n in enumerate(counts):
        local[b, : n + 1] = np.arange(n + 1)
    ours = np.stack([remaps[b].table(int(n))[local[b]] if n else np.zeros(width, np.int64)
                     for b, n in enumerate(counts)])
    glob = np.where(local > 0, local + offsets[:, None], 0)
    ref = reference_stitch(glob[None], links)[0]
    np.testing.assert_array_equal(ours, ref)
    assert ours.max() == total - merges.sources.size
