"""mediar3d: 3D instance segmentation of cells and nuclei (Mediar3D)."""

__version__ = "0.1.0"
