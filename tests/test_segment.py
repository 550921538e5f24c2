"""XSeg: labels in the face file, rasterisation, bootstrap training, prediction, masked training, merge modes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from train_fixtures import faceset_pair, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import WorkbenchError
from workbench.faceset import (
    SCHEMA_VERSION,
    FaceMeta,
    load_aligned_face,
    read_face_meta,
    scan_faceset,
    update_face_meta,
    write_aligned_face,
)
from workbench.masks import hull_mask
from workbench.segment.labels import SegPolygon, decode_mask_png, encode_mask_png, rasterize_polygons

TINY = dict(resolution=32, channels=(8, 16, 24), bottleneck=32, batch_size=8, lr=3e-3, heldout=8,
            metrics_every=0, preview_every=0, save_every_seconds=0, cpu_threads=1, prior=False)


def _meta(size=64, seed=0) -> FaceMeta:
    rng = np.random.default_rng(seed)
    lm = rng.uniform(8, size - 8, (68, 2)).astype(np.float32)
    return FaceMeta("whole_face", size, lm, lm * 3, np.array([[0.5, 0, 1], [0, 0.5, 2]]), source_file="a.mp4")


POLYS = (SegPolygon("include", ((4.25, 4.5), (60.0, 4.0), (60.0, 60.0), (4.0, 60.0))),
         SegPolygon("exclude", ((20.0, 20.0), (40.0, 20.0), (30.0, 35.5))),
         SegPolygon("include", ((1.0, 1.0), (3.0, 1.0)), closed=False))


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_polygons_and_mask_round_trip_through_the_file_without_touching_pixels(tmp_path, suffix):
    rng = np.random.default_rng(1)
    path = write_aligned_face(tmp_path / f"f{suffix}", rng.random((64, 64, 3)).astype(np.float32), _meta())
    before, _ = load_aligned_face(path)
    mask = rasterize_polygons(POLYS, (64, 64))
    update_face_meta(path, seg_polys=POLYS, xseg_mask=encode_mask_png(mask))
    after, meta = load_aligned_face(path)
    assert np.array_equal(before, after)  # only the metadata segment was replaced (no JPEG re-encode)
    assert meta.seg_polys == POLYS and meta.seg_polys[2].closed is False
    assert np.array_equal(decode_mask_png(meta.xseg_mask, 64), mask)
    assert meta.schema_version == SCHEMA_VERSION == 2
    # the cached index and a fresh scan agree
    assert scan_faceset(tmp_path).faces[0].meta.seg_polys == POLYS
    assert scan_faceset(tmp_path).faces[0].meta.xseg_mask == meta.xseg_mask
    update_face_meta(path, seg_polys=(), xseg_mask=None)
    cleared = read_face_meta(path)
    assert cleared.seg_polys == () and cleared.xseg_mask is None


def test_version_1_files_read_and_migrate(tmp_path):
    meta = _meta()
    v1 = {k: v for k, v in meta.to_dict().items() if k not in ("seg_polys", "xseg_mask")} | {"schema_version": 1}
    buf = io.BytesIO()
    img = np.full((64, 64, 3), 128, np.uint8)
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("workbench", json.dumps({"workbench": v1}), zip=True)
    Image.fromarray(img).save(buf, format="PNG", pnginfo=info)
    path = tmp_path / "old.png"
    path.write_bytes(buf.getvalue())
    old = read_face_meta(path)
    assert old.seg_polys == () and old.xseg_mask is None and np.allclose(old.landmarks, meta.landmarks, atol=1e-3)
    update_face_meta(path, seg_polys=POLYS[:1])
    with Image.open(path) as im:
        stored = json.loads(im.text["workbench"])["workbench"]
        assert np.array_equal(np.asarray(im), img)
    assert stored["schema_version"] == 2 and stored["seg_polys"][0]["kind"] == "include"


def test_rasterisation_includes_then_excludes_with_subpixel_edges():
    square = SegPolygon("include", ((10, 10), (50, 10), (50, 50), (10, 50)))
    hole = SegPolygon("exclude", ((20, 20), (30, 20), (30, 30), (20, 30)))
    for order in ((square, hole), (hole, square)):  # excludes win whatever the drawing order
        m = rasterize_polygons(order, (64, 64))
        assert m.dtype == np.float32 and m.shape == (64, 64)
        assert m[15, 15] == 1 and m[25, 25] == 0 and m[5, 5] == 0 and m[55, 55] == 0
        assert abs(m.sum() - (41 * 41 - 11 * 11)) <= 41 * 4  # filled area with inclusive edges
    assert rasterize_polygons((SegPolygon("include", ((1, 1), (9, 9))),), (16, 16)).sum() == 0  # < 3 points
    # fractional points move the edge: a 0.5 px shift changes the covered columns
    a = rasterize_polygons((SegPolygon("include", ((10, 0), (20.0, 0), (20.0, 30), (10, 30))),), (32, 32))
    b = rasterize_polygons((SegPolygon("include", ((10, 0), (22.5, 0), (22.5, 30), (10, 30))),), (32, 32))
    assert 2 <= (b.sum() - a.sum()) / 31 <= 3
    with pytest.raises(ValueError, match="kind"):
        SegPolygon("maybe", ())


def test_mask_png_is_compact_and_capped():
    rng = np.random.default_rng(0)
    smooth = np.zeros((512, 512), np.float32)
    smooth[100:400, 120:380] = 1
    data = encode_mask_png(smooth)
    assert len(data) < 3000 and np.array_equal(decode_mask_png(data, 512), smooth)
    noise = (rng.random((512, 512)) > 0.5).astype(np.float32)
    capped = encode_mask_png(noise, max_bytes=5000)
    assert len(capped) <= 5000
    assert decode_mask_png(capped, 512).shape == (512, 512)


# ---------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, faceset_pair):  # noqa: F811
    """A short zero-label bootstrap on real lp_d18 faces (64 px): metrics before and after."""
    from workbench.segment.trainer import XSegOptions, XSegTrainer

    src, _ = faceset_pair
    run = tmp_path_factory.mktemp("xseg") / "run"
    (run / "checkpoints").mkdir(parents=True)
    trainer = XSegTrainer(XSegOptions(**{**TINY, "occluder_probability": 1.0}), [src], run_dir=run)
    before = {**trainer.evaluate(), "occluder_cut": _occluder_cut(trainer)}
    losses = [trainer.train_step()["loss"] for _ in range(160)]
    after = trainer.evaluate()
    trainer.save()
    return run, before, after, losses, trainer


def _occluder_cut(trainer) -> float:
    """The share of the held-out faces' occluded hull pixels that the served model leaves out of its mask."""
    pred = trainer.predict(trainer.eval_images, trainer.eval_hulls) >= 0.5
    occluded = (trainer.eval_hulls >= 0.5) & (trainer.eval_targets < 0.5)
    return float((occluded & ~pred).sum() / occluded.sum())


