"""Data: synthetic nuclei volumes (``synthetic``), dataset mapping and 3D -> 2D slicing.

``mediar3d.data.synthetic.make_nuclei_volume`` makes deterministic (image, labels) volumes;
``random_nuclei_volume`` draws diverse settings for training data.
"""
