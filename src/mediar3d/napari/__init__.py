"""napari plugin: a dock widget that runs :func:`mediar3d.segment`, a reader, sample data.

Installed with the ``[napari]`` extra and discovered by napari through the npe2 manifest
``napari.yaml`` in this folder. Importing this package does not import napari or Qt; the
modules that need them (``_widget``, ``_reader``, ``_sample``) are loaded by napari on use.

* :mod:`mediar3d.napari._job` runs one segmentation with progress and cancellation (no Qt).
* :mod:`mediar3d.napari._layers` turns results into napari layer data (labels, RGB flows).
* :mod:`mediar3d.napari._widget` is the dock widget (magicgui, napari ``thread_worker``).
* :mod:`mediar3d.napari._reader` opens ``mediar3d segment`` outputs.
* :mod:`mediar3d.napari._sample` offers the bundled sample volume as sample data.
"""