def test_short_bootstrap_starts_at_each_hull_and_learns_to_cut_occluders(tiny_run):
    _, before, after, losses, trainer = tiny_run
    assert trainer.eval_kind == "hull+occluders" and before["heldout"] == 8
    assert trainer.options.hull_input  # the default
    # untrained, the hull input alone decides: the prediction is each face's own hull, occluders included
    assert abs(before["iou"] - before["hull_iou"]) < 0.015 and before["occluder_cut"] < 0.03, before
    assert np.mean(losses[-15:]) < 0.85 * np.mean(losses[:15])
    # 160 tiny steps start cutting the occluders out (a 15-minute bootstrap cuts most: README, XSeg) ...
    assert _occluder_cut(trainer) > 0.08
    # ... without losing the outline the hull input gives
    assert after["iou"] > before["iou"] - 0.03, (before, after)


def test_without_the_hull_input_a_short_bootstrap_still_raises_heldout_iou(faceset_pair):  # noqa: F811
    """The image-only network (DFL's design; older checkpoints) keeps training: from nothing to a face mask."""
    from workbench.segment.trainer import XSegOptions, XSegTrainer

    trainer = XSegTrainer(XSegOptions(**{**TINY, "hull_input": False}), [faceset_pair[0]])
    before = trainer.evaluate()
    losses = [trainer.train_step()["loss"] for _ in range(120)]
    after = trainer.evaluate()
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])
    assert after["iou"] > before["iou"] + 0.15 and after["iou"] > 0.6, (before, after)


