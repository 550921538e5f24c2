"""The training loop in-process: learning on real faces, optional losses, mixed precision, exact resume,
collapse guard, bad input. Small models (32 px) so everything fits a 2-core CPU budget."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from train_fixtures import faceset_pair, fast_options, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import TrainingError
from workbench.train import Trainer, load_checkpoint, read_metrics, read_status, save_checkpoint
from workbench.train.runs import checkpoint_path


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    return make_faceset(base / "src", 8, seed=1), make_faceset(base / "dst", 8, seed=2)


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


# (1) ------------------------------------------------------------------------------------------------------------
def test_learns_both_real_faces(faceset_pair):  # noqa: F811
    """lp_d18 vs lp_d19, 32 px df-ud: 120 steps lower both reconstruction losses by more than 35%
    and raise held-out SSIM (measured: about -55% and +0.15 SSIM)."""
    src, dst = faceset_pair
    trainer = Trainer(fast_options(batch_size=8, ae_dims=64), src, dst)
    before = trainer.evaluate()
    history = [trainer.train_step() for _ in range(120)]
    first = {k: np.mean([h[k] for h in history[:10]]) for k in ("src", "dst")}
    last = {k: np.mean([h[k] for h in history[-10:]]) for k in ("src", "dst")}
    for side in ("src", "dst"):
        assert last[side] < 0.65 * first[side], (side, first, last)
    after = trainer.evaluate()
    assert after["ssim_src"] > before["ssim_src"] + 0.05 and after["ssim_dst"] > before["ssim_dst"] + 0.05
    assert after["psnr_src"] > before["psnr_src"] and after["heldout_src"] == 2


# (2) ------------------------------------------------------------------------------------------------------------
OPTIONAL = [
    ({"eyes_mouth_prio": True}, True),
    ({"blur_out_mask": True}, True),
    ({"gan_power": 0.1, "gan_dims": 8}, True),
    ({"true_face_power": 0.2}, True),
    ({"face_style_power": 10.0}, True),
    ({"bg_style_power": 10.0}, True),
    ({"masked_training": False}, True),
    ({"ct_mode": "rct"}, True),
    ({"random_hsv_power": 0.1}, True),
    ({"progressive": True, "progressive_stage_steps": 1}, True),
    ({"archi": "liae-ud", "face_style_power": 5.0, "bg_style_power": 5.0}, True),
    ({"uniform_yaw": True}, None),
    ({"optimizer": "adabelief", "lr_dropout": 0.3, "lr_cos_period": 500, "clipgrad": True}, None),
    ({"optimizer": "rmsprop", "warmup_steps": 5}, None),
    ({"channels_last": True, "archi": "liae-ud", "random_warp": False}, None),
]


@pytest.mark.parametrize("changes, changes_objective", OPTIONAL, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_optional_terms_run_and_change_the_objective(synth, changes, changes_objective):
    src, dst = synth
    base = Trainer(fast_options(), src, dst).train_step()
    trainer = Trainer(fast_options(**changes), src, dst)
    first = trainer.train_step()
    second = trainer.train_step()
    assert math.isfinite(first["total"]) and math.isfinite(second["total"])
    if changes.get("gan_power"):
        assert "gan_g" in first and "d_gan" in first
    if changes.get("true_face_power"):
        assert "true_face" in first and "d_code" in first
    if changes_objective:
        assert abs(first["total"] - base["total"]) > 1e-6, (first, base)


@pytest.mark.parametrize("precision, archi", [
    ("bf16", "df-ud"),
    ("fp16", "df-d"),
    ("fp16", "df-ud"),  # pixel_norm ('u') stays float32 under autocast, so fp16 gradients stay finite
])
def test_mixed_precision_on_cpu(synth, precision, archi):
    src, dst = synth
    ref = Trainer(fast_options(archi=archi), src, dst).train_step()
    trainer = Trainer(fast_options(precision=precision, archi=archi), src, dst)
    start = _weights(trainer)
    s, d = trainer._batch()
    with trainer._autocast():
        out = trainer.train_forward(s.warped, d.warped)
    assert out["src_src"].dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    steps = [trainer.train_step() for _ in range(3)]
    assert all(math.isfinite(s["total"]) for s in steps)
    # an untrained model outputs ~0.5 everywhere, so DSSIM reacts to rounding noise: fp16 differs ~12%
    assert abs(steps[0]["total"] - ref["total"]) < 0.2 * ref["total"]
    assert trainer._weights_finite() and any(not torch.equal(a, b) for a, b in zip(start, _weights(trainer)))


# (3) ------------------------------------------------------------------------------------------------------------
def test_resume_matches_an_uninterrupted_run(synth, tmp_path):
    """N steps, save, a fresh process-like Trainer resumes for M: bitwise the same weights as N+M at once."""
    src, dst = synth
    options = fast_options(optimizer="adabelief", lr_dropout=0.3, random_src_flip=True, ct_mode="rct",
                           random_hsv_power=0.05, lr=1e-3)
    first = Trainer(options, src, dst, run_dir=tmp_path / "a")
    first.run(steps=6)
    resumed = Trainer(options, src, dst, run_dir=tmp_path / "a")
    assert resumed.resumed and resumed.step == 6
    resumed.run(steps=5)
    straight = Trainer(options, src, dst, run_dir=tmp_path / "b")
    straight.run(steps=11)
    assert resumed.step == straight.step == 11
    for a, b in zip(_weights(resumed), _weights(straight)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(resumed.opt.state_dict()["state"].values(), straight.opt.state_dict()["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=0, atol=1e-6)
    ckpt = load_checkpoint(tmp_path / "a")  # weights_only=True inside
    assert ckpt["step"] == 11 and len(ckpt["loss_history"]) == 11


# (7) ------------------------------------------------------------------------------------------------------------
def test_collapse_guard_skips_then_rolls_back(synth, tmp_path):
    src, dst = synth
    poisoned = {3, 5, 6, 7}  # step indices (0-based) whose loss becomes NaN

    def hook(step, batch, loss):
        return loss * float("nan") if step in poisoned else loss

    trainer = Trainer(fast_options(save_every_steps=2, collapse_patience=3), src, dst, run_dir=tmp_path / "run",
                      loss_hook=hook)
    from workbench.train import RunDirWriter

    trainer.callbacks.append(RunDirWriter(tmp_path / "run"))
    result = trainer.run(steps=8)
    kinds = [(e["kind"], e["step"]) for e in trainer.collapse_events]
    assert kinds[:4] == [("skip", 4), ("skip", 6), ("skip", 7), ("skip", 8)]
    rollback = [e for e in trainer.collapse_events if e["kind"] == "rollback"]
    assert rollback and rollback[0]["step"] == 8 and rollback[0]["to_step"] == 6
    assert result.state == "stopped" and trainer._weights_finite()
    status = read_status(tmp_path / "run")
    assert any(e["kind"] == "rollback" for e in status.collapse_events)
    assert any(r.get("event") == "rollback" for r in read_metrics(tmp_path / "run"))


def test_collapse_without_a_checkpoint_is_a_clear_error(synth):
    src, dst = synth
    trainer = Trainer(fast_options(collapse_patience=2), src, dst, loss_hook=lambda s, b, loss: loss * float("nan"))
    trainer._memory_ckpt = None
    trainer.last_save_step = 0  # pretend the initial save happened elsewhere
    with pytest.raises(TrainingError, match="collapsed"):
        trainer.run(steps=3)


# (8) ------------------------------------------------------------------------------------------------------------
def test_bad_facesets(tmp_path, synth):
    src, _ = synth
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="has 0 face"):
        Trainer(fast_options(), src, tmp_path / "empty")
    few = make_faceset(tmp_path / "few", 3)
    with pytest.raises(TrainingError, match="at least 4") as info:
        Trainer(fast_options(batch_size=4), few, src)
    assert "has 3 face" in str(info.value) and "--batch-size 3" in str(info.value)


def test_mixed_sizes_and_face_types_are_refitted(tmp_path, synth):
    src, dst = synth
    mixed = tmp_path / "mixed"
    shutil.copytree(src, mixed)
    make_faceset(tmp_path / "big", 2, size=80, seed=5)
    make_faceset(tmp_path / "wf", 2, size=40, seed=6, face_type="whole_face")
    for p in list((tmp_path / "big").glob("*.png")) + list((tmp_path / "wf").glob("*.png")):
        shutil.copy(p, mixed / f"{p.parent.name}_{p.name}")
    trainer = Trainer(fast_options(), mixed, dst)
    info = trainer.data.describe()
    assert info["src_faces"] == 12 and info["resized"] >= 10 and info["recropped"] == 2
    assert tuple(trainer.data.src.images.shape[1:]) == (3, 32, 32)
    assert math.isfinite(trainer.train_step()["total"])


def test_checkpoint_from_another_config_or_version(synth, tmp_path):
    src, dst = synth
    run = tmp_path / "run"
    Trainer(fast_options(), src, dst, run_dir=run).run(steps=2)
    with pytest.raises(TrainingError, match="ae_dims: checkpoint 32 vs requested 64") as info:
        Trainer(fast_options(ae_dims=64), src, dst, run_dir=run)
    assert "--ae-dims 32" in str(info.value)

    # an older schema (0: {model, optimizer, options, iter}) is migrated and resumes at its step
    ckpt = load_checkpoint(run)
    old = {"schema_version": 0, "model": ckpt["model"], "optimizer": ckpt["optimizers"]["model"],
           "options": ckpt["options"], "iter": 7}
    save_checkpoint(checkpoint_path(run), old)
    trainer = Trainer(fast_options(), src, dst, run_dir=run)
    assert trainer.resumed and trainer.step == 7

    save_checkpoint(checkpoint_path(run), {**ckpt, "schema_version": 99})
    with pytest.raises(TrainingError, match="newer"):
        Trainer(fast_options(), src, dst, run_dir=run)

    data = checkpoint_path(run).read_bytes()
    checkpoint_path(run).write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match="cannot be read"):
        Trainer(fast_options(), src, dst, run_dir=run)


def test_out_of_memory_saves_and_suggests_a_batch_size(synth, tmp_path):
    src, dst = synth

    def hook(step, batch, loss):
        if batch > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return loss

    trainer = Trainer(fast_options(batch_size=8), src, dst, run_dir=tmp_path / "run")
    trainer.run(steps=2)
    trainer.loss_hook = hook
    with pytest.raises(TrainingError, match="batch size 2 fits") as info:
        trainer.run(steps=2)
    assert "--batch-size 2" in str(info.value)
    assert load_checkpoint(tmp_path / "run")["step"] == 2  # nothing lost


def test_target_steps_finishes_and_reports_eta(synth, tmp_path):
    import io

    from workbench.train import ProgressLine, RunDirWriter

    src, dst = synth
    run = tmp_path / "run"
    stream = io.StringIO()
    trainer = Trainer(fast_options(target_steps=5, preview_every=2, metrics_every=2), src, dst, run_dir=run,
                      callbacks=[RunDirWriter(run), ProgressLine(stream, every_seconds=0.0)])
    result = trainer.run()
    assert result.state == "finished" and result.step == 5
    status = read_status(run)
    assert status.state == "finished" and status.target_steps == 5 and status.eta_seconds == 0.0
    assert status.metrics["step"] == 4 and 0 < status.metrics["ssim_src"] <= 1
    assert [p.name for p in sorted((run / "previews").glob("step_*.png"))] == [
        "step_000001.png", "step_000002.png", "step_000004.png", "step_000005.png"]  # + the final model's
    assert status.preview_step == 5
    assert "[#000005]" in stream.getvalue() and "finished" in stream.getvalue()
    assert Trainer(fast_options(target_steps=5), src, dst, run_dir=run).run().steps_run == 0


def test_cpu_thread_tuner_keeps_the_faster_setting(monkeypatch):
    """cpu_threads=0: 1 thread vs all threads are timed for a few steps and the faster one is kept."""
    from types import SimpleNamespace

    from workbench.train import trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: clock[0])
    set_threads = []
    monkeypatch.setattr(trainer_module.torch, "set_num_threads", set_threads.append)
    events = []
    fake = SimpleNamespace(step=0, _event=events.append)
    tuner = trainer_module.CpuThreadTuner(2, trial_steps=3, retune_seconds=100.0)
    tuner.on_start(fake)
    cost = {1: 0.2, 2: 1.0}  # a busy machine: one thread is faster
    for _ in range(12):
        clock[0] += cost[set_threads[-1]]
        tuner.on_step_end(fake, {})
    assert tuner.chosen == 1 and set_threads[-1] == 1
    assert events[-1]["kind"] == "cpu_threads" and events[-1]["threads"] == 1
    clock[0] += 200.0
    tuner.on_step_end(fake, {})
    assert set_threads[-1] == 1 and tuner._trial == [1, 2]  # re-tuning after retune_seconds


def test_liae_without_random_warp_freezes_inter_ab(synth):
    """DFL §3.3: with random_warp off, LIAE trains everything except inter_AB."""
    src, dst = synth
    trainer = Trainer(fast_options(archi="liae-ud", random_warp=False), src, dst)
    groups = trainer.model.parameter_groups()
    before = {k: [p.detach().clone() for p in v] for k, v in groups.items()}
    trainer.train_step()
    trainer.train_step()
    for name, params in groups.items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], params))
        assert changed == (name != "inter_AB"), name
