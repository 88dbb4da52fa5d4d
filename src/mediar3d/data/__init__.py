"""Data: synthetic nuclei volumes (``synthetic``), dataset mapping, reading its image/label pairs
(``pairs``), 3D -> 2D slicing and the percentile normalisation shared by training and inference
(``normalize``). Nothing here imports MONAI.

``mediar3d.data.synthetic.make_nuclei_volume`` makes deterministic (image, labels) volumes;
``random_nuclei_volume`` draws diverse settings for training data.
"""