def test_batches_warp_the_hull_with_the_face(faceset_pair):  # noqa: F811
    """The hull input and the target get the same geometry: with no occluders, the two are the same mask."""
    import torch

    from workbench.segment.data import load_seg_bank, make_batch

    bank = load_seg_bank([faceset_pair[0]], 32)
    g, rng = torch.Generator().manual_seed(1), np.random.default_rng(1)
    plain = make_batch(bank, np.arange(8), torch.device("cpu"), g, rng, occluder_probability=0.0, augment=False)
    warped = make_batch(bank, np.arange(8), torch.device("cpu"), g, rng, occluder_probability=0.0)
    assert torch.equal(plain.hulls, plain.targets) and torch.equal(warped.hulls, warped.targets)
    assert not torch.equal(warped.hulls, plain.hulls)  # the augmentation moved them
    occluded = make_batch(bank, np.arange(8), torch.device("cpu"), g, rng, occluder_probability=1.0, augment=False)
    assert torch.equal(occluded.hulls, plain.hulls)  # occluders change the target only
    assert (occluded.targets <= occluded.hulls).all() and occluded.targets.sum() < 0.95 * occluded.hulls.sum()
    # jittered hulls: the input hull moves, the target stays where the landmarks are
    jittered = make_batch(bank, np.arange(8), torch.device("cpu"), g, rng, occluder_probability=0.0, augment=False,
                          hull_jitter=0.05)
    assert torch.equal(jittered.targets, plain.targets)
    moved = [i for i in range(8) if not torch.equal(jittered.hulls[i], plain.hulls[i])]
    assert 1 <= len(moved) <= 7  # about half
    for i in moved:
        assert 0.5 < _iou(jittered.hulls[i].numpy(), plain.hulls[i].numpy()) < 0.99


def test_the_prior_starts_from_the_mean_outline(faceset_pair):  # noqa: F811
    """With ``prior`` the untrained net already predicts about the average training outline on held-out faces."""
    import torch

    from workbench.segment.trainer import XSegOptions, XSegTrainer

    src, _ = faceset_pair
    scores = {}
    for prior in (False, True):
        trainer = XSegTrainer(XSegOptions(**{**TINY, "prior": prior, "hull_input": False}), [src])
        scores[prior] = trainer.evaluate()["iou"]
    mean = trainer.data.targets.index_select(0, torch.as_tensor(trainer.train_idx)).float().mean(0)[0] / 255.0
    expected = torch.logit(mean.clamp(0.02, 0.98))
    assert torch.allclose(trainer.model.prior[0, 0], expected, atol=1e-4)
    assert scores[True] > 0.6 and scores[True] > scores[False] + 0.2, scores


def test_the_checkpoint_serves_the_weight_average_and_resumes_both(tiny_run):
    import torch

    from workbench.segment.trainer import XSegOptions, XSegTrainer, load_xseg_checkpoint
    from workbench.train.runs import checkpoint_path

    run, _, _, _, trainer = tiny_run
    ckpt = load_xseg_checkpoint(checkpoint_path(run))
    served, raw = ckpt["model"], ckpt["train_model"]
    for name, value in trainer.ema_model.state_dict().items():
        assert torch.equal(served[name], value)
    assert any(not torch.equal(served[k], raw[k]) for k in raw)  # the average is not the last step's weights
    resumed = XSegTrainer(XSegOptions(**TINY), [trainer.data.paths[0].parent], run_dir=run)
    assert resumed.step == trainer.step
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(raw[name], value)
    for name, value in resumed.ema_model.state_dict().items():
        assert torch.equal(served[name], value)


