"""Model export (DFM / ONNX) and onnxruntime inference, against the torch model on real faces."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_fixtures import RUN, TRAIN_STEPS, dst_frames, trained_project  # noqa: F401  (fixtures)
from train_fixtures import faceset_pair, one_torch_thread  # noqa: F401  (fixtures)

from workbench import cli
from workbench.errors import ExportError
from workbench.export_model import (
    ONNX_NAMES,
    OnnxPredictor,
    export_model_file,
    export_run,
    load_onnx_predictor,
)
from workbench.faceset import load_aligned_face
from workbench.models import ModelConfig, build_model
from workbench.project import Project
from workbench.train import load_model
from workbench.train.latent import Predictor

TOL = 1.0 / 255.0


@pytest.fixture(scope="module")
def project(trained_project) -> Project:  # noqa: F811
    return Project.open(trained_project)


@pytest.fixture(scope="module")
def dfm_path(project):
    out = project.output_dir / f"{RUN}.dfm"
    if not out.exists():
        assert cli.main(["export-model", str(project.root), "--format", "dfm"]) == 0
    return out


@pytest.fixture(scope="module")
def real_faces(faceset_pair) -> np.ndarray:  # noqa: F811
    """Real aligned dst faces (lp_d19, 64 px full face), RGB float32."""
    files = sorted(faceset_pair[1].glob("*.png"))[:6]
    return np.stack([load_aligned_face(f)[0] for f in files]).astype(np.float32)


def _torch_outputs(model, faces_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with torch.no_grad():
        x = torch.from_numpy(faces_rgb).permute(0, 3, 1, 2)
        image, mask, dst_mask = model.swap_with_dst_mask(x)
    return (image.clamp(0, 1).permute(0, 2, 3, 1).numpy(), mask[:, 0].clamp(0, 1).numpy(),
            dst_mask[:, 0].clamp(0, 1).numpy())


def test_dfm_contract_names_order_shapes_and_metadata(dfm_path, capsys):
    proto = onnx.load(str(dfm_path))
    onnx.checker.check_model(proto)
    inputs = [i for i in proto.graph.input]
    assert [i.name for i in inputs] == ["in_face:0"]  # DF: no morph input
    dims = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    assert dims[1:] == [64, 64, 3] and inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in proto.graph.output] == ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["architecture"] == "df-ud" and meta["resolution"] == "64" and meta["face_type"] == "full"
    assert meta["step"] == str(TRAIN_STEPS) and "synthetic" in meta["provenance"] and meta["channel_order"] == "BGR"

    sess = ort.InferenceSession(str(dfm_path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"in_face:0": np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)})
    assert [o.shape for o in outs] == [(1, 64, 64, 1), (1, 64, 64, 3), (1, 64, 64, 1)]
    assert all(o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1 for o in outs)
    assert "loads in onnxruntime" in capsys.readouterr().out or dfm_path.is_file()


def test_dfm_wraps_bgr_and_matches_torch_on_real_faces(project, dfm_path, real_faces):
    model, _ = load_model(project.models_dir / RUN)
    swapped, mask, dst_mask = _torch_outputs(model, real_faces)
    sess = ort.InferenceSession(str(dfm_path), providers=["CPUExecutionProvider"])
    o_dst_mask, o_face_bgr, o_mask = sess.run(None, {"in_face:0": np.ascontiguousarray(real_faces[..., ::-1])})
    # the file takes and gives BGR: flipping its output back gives torch's RGB swap within 1/255
    assert np.abs(o_face_bgr[..., ::-1] - swapped).max() < TOL
    assert np.abs(o_mask[..., 0] - mask).max() < TOL and np.abs(o_dst_mask[..., 0] - dst_mask).max() < TOL
    # not flipping would be visible: the model does not draw red and blue alike (exact check: ChannelProbe)
    assert np.abs(o_face_bgr - swapped).max() > 10 * TOL


class ChannelProbe(torch.nn.Module):
    """Test double with the model interface: the swap is the input itself, the swap mask its red channel and the
    dst mask its blue channel, so any channel-order or output-order mistake in the export shows."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def swap_with_dst_mask(self, x: torch.Tensor):
        return x * self.scale, x[:, 0:1], x[:, 2:3]


