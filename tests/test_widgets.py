"""workbench.widgets: the training monitor (on a hand-made run folder) and the slider helpers."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from workbench import widgets  # noqa: E402
from workbench.errors import TrainingError  # noqa: E402
from workbench.face_constants import MEAN_FACE_68  # noqa: E402
from workbench.fileutil import append_jsonl  # noqa: E402
from workbench.images import decode_image_bytes, write_image  # noqa: E402
from workbench.train.runs import COMMANDS_DIR, METRICS_NAME, write_status  # noqa: E402


class FakeHandle:
    """Stands in for workbench.train.TrainerHandle: a process that is alive until told otherwise."""

    def __init__(self, alive: bool = True):
        self.alive = alive

    def is_alive(self) -> bool:
        return self.alive


def _run_folder(tmp_path, state="running", step=30, preview=True):
    run = tmp_path / "models" / "demo"
    run.mkdir(parents=True)
    write_status(run, {"state": state, "step": step, "target_steps": 100, "it_per_s": 5.0,
                       "losses": {"src": 1.5, "dst": 1.25}, "device": "cpu", "preview_step": 25})
    for s in range(10, step + 1, 10):
        append_jsonl(run / METRICS_NAME, {"kind": "train", "step": s, "loss_total": 5.0 - s / 20,
                                          "loss_src": 2.5 - s / 40, "loss_dst": 2.4 - s / 40, "loss_grad_norm": 1.0})
    append_jsonl(run / METRICS_NAME, {"kind": "eval", "step": 20, "ssim_src": 0.5, "psnr_src": 20.0})
    if preview:
        write_image(run / "previews" / "latest.png", np.full((40, 100, 3), 0.5, np.float32))
    return run


def test_loss_history_reads_train_rows():
    rows = [{"kind": "start"}, {"kind": "train", "step": 10, "loss_total": 3.0, "loss_src": 1.0, "loss_dst": 2.0,
                                "loss_grad_norm": 9.0}, {"kind": "eval", "step": 10, "ssim_src": 0.5},
            {"kind": "train", "step": 20, "loss_total": 2.0, "loss_src": 0.5, "loss_dst": 1.5},
            {"kind": "train", "step": 30, "loss_src": float("nan")}]  # a diverged step draws nothing
    assert widgets.loss_history(rows) == {"src": [1.0, 0.5], "dst": [2.0, 1.5]}
    from workbench.train.runs import metric_series

    assert metric_series(rows, "eval") == {"ssim_src": [(10, 0.5)]}
    assert widgets.loss_history([]) == {}


def test_monitor_shows_the_run_folder(tmp_path):
    run = _run_folder(tmp_path)
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle())
    status = monitor.status
    assert status.state == "running" and status.step == 30
    assert "running" in monitor.header.value and "step 30 / 100" in monitor.header.value
    assert "crashed" not in monitor.header.value  # no lock yet, but the handle says the process lives
    assert decode_image_bytes(monitor.loss_view.value).shape == (240, 480, 3)
    assert decode_image_bytes(monitor.preview_view.value).shape == (40, 100, 3)
    assert "ssim_src" in monitor.metrics_view.value and "the swap" in monitor.preview_caption.value
    snap = monitor.snapshot(width=300)
    assert snap.dtype == np.float32 and snap.shape[1] == 300 and snap.shape[0] > 30 + 160 + 100


def test_monitor_buttons_write_command_files(tmp_path):
    run = _run_folder(tmp_path)
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle())
    assert set(monitor.buttons) == {"pause", "resume", "save", "preview", "stop"}
    monitor.buttons["pause"].click()
    monitor.buttons["preview"].click()
    assert sorted(p.name for p in (run / COMMANDS_DIR).iterdir() if not p.name.startswith(".")) == ["pause", "preview"]
    assert "sent <b>preview</b>" in monitor.message.value


def test_monitor_sends_nothing_to_a_finished_run(tmp_path):
    run = _run_folder(tmp_path, state="stopped")
    monitor = widgets.TrainingMonitor(run)
    assert monitor.send("stop") is None
    assert not (run / COMMANDS_DIR).exists()
    assert "not sent" in monitor.message.value


def test_watch_returns_on_final_state_and_step(tmp_path):
    run = _run_folder(tmp_path)
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle(), poll_seconds=0.01)
    assert monitor.watch(until_step=30).step == 30
    started = time.monotonic()
    assert monitor.watch(timeout=0.1).state == "running"  # timeout: returns the last status
    assert time.monotonic() - started < 5
    write_status(run, {"state": "finished", "step": 100})
    assert monitor.watch().state == "finished"


def test_watch_raises_on_error_and_on_a_dead_trainer(tmp_path):
    run = _run_folder(tmp_path)
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle(alive=False), poll_seconds=0.01)
    with pytest.raises(TrainingError, match="process is gone"):
        monitor.watch(grace_seconds=0.05)
    assert monitor.watch(grace_seconds=0.05, raise_on_error=False).state == "running"
    write_status(run, {"state": "error", "step": 3, "last_error": "RuntimeError: boom"})
    with pytest.raises(TrainingError, match="boom"):
        monitor.watch()


def test_stop_trainer_drops_unread_commands(tmp_path):
    run = _run_folder(tmp_path, state="stopped")
    (run / COMMANDS_DIR).mkdir()
    (run / COMMANDS_DIR / "stop").write_text("{}")
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle(alive=False))
    assert monitor.stop_trainer(timeout=5).state == "stopped"
    assert not list((run / COMMANDS_DIR).iterdir())
    assert "removed unread command(s): stop" in monitor.message.value


def test_background_refresh_thread_stops(tmp_path):
    run = _run_folder(tmp_path)
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle(), poll_seconds=0.01)
    monitor.start()
    write_status(run, {"state": "running", "step": 77})
    deadline = time.monotonic() + 5
    while monitor.status.step != 77 and time.monotonic() < deadline:
        time.sleep(0.02)
    monitor.stop()
    assert monitor.status.step == 77 and monitor._thread is None


def test_live_plot_renders_losses_and_preview():
    plot = widgets.LivePlot("t", every_seconds=0.0, width=320)
    plot.update(1, {"src": 1.0, "dst": 2.0})
    plot.update(2, {"src": 0.5, "dst": 1.0}, np.zeros((20, 40, 3), np.float32))
    image = plot.render()
    assert plot.history == {"src": [1.0, 0.5], "dst": [2.0, 1.0]}
    assert image.shape == (220 + 4 + 160, 320, 3)


def _face():
    landmarks = (MEAN_FACE_68 * 80 + 24).astype(np.float32)
    return np.full((128, 128, 3), 0.6, np.float32), landmarks


@pytest.mark.parametrize("kind", widgets.MASK_KINDS)
def test_mask_demo_image(kind):
    face, lm = _face()
    out = widgets.mask_demo_image(face, lm, kind, erode=4, blur=3)
    assert out.shape == (128, 128 * 2 + 4, 3) and out.dtype == np.float32
    with pytest.raises(ValueError):
        widgets.mask_demo_image(face, lm, "ears")


def test_mask_sliders_redraw():
    face, lm = _face()
    box = widgets.mask_slider_demo(face, lm)
    first = box.image.value
    box.controls["erode"].value = 10
    assert box.image.value != first
    box.controls["kind"].value = "mouth"
    assert decode_image_bytes(box.image.value).shape == (128, 260, 3)


def _frame_and_prediction():
    from workbench.merge import MergeSettings, crop_for_model

    frame = np.zeros((200, 200, 3), np.float32)
    frame[..., 0] = np.linspace(0, 1, 200)[None, :]
    lm = (MEAN_FACE_68 * 90 + 55).astype(np.float32)
    settings = MergeSettings(resolution=32, face_type="full")
    crop, _ = crop_for_model(frame, lm, settings)
    prediction = (np.clip(crop[..., ::-1] + 0.2, 0, 1), np.ones((32, 32), np.float32), np.ones((32, 32), np.float32))
    return frame, lm, settings, prediction


def test_merge_preview_zooms_on_the_face():
    frame, lm, settings, prediction = _frame_and_prediction()
    full = widgets.merge_preview(frame, lm, prediction, settings, zoom=False)
    zoom = widgets.merge_preview(frame, lm, prediction, settings)
    assert full.shape == frame.shape and not np.allclose(full, frame)
    assert zoom.shape[0] < 200 or zoom.shape[1] < 200


def test_merge_settings_explorer_runs_the_model_once():
    frame, lm, settings, prediction = _frame_and_prediction()
    calls = []

    class Predictor:
        resolution, face_type = 32, "full"

        def __call__(self, face):
            calls.append(face.shape)
            return prediction

    box = widgets.merge_settings_explorer(frame, lm, Predictor())
    first = box.image.value
    box.controls["mode"].value = "seamless"
    box.controls["erode"].value = 30
    assert calls == [(32, 32, 3)]
    assert box.image.value != first
    chosen = box.settings()
    assert chosen.mode == "seamless" and chosen.erode == 30 and chosen.resolution == 32
    assert "SYNTHETIC" in box.children[1].value
    from workbench.merge.settings import SETTING_SPECS  # the sliders' ranges are the settings' own

    for name in ("erode", "blur", "output_face_scale", "image_denoise_power"):
        assert (box.controls[name].min, box.controls[name].max) == SETTING_SPECS[name].range


def test_monitor_draws_the_identity_curve(tmp_path):
    run = _run_folder(tmp_path)
    rows = [(40, 0.25, 0.71), (50, 0.5, 0.62), (60, 1.0, 0.48)]
    for step, share, dist in rows:
        append_jsonl(run / METRICS_NAME, {"kind": "eval", "step": step, "ssim_src": 0.6, "id_closer_to_src": share,
                                          "id_distance_src": dist, "id_distance_dst": 0.7, "id_faces": 8})
    history = widgets.identity_history([{"kind": "eval", "step": s, "id_closer_to_src": a, "id_distance_src": d}
                                        for s, a, d in rows])
    assert history["looks like the source (share)"] == [0.25, 0.5, 1.0]
    assert history["distance to source (median)"] == [0.71, 0.62, 0.48]
    monitor = widgets.TrainingMonitor(run, handle=FakeHandle())
    curve = decode_image_bytes(monitor.identity_view.value)
    empty = widgets.viz.loss_plot({}, size=(480, 240))
    assert curve.shape == (240, 480, 3)
    assert np.abs(curve.astype(np.float32) / 255.0 - empty).mean() > 0.005  # curves were drawn
    assert "id_closer_to_src" in monitor.metrics_view.value and "1.000" in monitor.metrics_view.value
