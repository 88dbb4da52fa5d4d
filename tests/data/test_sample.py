"""The bundled sample volumes: two kinds, regenerated exactly by make_sample, unknown kinds refused."""

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.io import read_image, read_labels
from mediar3d.sample import VOXEL_SIZE, load_sample, make_sample, sample_path


def test_shipped_cells_sample_is_what_the_generator_makes(tmp_path):
    image_path, labels_path = make_sample(tmp_path, "cells")
    shipped, truth = load_sample("cells")
    assert shipped.data.shape == truth.shape == (24, 112, 112) and shipped.data.dtype == np.uint8
    assert tuple(shipped.voxel_size) == VOXEL_SIZE
    assert np.array_equal(read_image(image_path).data, shipped.data)
    assert np.array_equal(read_labels(labels_path), truth)
    assert 100 <= truth.max() <= 400
    assert sample_path("cells") != sample_path() == sample_path("nuclei")
    assert sample_path("cells").stat().st_size + sample_path("cells").with_name("cells_sample_truth.tif").stat().st_size < 1e6


def test_unknown_sample_kind_is_refused():
    with pytest.raises(InputError, match="sample 'cyto'.*nuclei, cells"):
        sample_path("cyto")
