"""``python -m workbench.bench infer``: the live figure's frames (PyAV or OpenCV) and one end-to-end CPU run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from workbench.bench import infer


def test_live_frames_decode_the_same_without_pyav(data_file, monkeypatch):
    # a GPU machine's image may have OpenCV but not PyAV: the live benchmark must still get the clip's frames
    video = data_file("videos/lp_d19.mp4")
    with_av = infer._decode_rgb(video, 6)
    monkeypatch.setitem(sys.modules, "av", None)  # "import av" now raises ImportError
    with_cv2 = infer._decode_rgb(video, 6)
    assert len(with_av) == len(with_cv2) == 6
    for a, b in zip(with_av, with_cv2):
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8 and a.shape[2] == 3
        assert np.abs(a.astype(np.int16) - b).mean() < 1.0  # same decoder underneath: equal in practice


@pytest.mark.slow
def test_infer_bench_prints_machine_models_and_live_rows(data_dir, capsys):
    assert infer.main(["--presets", "tiny", "--batches", "1", "--repeats", "1", "--device", "cpu",
                       "--live", "--live-frames", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "cores usable" in out and "load average" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("tiny ")]
    table = [r for r in rows if r[3] == "1"]  # preset archi res batch backend...
    assert {" ".join(r[4:6]) for r in table} >= {"torch fp32", "onnxruntime (CPU)"}
    live = [r for r in rows if r not in table]
    assert len(live) == 2  # torch and onnxruntime through the live pipeline
    for r in live:
        fps, faces = float(r[-7]), int(r[-2])
        assert fps > 0 and faces == 8  # every frame of lp_d19 has its face found and swapped


def test_live_pipeline_and_benches_import_without_pyav():
    # GPU machines' images often lack PyAV: the live pipeline, its label and the GPU benchmarks must not need it
    import subprocess

    code = ("import sys; sys.modules['av'] = None\n"
            "import numpy as np\n"
            "import workbench.live, workbench.bench.infer, workbench.bench.train\n"
            "from workbench.label import draw_synthetic_label\n"
            "out = draw_synthetic_label(np.zeros((48, 64, 3), np.uint8))\n"
            "print(int(out.max()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 200  # the white letters were drawn on the black frame