def test_dfm_channel_order_and_output_order_exactly(tmp_path):
    cfg = ModelConfig.from_archi_string("df", resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=8)
    path = export_model_file(ChannelProbe(), cfg, tmp_path / "probe.dfm")
    face_bgr = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dst_mask, celeb_bgr, celeb_mask = sess.run(None, {"in_face:0": face_bgr})
    assert np.array_equal(celeb_bgr, face_bgr)  # BGR in, BGR out
    assert np.array_equal(celeb_mask[..., 0], face_bgr[..., 2])  # the model saw red where BGR has index 2
    assert np.array_equal(dst_mask[..., 0], face_bgr[..., 0])
    swapped, swapped_mask, dst = OnnxPredictor(path).batch(face_bgr[..., ::-1])  # the predictor takes RGB
    assert np.array_equal(swapped, face_bgr[..., ::-1]) and np.array_equal(swapped_mask, face_bgr[..., 2])
    assert np.array_equal(dst, face_bgr[..., 0])


def test_onnx_predictor_matches_torch_predictor(project, dfm_path, real_faces):
    model, config = load_model(project.models_dir / RUN)
    ref = Predictor(model, config, precision="fp32")
    onnx_pred = load_onnx_predictor(dfm_path)
    assert (onnx_pred.resolution, onnx_pred.face_type, onnx_pred.provider) == (64, "full", "CPUExecutionProvider")
    for a, b in zip(ref.batch(real_faces), onnx_pred.batch(real_faces)):
        assert a.shape == b.shape and np.abs(a - b).max() < TOL
    one = onnx_pred(real_faces[0])
    assert [x.shape for x in one] == [(64, 64, 3), (64, 64), (64, 64)]
    # uint8 and other sizes are accepted like the torch predictor does
    big = (np.kron(real_faces[1], np.ones((2, 2, 1))) * 255).round().astype(np.uint8)
    assert np.abs(onnx_pred(big)[0] - ref(big)[0]).max() < TOL


def test_onnx_format_has_readable_names_and_metadata(project, tmp_path):
    out = project.root / "exports" / "model.onnx"
    assert cli.main(["export-model", str(project.root), "--run", RUN, "--format", "onnx", "--output",
                     "exports/model.onnx"]) == 0
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == [ONNX_NAMES["face"]]
    assert [o.name for o in proto.graph.output] == [ONNX_NAMES[k] for k in ("dst_mask", "swapped", "swapped_mask")]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["workbench_format"] == "onnx" and meta["run"] == RUN and meta["synthetic_media"] == "true"
    assert cli.main(["export-model", str(project.root), "--format", "onnx", "--output", "exports/model.onnx"]) == 2
    assert cli.main(["export-model", str(project.root), "--output", str(tmp_path / "x.dfm")]) == 2  # outside


def _liae():
    cfg = ModelConfig.from_archi_string("liae-ud", resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=8)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    return model, cfg


