"""The napari dock widget: segment an image layer with `mediar3d.segment` in a worker thread.

The widget reads the settings, checks them (wrong ndim, no channel, missing checkpoint:
napari notifications, no layer added), then runs :func:`mediar3d.napari._job.run_job_and_measure` in a
napari ``thread_worker`` so the viewer stays responsive. A progress bar follows the
slices (or 3D windows) the network has done, as the pipeline reports them (a busy bar
while the diameter is being estimated); Cancel stops the run at the next network call.
The labels come back as a Labels layer on the image's scale and translation, with
`mediar3d.measure`'s per-object table as its ``features`` (micrometre columns when the layer
has a scale other than 1), optionally with the flows (RGB) and the cell probability.

"Fine-tune on these labels" adapts the chosen model to the image with a Labels layer of
a few annotated objects (:mod:`mediar3d.napari._finetune`, the workflow of ``mediar3d
finetune --image --labels``) in a worker thread, with step progress and Cancel; the
fine-tuned checkpoint then becomes the widget's model and the image is segmented with it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton,
                              SpinBox)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from mediar3d.errors import InputError, Mediar3DError, ModelError
from mediar3d.inference.predict import DEFAULT_MIN_SIZE
from mediar3d.io.naming import anisotropy_from_voxel_size
from mediar3d.napari._finetune import FineTuneRequest, run_finetune_job
from mediar3d.napari._job import SegmentationCancelled, SegmentRequest, run_job_and_measure
from mediar3d.napari._layers import flows_layer, labels_layer, probability_layer

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Model choices: (label shown, value passed to `segment`); CHECKPOINT asks for a file.
CHECKPOINT = "checkpoint file"
MODEL_CHOICES = (("nuclei (bundled default)", "default"), ("cells: stained membranes (bundled)", "cells"),
                 ("checkpoint file...", CHECKPOINT))
NO_CHANNEL = "none"


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int)  # slices / windows done, in all (-1: unknown)
    steps = Signal(int, int, float)  # fine-tuning steps done, planned, ETA seconds (-1: unknown)


def anisotropy_from_scale(scale: Any) -> float:
    """z step over the mean y/x step of a layer scale (..., z, y, x); 1.0 when not 3D or not positive."""
    scale = [float(s) for s in scale]
    return (anisotropy_from_voxel_size(scale[-3:]) if len(scale) >= 3 else None) or 1.0


class SegmentWidget(Container):
    """Dock widget: image layer + channel, model, anisotropy, diameter, thresholds, TTA -> labels."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._image = ComboBox(label="image", choices=self._image_choices,
                               tooltip="image layer to segment: (z, y, x), (y, x), or (c, z, y, x) with a channel")
        self._channel = ComboBox(label="channel", choices=self._channel_choices,
                                 tooltip="channel (first axis) of a 4D layer, or of the colours of an RGB layer")
        self._mode = ComboBox(label="mode", choices=self._mode_choices,
                              tooltip="3d: slices along z, y and x (Algorithm 1); z-only: z-slices stitched across z")
        self._model = ComboBox(label="model", choices=list(MODEL_CHOICES), value="default",
                               tooltip="the bundled default model, or a checkpoint written by mediar3d train")
        self._checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth *.safetensors", visible=False)
        self._anisotropy = FloatSpinBox(label="anisotropy", value=1.0, min=0.01, max=100.0, step=0.1,
                                        tooltip="z voxel size / xy voxel size (filled in from the layer's scale)")
        self._diameter = FloatSpinBox(label="diameter (px)", value=0.0, min=0.0, max=2000.0, step=1.0,
                                      tooltip="typical object diameter in pixels in the y/x plane; 0 = estimate")
        self._model_thresholds = CheckBox(text="model's thresholds", value=True,
                                          tooltip="use the thresholds stored in the model (unticked: the three below)")
        self._cellprob = FloatSpinBox(label="cellprob threshold", value=0.0, min=-12.0, max=12.0, step=0.25,
                                      enabled=False, tooltip="cell-probability logit threshold; lower finds more")
        self._flow = FloatSpinBox(label="flow threshold", value=0.4, min=0.0, max=10.0, step=0.05, enabled=False,
                                  tooltip="largest flow-consistency error a mask may have; higher keeps more")
        self._min_size = SpinBox(label="min size (voxels)", value=DEFAULT_MIN_SIZE, min=0, max=10_000_000, step=5,
                                 enabled=False, tooltip="smallest object kept, in input voxels; 0 keeps all")
        self._tta = CheckBox(text="test-time augmentation (4x slower)", value=False)
        self._add_flows = CheckBox(text="add flows layer", value=False)
        self._add_prob = CheckBox(text="add probability layer", value=False)
        self._run = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self._status = Label(value="")
        self._ft_labels = ComboBox(label="annotations", choices=self._labels_choices,
                                   tooltip="Labels layer with some objects of the image annotated (0 elsewhere)")
        self._ft_supervision = ComboBox(label="supervision", choices=["dilate", "roi", "full"], value="dilate",
                                        tooltip="dilate: a few objects annotated here and there; roi: every object "
                                                "inside a box; full: every object of the image")
        self._ft_minutes = FloatSpinBox(label="minutes", value=10.0, min=0.5, max=600.0, step=1.0,
                                        tooltip="time budget of the fine-tuning, threshold re-tuning included")
        self._ft_folder = FileEdit(label="fine-tune folder", mode="d", value=Path("runs") / "finetune-napari",
                                   tooltip="run folder (overwritten); model_best.pt is the fine-tuned model")
        self._ft_run = PushButton(text="Fine-tune on these labels")
        super().__init__(widgets=[
            self._image, self._channel, self._mode, self._model, self._checkpoint, self._anisotropy, self._diameter,
            self._model_thresholds, self._cellprob, self._flow, self._min_size, self._tta, self._add_flows,
            self._add_prob,
            self._run, self._ft_labels, self._ft_supervision, self._ft_minutes, self._ft_folder, self._ft_run,
            self._cancel, self._progress, self._status,
        ])
        #: TrainConfig values for fine-tuning that win over the small-data plan (tests make runs tiny).
        self.finetune_overrides: dict[str, Any] = {}
        self._resegment = False
        self._worker = None
        self._cancel_event = threading.Event()
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.steps.connect(self._on_steps)
        self._ft_run.clicked.connect(self.finetune)
        self._image.changed.connect(self._on_image_changed)
        self._model.changed.connect(self._on_model_changed)
        self._checkpoint.changed.connect(self._show_model_thresholds)
        self._model_thresholds.changed.connect(self._on_thresholds_toggled)
        self._run.clicked.connect(self.run)
        self._cancel.clicked.connect(self.cancel)
        events = napari_viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh_layers)
        self._on_image_changed(self._image.value)
        self._show_model_thresholds()

    # ---- widget state -------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

    def _refresh_layers(self, _event: Any = None) -> None:
        self._image.reset_choices()
        self._ft_labels.reset_choices()

    @staticmethod
    def _layer_axes(layer: Image | None) -> tuple[int, bool]:
        """(number of channels to choose from, whether it is a volume) for an image layer."""
        if layer is None:
            return 0, True
        spatial = layer.data.ndim - (1 if layer.rgb else 0)
        n_channels = layer.data.shape[-1] if layer.rgb else (layer.data.shape[0] if spatial == 4 else 0)
        return n_channels, spatial - (1 if spatial == 4 else 0) == 3

    def _channel_choices(self, _widget: Any = None) -> list[str]:
        n_channels, _ = self._layer_axes(self._image.value)
        return [NO_CHANNEL] + [str(i) for i in range(n_channels)]

    def _mode_choices(self, _widget: Any = None) -> list[str]:
        _, volume = self._layer_axes(self._image.value)
        return ["3d", "z-only"] if volume else ["2d"]

    def _on_image_changed(self, layer: Image | None) -> None:
        n_channels, volume = self._layer_axes(layer)
        self._channel.reset_choices()
        self._channel.value = NO_CHANNEL
        self._channel.visible = n_channels > 0
        self._mode.reset_choices()
        if layer is not None:
            self._anisotropy.value = round(anisotropy_from_scale(layer.scale), 4) if volume else 1.0
        self._anisotropy.enabled = volume

    def _on_model_changed(self, value: str) -> None:
        self._checkpoint.visible = value == CHECKPOINT
        self._show_model_thresholds()

    def _show_model_thresholds(self, _value: Any = None) -> None:
        """Fill the threshold fields with those stored in the chosen model (library defaults where
        it has none), so that what is greyed out is what runs; a file not chosen yet changes nothing."""
        from mediar3d.inference.loader import InferenceModel, bundled_checkpoint
        from mediar3d.models import read_checkpoint

        try:
            if self._model.value == CHECKPOINT:
                path = Path(str(self._checkpoint.value)).expanduser()
                if not path.is_file():
                    return
            else:
                path = bundled_checkpoint(self._model.value)
            stored = read_checkpoint(path)[0].thresholds
        except Mediar3DError:
            return  # reported when Segment is pressed
        self._cellprob.value = float(stored.get("cellprob_threshold", InferenceModel.cellprob_threshold))
        self._flow.value = float(stored.get("flow_threshold", InferenceModel.flow_threshold))
        self._min_size.value = int(round(float(stored.get("min_size", DEFAULT_MIN_SIZE))))

    def _on_thresholds_toggled(self, use_model: bool) -> None:
        self._cellprob.enabled = not use_model
        self._flow.enabled = not use_model
        self._min_size.enabled = not use_model

    # ---- request ---------------------------------------------------------------------
    def _selected_data(self, layer: Image) -> Any:
        """The layer's array reduced to (z, y, x) or (y, x): level 0 of a pyramid, one channel.

        Lazy arrays (dask, zarr) stay lazy here: they are read in the worker thread.
        """
        data = layer.data[0] if layer.multiscale else layer.data
        channel = self._channel.value
        if layer.rgb:
            if channel == NO_CHANNEL:
                raise InputError(f"layer {layer.name!r} is RGB(A) ({data.shape[-1]} colours): choose a channel")
            data = data[..., int(channel)]
        elif data.ndim == 4:
            if channel == NO_CHANNEL:
                raise InputError(f"layer {layer.name!r} has 4 dimensions {tuple(data.shape)}: choose the channel "
                                 "(first axis) to segment")
            data = data[int(channel)]
        if data.ndim not in (2, 3):
            raise InputError(f"layer {layer.name!r} has shape {tuple(data.shape)}: expected (z, y, x) or (y, x), "
                             "or (c, z, y, x) with a channel chosen")
        return data

    def build_request(self) -> tuple[SegmentRequest, Image]:
        """Read the widget into a SegmentRequest; raise Mediar3DError on a user mistake."""
        layer = self._image.value
        if layer is None:
            raise InputError("no image layer: open an image, or File > Open Sample > Nuclei volume (Mediar3D)")
        data = self._selected_data(layer)
        mode = self._mode.value
        if (mode == "2d") != (data.ndim == 2):
            raise InputError(f"layer {layer.name!r} of shape {data.shape} cannot be segmented in mode {mode}")
        model: str | Path = self._model.value
        if model == CHECKPOINT:
            path = Path(self._checkpoint.value).expanduser()
            if not str(self._checkpoint.value) or str(self._checkpoint.value) == "." or not path.is_file():
                raise ModelError(f"checkpoint {str(path)!r}: file not found; choose a .pt file written by "
                                 "mediar3d train")
            model = path
        use_model = self._model_thresholds.value
        request = SegmentRequest(
            data=data, model=model, mode=mode, anisotropy=float(self._anisotropy.value),
            diameter=float(self._diameter.value) or None,
            cellprob_threshold=None if use_model else float(self._cellprob.value),
            flow_threshold=None if use_model else float(self._flow.value),
            min_size=None if use_model else float(self._min_size.value),
            tta=bool(self._tta.value), keep_flows=bool(self._add_flows.value or self._add_prob.value))
        return request, layer

    # ---- running ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a segmentation runs."""
        return self._worker is not None

    def run(self) -> None:
        """Check the settings and start segmenting in a worker thread (does nothing while one runs)."""
        from napari.qt.threading import create_worker

        if self.running:
            return
        try:
            request, layer = self.build_request()
        except Mediar3DError as err:
            show_error(str(err))
            return
        self._cancel_event = threading.Event()
        self._set_running(True, f"segmenting {layer.name}...")
        relay = self._relay

        def report(done: int, total: int | None) -> None:
            relay.progress.emit(done, -1 if total is None else total)

        worker = create_worker(run_job_and_measure, request, self._cancel_event, report,
                               self._voxel_size(layer, np.ndim(request.data)),
                               _connect={"returned": lambda done: self._on_returned(*done, layer, request),
                                         "errored": self._on_errored, "finished": self._on_finished},
                               _start_thread=False)
        self._worker = worker
        worker.start()

    def finetune(self) -> None:
        """Fine-tune the chosen model on the annotations layer in a worker thread, then segment with it."""
        from napari.qt.threading import create_worker

        if self.running:
            return
        try:
            request, layer = self.build_request()
            annotations = self._ft_labels.value
            if annotations is None:
                raise InputError("no Labels layer to fine-tune on: add one and paint some objects of the image")
            job = FineTuneRequest(image=request.data, labels=np.asarray(annotations.data), model=request.model,
                                  save_dir=Path(str(self._ft_folder.value)).expanduser(),
                                  supervision=str(self._ft_supervision.value), anisotropy=request.anisotropy,
                                  minutes=float(self._ft_minutes.value), overrides=dict(self.finetune_overrides))
        except Mediar3DError as err:
            show_error(str(err))
            return
        self._cancel_event = threading.Event()
        self._set_running(True, f"fine-tuning on {annotations.name}...")
        self._ft_run.enabled = False
        relay = self._relay

        def report(done: int, total: int, eta: float | None, loss: float) -> None:
            relay.steps.emit(done, total, -1.0 if eta is None else float(eta))

        worker = create_worker(run_finetune_job, job, self._cancel_event, report,
                               _connect={"returned": self._on_finetuned, "errored": self._on_errored,
                                         "finished": self._on_finetune_finished},
                               _start_thread=False)
        self._worker = worker
        worker.start()

    def _on_steps(self, done: int, total: int, eta: float) -> None:
        self._progress.max = max(total, 1)
        self._progress.value = min(done, total)
        left = f", about {eta / 60:.1f} min left" if eta >= 0 else ""
        self._status.value = f"fine-tuning: step {done} / {total}{left}"

    def _on_finetuned(self, result: Any) -> None:
        if result.stopped_by == "cancelled":
            show_info(f"mediar3d: fine-tuning cancelled; the weights so far are in {result.model}")
            self._status.value = "cancelled"
            return
        show_info(f"mediar3d: {result.summary()}")
        self._model.value = CHECKPOINT
        self._checkpoint.value = result.model
        self._model_thresholds.value = True
        self._show_model_thresholds()
        self._resegment = True

    def _on_finetune_finished(self) -> None:
        self._on_finished()
        self._ft_run.enabled = True
        if self._resegment:
            self._resegment = False
            self.run()

    def cancel(self) -> None:
        """Ask the running segmentation to stop at its next network call."""
        if self.running:
            self._cancel_event.set()
            self._status.value = "cancelling..."

    def _set_running(self, running: bool, status: str) -> None:
        self._run.enabled = not running
        self._ft_run.enabled = not running
        self._cancel.enabled = running
        self._status.value = status
        if running:
            self._progress.max = 0  # busy until the first report
            self._progress.value = 0

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self._progress.max = total
            self._progress.value = min(done, total)
            self._status.value = f"network: {done} / {total}" + (" (post-processing)" if done >= total else "")
        else:
            self._progress.max = 0
            self._status.value = f"network: {done} done"

    def _voxel_size(self, layer: Image, ndim: int) -> tuple[float, ...] | None:
        """The layer's spatial scale as a voxel size in micrometres; None when it is all ones (not calibrated)."""
        scale, _ = self._spatial_geometry(layer, ndim)
        return None if all(s == 1 for s in scale) else tuple(float(s) for s in scale)

    def _on_returned(self, result: Any, table: dict[str, np.ndarray], layer: Image, request: SegmentRequest) -> None:
        scale, translate = self._spatial_geometry(layer, np.ndim(request.data))
        params = dict(result.params)
        labels = labels_layer(result.labels, f"{layer.name}_labels", scale=scale, translate=translate,
                              metadata={"mediar3d": params})
        labels[1]["features"] = {"index": table["label"], **table}  # napari maps rows to labels by "index"
        tuples = [labels]
        if self._add_flows.value and result.flows is not None:
            tuples.append(flows_layer(result.flows, f"{layer.name}_flows", scale=scale, translate=translate))
        if self._add_prob.value and result.probability is not None:
            tuples.append(probability_layer(result.probability, f"{layer.name}_prob", scale=scale,
                                            translate=translate))
        for data, kwargs, kind in tuples:
            self._put_layer(data, kwargs, kind)
        n = params.get("n_objects", int(result.labels.max(initial=0)))
        diameter = params.get("diameter")
        diameter_text = f", diameter {diameter:.1f} px" if isinstance(diameter, (int, float)) else ""
        self._status.value = f"{n} objects in {params.get('time_total_s', 0):.1f} s{diameter_text}"
        if self._progress.max == 0:
            self._progress.max = 1
        self._progress.value = self._progress.max

    @staticmethod
    def _spatial_geometry(layer: Image, ndim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The layer's scale and translation on its last `ndim` spatial axes."""
        spatial = layer.ndim
        scale = tuple(layer.scale)[spatial - ndim:spatial]
        translate = tuple(layer.translate)[spatial - ndim:spatial]
        return scale, translate

    def _put_layer(self, data: np.ndarray, kwargs: dict[str, Any], kind: str) -> None:
        """Replace the data of an existing layer of that name and kind, else add a layer."""
        name = kwargs["name"]
        if name in self._viewer.layers:
            existing = self._viewer.layers[name]
            if type(existing).__name__.lower() == kind and existing.data.shape == data.shape:
                existing.data = data
                for key in ("scale", "translate", "metadata", "features"):
                    if key in kwargs:
                        setattr(existing, key, kwargs[key])
                return
            self._viewer.layers.remove(name)
        getattr(self._viewer, f"add_{kind}")(data, **kwargs)

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, SegmentationCancelled):
            show_info("mediar3d: segmentation cancelled")
            self._status.value = "cancelled"
        elif isinstance(exc, Mediar3DError):
            show_error(str(exc))
            self._status.value = "failed: see the notification"
        else:  # a bug, not a user mistake: napari shows the traceback
            logger.error("segmentation failed", exc_info=exc)
            self._status.value = "failed"
            raise exc

    def _on_finished(self) -> None:
        self._worker = None
        self._run.enabled = True
        self._ft_run.enabled = True
        self._cancel.enabled = False
        if self._progress.max == 0:
            self._progress.max = 1
            self._progress.value = 0