def test_a_run_of_the_image_only_net_resumes_as_one(tmp_path, faceset_pair):  # noqa: F811
    """A run folder trained before the hull input (or with it off) keeps its architecture when training
    resumes with today's default options, and predicts without landmarks."""
    from workbench.segment.predict import load_xseg
    from workbench.segment.trainer import XSegOptions, XSegTrainer, load_xseg_checkpoint, train_xseg
    from workbench.train.runs import checkpoint_path

    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    old = XSegTrainer(XSegOptions(**{**TINY, "hull_input": False, "prior": True}), [faceset_pair[0]], run_dir=run)
    old.train_step()
    old.save()
    result = train_xseg(run, XSegOptions(**TINY), folders=[faceset_pair[0]], steps=2)
    assert result.step == 3
    config = load_xseg_checkpoint(checkpoint_path(run))["model_config"]
    assert config["hull_input"] is False and config["prior"] is True
    model = load_xseg(run)
    assert not model.uses_hull and model.net.enc[0][0].conv.in_channels == 3


def test_predict_masks_shapes_and_ranges(tiny_run, faceset_pair):  # noqa: F811
    from workbench.segment import load_xseg, predict_masks

    run, *_ = tiny_run
    images = np.stack([load_aligned_face(p)[0] for p in sorted(faceset_pair[1].glob("*.png"))[:3]])
    for batch in (images, np.stack([np.pad(i, ((8, 8), (0, 0), (0, 0))) for i in images])):
        masks = predict_masks(run, batch.astype(np.float32))
        assert masks.shape == batch.shape[:3] and masks.dtype == np.float32
        assert masks.min() >= 0 and masks.max() <= 1 and (masks[(masks > 0)] >= 0.1).all()  # DFL zeroes < 0.1
        assert 0.1 < (masks > 0.5).mean() < 0.9
    model = load_xseg(run)
    assert model.uses_hull
    assert np.allclose(model(images[0]), predict_masks(model, images[:1])[0], atol=1e-5)
    with pytest.raises(WorkbenchError, match="RGB images"):
        predict_masks(model, images[..., 0])
    # each face's own landmarks move the mask with the face; without them the mean training hull stands in
    metas = [read_face_meta(p) for p in sorted(faceset_pair[1].glob("*.png"))[:3]]
    lms = np.stack([m.landmarks_at(images.shape[1]) for m in metas])
    shifted = lms + np.float32([6, 0])
    with_lm, moved = (predict_masks(model, images, landmarks=x) for x in (lms, shifted))
    assert np.allclose(model(images[0], lms[0]), with_lm[0], atol=1e-5)
    hulls = np.stack([hull_mask(images.shape[1:3], lm) for lm in lms])
    assert _iou(with_lm, hulls) > _iou(moved, hulls) + 0.05  # the hull input steers the mask
    with pytest.raises(WorkbenchError, match="landmarks"):
        predict_masks(model, images, landmarks=lms[:2])


def test_occluder_test_scores_the_model_and_the_hull_on_unseen_faces(tiny_run, faceset_pair, data_file):  # noqa: F811
    """The benchmark's occluder test: truth = hull minus a pasted occluder of 15-35 % of it; the plain hull
    scores 1 - coverage; the model is scored with stored and with re-detected landmarks."""
    from workbench.segment.occlusion import evaluate_occlusion, make_occluder_set, mask_iou

    textures = [data_file("stills/edge/dogs.jpg"), data_file("stills/biden/biden.jpg")]
    occ = make_occluder_set([faceset_pair[1]], textures, limit=8)
    assert occ.images.shape[0] == 8 and occ.landmarks.shape == (8, 68, 2)
    assert np.all(occ.truth <= occ.hull) and 0.15 <= float(np.median(occ.coverage)) <= 0.35
    hull_iou = mask_iou(occ.hull, occ.truth)
    assert np.allclose(hull_iou, 1 - occ.coverage, atol=0.02)  # the hull keeps the whole occluder
    changed = np.abs(occ.images - np.stack([load_aligned_face(p)[0] for p in occ.paths])).max(-1) > 0.05
    assert 0.1 < changed.mean() < 0.5  # the occluder is pasted into the pixels
    res = evaluate_occlusion(tiny_run[0], occ)
    assert res["faces"] == 8 and abs(res["hull_iou"] - float(hull_iou.mean())) < 1e-6
    assert 0 <= res["redetected_found"] <= 8
    for key in ("xseg_iou", "xseg_iou_redetected", "hull_iou_redetected"):
        assert 0.3 < res[key] <= 1.0, res
    assert abs(res["gain"] - (res["xseg_iou"] - res["hull_iou"])) < 1e-9


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a >= 0.5) & (b >= 0.5)).sum() / max(((a >= 0.5) | (b >= 0.5)).sum(), 1))


