"""napari test set-up: offscreen Qt, napari's fixtures, and notification capture.

Qt's offscreen platform has no OpenGL context. Nothing is drawn in these tests, but napari
asks OpenGL for two capabilities when a layer gets its vispy visual; on the offscreen
platform those two queries are answered with fixed, common values.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("napari", reason="the napari extra is not installed (pip install 'mediar3d[napari]')")


@pytest.fixture(autouse=True)
def _no_opengl_queries(monkeypatch):
    if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        return
    import napari._vispy.canvas as canvas
    import napari._vispy.layers.base as base
    import napari._vispy.layers.image as image
    import napari._vispy.layers.labels as labels
    import napari._vispy.utils.gl as gl

    for module in (gl, image):
        monkeypatch.setattr(module, "get_gl_extensions", lambda: "GL_ARB_texture_float")
    for module in (gl, image, base, labels, canvas):
        monkeypatch.setattr(module, "get_max_texture_sizes", lambda: (16384, 2048))


@pytest.fixture
def notifications():
    """List that collects the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
