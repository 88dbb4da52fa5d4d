"""Data: synthetic nuclei volumes (``synthetic``), dataset mapping, 3D -> 2D slicing and the
percentile normalisation shared by training and inference (``normalize``).

``mediar3d.data.synthetic.make_nuclei_volume`` makes deterministic (image, labels) volumes;
``random_nuclei_volume`` draws diverse settings for training data.
"""
