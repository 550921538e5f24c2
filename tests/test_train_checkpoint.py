"""Checkpoint files: weights_only loading, refusal of pickled objects, migrations, rotating backups."""

from __future__ import annotations

import collections
from pathlib import PurePosixPath

import pytest
import torch
from train_fixtures import fast_options, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import TrainingError
from workbench.train import Trainer, checkpoint_summary, load_checkpoint, save_checkpoint
from workbench.train.checkpoint import SCHEMA_VERSION, migrate


def test_checkpoint_is_plain_data_and_self_describing(tmp_path):
    src, dst = make_faceset(tmp_path / "s", 6, seed=1), make_faceset(tmp_path / "d", 6, seed=2)
    run = tmp_path / "run"
    trainer = Trainer(fast_options(autobackup_every=2, autobackup_keep=2, gan_power=0.1), src, dst, run_dir=run)
    trainer.run(steps=7)
    raw = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)  # no pickled code inside
    assert raw["schema_version"] == SCHEMA_VERSION and raw["step"] == 7
    assert raw["model_config"]["archi_string"] == "df-ud" and raw["options"]["gan_power"] == 0.1
    assert raw["discriminators"]["gan"] is not None and raw["optimizers"]["gan"] is not None
    assert set(raw["rng"]) >= {"torch", "numpy", "python", "augment", "dropout", "sampler"}
    assert [p.name for p in sorted((run / "checkpoints" / "backups").glob("*.pt"))] == [
        "step_00000004.pt", "step_00000006.pt"]
    assert checkpoint_summary(run)["step"] == 7


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": collections.OrderedDict(), "step": 1, "payload": PurePosixPath("x")}, path)
    with pytest.raises(TrainingError, match="not a safe|cannot be read"):
        load_checkpoint(path)
    with pytest.raises(TrainingError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(2)})
    with pytest.raises(TrainingError, match="not a workbench training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_migration_errors():
    with pytest.raises(TrainingError, match="newer"):
        migrate({"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(TrainingError, match="invalid schema_version"):
        migrate({"schema_version": "1"})


def test_restore_is_read_validate_apply(tmp_path):
    """The one home of checkpoint restore: read (load + validate), then apply into a fresh trainer's parts gives
    the same weights, optimiser moments, step and random states; a pretraining checkpoint only brings weights."""
    import numpy as np

    from workbench.train import checkpoint as ck

    src, dst = make_faceset(tmp_path / "s", 6, seed=1), make_faceset(tmp_path / "d", 6, seed=2)
    run = tmp_path / "run"
    first = Trainer(fast_options(), src, dst, run_dir=run)
    first.run(steps=3)
    with pytest.raises(TrainingError, match="ae_dims"):
        ck.read_checkpoint(run, fast_options(ae_dims=64))
    ckpt = ck.read_checkpoint(run, fast_options())

    fresh = Trainer(fast_options(), src, dst)  # no run folder: nothing resumed
    assert fresh.step == 0
    parts = fresh._parts()  # noqa: SLF001 - the parts a checkpoint fills
    np.random.seed(123)
    restored = ck.apply_checkpoint(ckpt, parts, fresh.options, restore_rng_state=True)
    assert (restored.step, restored.ends_pretraining) == (3, False)
    assert [row[0] for row in restored.loss_history] == [1, 2, 3]
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[name]), name
    assert fresh.opt.state_dict()["state"].keys() == first.opt.state_dict()["state"].keys() != set()
    assert torch.equal(fresh.aug_gen.get_state(), ckpt["rng"]["augment"])
    assert np.random.get_state()[2] == ckpt["rng"]["numpy"][2]  # the global numpy stream is back too
    assert ck.capture_rng(parts)["sampler"] == ckpt["rng"]["sampler"]

    pre = dict(ckpt, pretrain=True)
    other = Trainer(fast_options(), src, dst)
    result = ck.apply_checkpoint(pre, other._parts(), other.options, restore_rng_state=True)  # noqa: SLF001
    assert result.ends_pretraining and result.step == 0
    assert torch.equal(other.model.state_dict()[next(iter(ckpt["model"]))], next(iter(ckpt["model"].values())))
    assert not other.opt.state_dict()["state"]  # the optimiser state did not come along