def test_liae_dfm_has_a_morph_input(tmp_path, real_faces):
    model, cfg = _liae()
    path = export_model_file(model, cfg, tmp_path / "liae.dfm", "dfm", step=3)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["in_face:0", "morph_value:0"]
    assert [d.dim_value for d in proto.graph.input[1].type.tensor_type.shape.dim] == [1]
    faces = np.stack([np.asarray(torch.nn.functional.interpolate(torch.from_numpy(f).permute(2, 0, 1)[None], 32,
                                                                  mode="area")[0].permute(1, 2, 0))
                      for f in real_faces[:3]])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(m: float) -> np.ndarray:
        return sess.run(None, {"in_face:0": np.ascontiguousarray(faces[..., ::-1]),
                               "morph_value:0": np.array([m], np.float32)})[1][..., ::-1]

    x = torch.from_numpy(faces).permute(0, 3, 1, 2)
    with torch.no_grad():
        swap = model.swap(x)[0].clamp(0, 1).permute(0, 2, 3, 1).numpy()
        own = model.decode(model.encode(x, "dst"), "dst")[0].clamp(0, 1).permute(0, 2, 3, 1).numpy()
    full, none, half = run(1.0), run(0.0), run(0.5)
    assert np.abs(full - swap).max() < TOL and np.abs(none - own).max() < TOL
    assert np.abs(half - full).max() > 1e-4 and np.abs(half - none).max() > 1e-4
    predictor = OnnxPredictor(path, morph=0.0)
    assert predictor.info.has_morph and np.abs(predictor.batch(faces)[0] - own).max() < TOL
    # DF has no code to morph: asking for it is a clear error
    df_cfg = ModelConfig.from_archi_string("df", resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=8)
    with pytest.raises(ExportError, match="morph"):
        export_model_file(build_model(df_cfg), df_cfg, tmp_path / "df.dfm", morph=True)


def test_external_dfm_without_metadata_and_fixed_batch(dfm_path, tmp_path, real_faces):
    """A DFM made elsewhere: no metadata, batch fixed to 1. Resolution comes from the input shape."""
    proto = onnx.load(str(dfm_path))
    del proto.metadata_props[:]
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    ext = tmp_path / "external.dfm"
    onnx.save(proto, str(ext))
    bare = OnnxPredictor(ext)
    ours = OnnxPredictor(dfm_path)
    assert bare.resolution == 64 and bare.face_type is None and bare.info.step is None
    for a, b in zip(bare.batch(real_faces[:3]), ours.batch(real_faces[:3])):
        assert np.array_equal(a, b)


def test_bad_model_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.dfm"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(ExportError, match="onnxruntime cannot load") as info:
        OnnxPredictor(junk)
    assert str(junk) in str(info.value)
    with pytest.raises(ExportError, match="not found"):
        OnnxPredictor(tmp_path / "missing.dfm")
    # a valid ONNX file with the wrong interface
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    wrong = tmp_path / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(wrong))
    with pytest.raises(ExportError, match="not a DFM-style model"):
        OnnxPredictor(wrong)
    with pytest.raises(ExportError, match="unknown model format"):
        export_run(tmp_path, tmp_path / "m.x", "pt")


def test_merge_with_dfm_equals_merge_with_its_run(project, dfm_path, capsys):
    from workbench.images import read_image, to_uint8

    merged = project.merged_dir
    assert cli.main(["merge", str(project.root), "--run", RUN, "--no-progress", "--workers", "1",
                     "--overwrite"]) == 0
    assert "model: run1" in capsys.readouterr().out
    from_run = [to_uint8(read_image(p)).astype(int) for p in sorted(merged.glob("*.png"))]
    assert cli.main(["merge", str(project.root), "--model", f"output/{RUN}.dfm", "--no-progress", "--workers", "1",
                     "--overwrite"]) == 0
    assert f"model: {RUN}.dfm (resolution 64, face type full)" in capsys.readouterr().out
    from_dfm = [to_uint8(read_image(p)).astype(int) for p in sorted(merged.glob("*.png"))]
    frames = [to_uint8(read_image(p)).astype(int) for p in sorted(project.frames_dir.glob("*.png"))]
    assert len(from_run) == len(from_dfm) == len(frames) > 0
    for a, b, f in zip(from_run, from_dfm, frames):
        assert np.abs(a - f).max() > 30  # the face was replaced
        diff = np.abs(a - b)
        assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())
    assert cli.main(["merge", str(project.root), "--run", RUN, "--model", "output/run1.dfm"]) == 2
    assert cli.main(["merge", str(project.root), "--model", "output/none.dfm", "--no-progress"]) == 2
    assert "model file not found" in capsys.readouterr().err