def test_apply_remove_and_sort_by_mask_disagreement(tiny_run, tmp_path):
    from workbench.segment.predict import apply_masks, remove_masks
    from workbench.sort import mask_disagreement

    run, *_ = tiny_run
    folder = make_faceset(tmp_path / "faces", 4, size=48)
    summary = apply_masks(run, [folder])
    assert summary.written == 4 and not summary.broken
    metas = [r.meta for r in scan_faceset(folder).faces]
    assert all(m.xseg_mask is not None for m in metas)
    # a hand-made occluded mask disagrees more with the hull than a hull-shaped one
    from workbench.masks import hull_mask

    hull = hull_mask((48, 48), metas[0].landmarks)
    cut = hull.copy()
    cut[24:] = 0
    scores = []
    for m, mask in zip(metas[:2], (hull, cut)):
        scores.append(mask_disagreement(np.zeros((48, 48, 3), np.float32), m.__class__(**{**m.__dict__, "xseg_mask": encode_mask_png(mask)})))
    assert scores[0] < 0.05 < 0.3 < scores[1]
    assert remove_masks([folder]) == 4
    assert all(r.meta.xseg_mask is None for r in scan_faceset(folder).faces)


def test_masked_training_uses_the_xseg_mask_when_present(tmp_path):
    from workbench.masks import hull_mask
    from workbench.train.data import load_face_bank

    folder = make_faceset(tmp_path / "faces", 2, size=48)
    paths = sorted(folder.glob("*.png"))
    xseg = np.zeros((48, 48), np.float32)
    xseg[5:30, 8:40] = 1  # deliberately unlike the hull
    update_face_meta(paths[0], xseg_mask=encode_mask_png(xseg))
    bank = load_face_bank(folder, "src", "full", 48, workers=0)
    got = bank.masks[:, 0].numpy() / 255.0
    i0, i1 = bank.paths.index(paths[0]), bank.paths.index(paths[1])
    assert np.array_equal(got[i0] >= 0.5, xseg >= 0.5)
    hull1 = hull_mask((48, 48), read_face_meta(paths[1]).landmarks)
    assert np.abs(got[i1] - hull1).max() <= 1 / 255 + 1e-6  # no XSeg mask: the hull, as before


# ---------------------------------------------------------------------------------------------- merge


def test_each_xseg_merge_mode_picks_the_right_masks():
    from workbench.merge import MergeSettings
    from workbench.merge.face import _working_mask

    rng = np.random.default_rng(3)
    size = 32
    learned_prd, learned_dst, xseg_prd, xseg_dst = ((rng.random((size, size)) > 0.3).astype(np.float32) for _ in range(4))
    prd = np.full((size // 2, size // 2, 3), 0.2, np.float32)  # the model's resolution may be below the output's
    dst_face = np.full((size, size, 3), 0.8, np.float32)
    face_lm = rng.uniform(4, size - 4, (68, 2)).astype(np.float32)
    seen = []

    def segment(face, landmarks):  # a fake XSeg that tells the predicted face (dark) from the dst face (bright)
        seen.append(float(face.mean()))
        # each face gets the landmarks in its own pixels (the hull-input model builds its hull from them)
        assert np.allclose(landmarks, face_lm * (face.shape[0] / size))
        return xseg_prd if face.mean() < 0.5 else xseg_dst

    expected = {
        "xseg-prd": xseg_prd, "xseg-dst": xseg_dst, "xseg-prd*xseg-dst": xseg_prd * xseg_dst,
        "learned-prd*learned-dst*xseg-prd*xseg-dst": learned_prd * learned_dst * xseg_prd * xseg_dst,
        "learned-prd": learned_prd, "learned-dst": learned_dst, "learned-prd*learned-dst": learned_prd * learned_dst,
    }
    outs = {}
    for mode, want in expected.items():
        s = MergeSettings(resolution=size, face_type="full", mask_mode=mode)
        got = _working_mask(s, size, prd, learned_prd, learned_dst, dst_face, face_lm, segment)
        assert np.array_equal(got, want), mode
        outs[mode] = got
    assert len({o.tobytes() for o in outs.values()}) == len(outs)  # distinct masks: modes cannot be confused
    assert min(seen) < 0.3 and max(seen) > 0.7  # both the swap and the dst face were segmented


# ---------------------------------------------------------------------------------------------- protocol


@pytest.mark.slow
def test_background_xseg_pause_resume_stop_and_resume_after_kill(tmp_path, faceset_pair):  # noqa: F811
    import os
    import signal
    import time

    from workbench.segment.trainer import XSegOptions, start_xseg
    from workbench.train.runs import read_metrics, read_status, send_command, wait_for_state

    run = tmp_path / "proj" / "xseg" / "default"
    opts = XSegOptions(**{**TINY, "metrics_every": 5, "preview_every": 5, "save_every_seconds": 0.5})
    handle = start_xseg(run, opts, folders=[faceset_pair[0]])
    wait_for_state(run, "running", timeout=120)
    send_command(run, "pause")
    wait_for_state(run, "paused", timeout=60)
    step = read_status(run).step
    send_command(run, "resume")
    wait_for_state(run, "running", timeout=60)
    for _ in range(600):
        if read_status(run).last_save_step and read_status(run).last_save_step > step + 5:
            break
        time.sleep(0.1)
    os.kill(handle.pid, signal.SIGKILL)  # no chance to save
    handle.wait(30)
    saved = read_status(run).last_save_step
    assert read_status(run).stale and saved
    handle = start_xseg(run, opts, folders=[faceset_pair[0]], steps=3)
    assert handle.wait(120) == 0
    status = read_status(run)
    assert status.state == "stopped" and status.step == saved + 3  # resumed from the checkpoint
    assert any(r["kind"] == "eval" and "iou" in r for r in read_metrics(run))
    assert (run / "previews" / "latest.png").is_file()


def test_cli_train_status_apply_remove(tmp_path, capsys):
    from workbench.cli import main
    from workbench.errors import TrainingError
    from workbench.project import create_project
    from workbench.segment.predict import project_segmenter
    from workbench.train.runs import read_metrics

    project = create_project(tmp_path / "proj", face_size=48)
    with pytest.raises(TrainingError, match="need a trained XSeg model"):
        project_segmenter(project)  # what `workbench merge --mask-mode xseg-*` says before training
    make_faceset(project.aligned_dir("src"), 5, size=48, seed=1)
    make_faceset(project.aligned_dir("dst"), 5, size=48, seed=2)
    root = str(project.root)
    assert main(["xseg", "train", root, "--steps", "2", "--cpu-threads", "1"]) == 0
    run = project.root / "xseg" / "default"
    assert (run / "checkpoints" / "latest.pt").is_file()
    segment = project_segmenter(project)
    assert segment(np.zeros((48, 48, 3), np.float32)).shape == (48, 48)  # the merger's Segmenter interface
    assert [r["step"] for r in read_metrics(run) if r["kind"] == "end"] == [2]
    assert main(["xseg", "status", root]) == 0
    assert "default: stopped, step 2" in capsys.readouterr().out
    assert main(["xseg", "apply", root, "--side", "dst"]) == 0
    assert "written into 5/5 faces" in capsys.readouterr().out
    assert all(r.meta.xseg_mask for r in scan_faceset(project.aligned_dir("dst")).faces)
    assert not any(r.meta.xseg_mask for r in scan_faceset(project.aligned_dir("src")).faces)
    assert main(["xseg", "stop", root]) == 2  # no trainer running: a clear error, not a traceback
    assert "no XSeg trainer is running" in capsys.readouterr().err
    assert main(["xseg", "remove", root]) == 0
    assert not any(r.meta.xseg_mask for r in scan_faceset(project.aligned_dir("dst")).faces)
