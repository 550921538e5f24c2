"""One self-describing checkpoint dict per run, written crash-safely, loadable with ``weights_only=True``.

Layout (schema 1)::

    {"schema_version": 1, "kind": "workbench.train.checkpoint", "workbench_version": "...",
     "model_config": {...ModelConfig.to_dict()}, "options": {...TrainOptions.to_dict()},
     "step": int, "pretrain": bool, "saved_at": float,
     "model": state_dict, "discriminators": {"gan": sd|None, "code": sd|None},
     "optimizers": {"model": sd, "gan": sd|None, "code": sd|None}, "scaler": sd|None,
     "rng": {"torch": uint8 tensor, "cuda": [uint8 tensors], "numpy": str, "python": list,
             "augment": uint8 tensor, "sampler": {...}},
     "loss_history": [[step, src_loss, dst_loss], ...]  (the last 10 000 steps),
     "collapse_events": [...]}

Only tensors, numbers, strings, lists and dicts: ``torch.load(path, weights_only=True)`` reads it without
running any pickled code. The file is written to a temporary name beside the target, flushed to disk and
renamed over it, so a SIGKILL at any moment leaves either the old or the new complete checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DiskFullError, TrainingError
from ..fileutil import atomic_path, disk_full_error
from .options import MODEL_FIELDS

SCHEMA_VERSION = 1
KIND = "workbench.train.checkpoint"
LOSS_HISTORY_KEEP = 10_000


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (temp file + fsync + rename + directory fsync)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
    except DiskFullError as exc:
        # The old checkpoint is untouched; say how much the new one needs (its tensors, a close estimate).
        raise disk_full_error(path.parent, _tensor_bytes(checkpoint)) from exc
    with contextlib.suppress(OSError, AttributeError):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _migrate_v0(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Schema 0 was the first draft (nanoGPT style): ``{model, optimizer, options, iter}``."""
    from .options import TrainOptions

    options = TrainOptions.from_dict(ckpt["options"])
    return {
        "schema_version": 1, "kind": KIND, "workbench_version": ckpt.get("workbench_version", "0"),
        "model_config": options.model_config().to_dict(), "options": options.to_dict(),
        "step": int(ckpt.get("iter", 0)), "pretrain": bool(options.pretrain), "saved_at": ckpt.get("saved_at", 0.0),
        "model": ckpt["model"], "discriminators": {"gan": None, "code": None},
        "optimizers": {"model": ckpt.get("optimizer"), "gan": None, "code": None}, "scaler": None,
        "rng": {}, "loss_history": [], "collapse_events": [],
    }


MIGRATIONS = {0: _migrate_v0}


def migrate(ckpt: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Bring an older checkpoint dict to the current schema; a newer one raises TrainingError."""
    version = ckpt.get("schema_version", 0)
    if not isinstance(version, int):
        raise TrainingError(f"checkpoint has an invalid schema_version {version!r}", path)
    if version > SCHEMA_VERSION:
        raise TrainingError(
            f"checkpoint schema {version} is newer than this workbench understands ({SCHEMA_VERSION})", path,
            "upgrade the workbench package (pip install -U face-swap-workbench) to load it",
        )
    while version < SCHEMA_VERSION:
        try:
            ckpt = MIGRATIONS[version](ckpt)
        except KeyError as exc:
            raise TrainingError(f"checkpoint schema {version} cannot be migrated (missing {exc})", path,
                                "start a new run; this checkpoint is from an unsupported early version") from exc
        version = ckpt["schema_version"]
    return ckpt


def load_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and migrate a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        TrainingError: missing, truncated/corrupt, not a workbench checkpoint, or from a newer schema.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt" if (path / "checkpoints").is_dir() else path / "latest.pt"
    if not path.is_file():
        raise TrainingError("no checkpoint found", path, "train the model first (it saves checkpoints/latest.pt)")
    if path.stat().st_size == 0:
        raise TrainingError("the checkpoint file is empty (0 bytes)", path, _restore_hint(path))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        # torch's own text talks about zip internals and flags; say what it means for the user instead.
        raise TrainingError(
            f"the checkpoint cannot be read: truncated or corrupt ({path.stat().st_size} bytes, not a complete "
            "checkpoint archive)",
            path, _restore_hint(path),
        ) from exc
    except Exception as exc:  # weights_only refuses pickled objects with an UnpicklingError
        raise TrainingError(f"not a safe workbench checkpoint ({exc.__class__.__name__})", path,
                            "only checkpoints written by workbench.train load here") from exc
    if not isinstance(ckpt, dict) or ("model" not in ckpt):
        raise TrainingError("this file is not a workbench training checkpoint", path)
    if ckpt.get("kind", KIND) != KIND:
        raise TrainingError(f"this file is a {ckpt.get('kind')!r}, not a training checkpoint", path)
    return migrate(ckpt, path)


def _restore_hint(path: Path) -> str:
    """Where a good copy is, if there is one; never a folder that does not exist."""
    backups = sorted(path.parent.glob("backups/step_*.pt"))
    if backups:
        return f"copy the newest backup {backups[-1]} over {path.name}, then --resume"
    return ("no backup copies exist (autobackup_every was off): delete this file and train again, "
            "or start another run with --run NEW_NAME")


def config_mismatch(ckpt: dict[str, Any], options: Any) -> list[tuple[str, Any, Any]]:
    """Model-defining options that differ: [(name, checkpoint value, requested value)]."""
    from ..models.config import ModelConfig

    stored = ModelConfig.from_dict(ckpt["model_config"])
    wanted = options.model_config()
    out = []
    stored_opts = {"archi": stored.archi_string, "resolution": stored.resolution, "face_type": stored.face_type,
                   "ae_dims": stored.ae_dims, "e_dims": stored.e_dims, "d_dims": stored.d_dims,
                   "d_mask_dims": stored.d_mask_dims}
    wanted_opts = {"archi": wanted.archi_string, "resolution": wanted.resolution, "face_type": wanted.face_type,
                   "ae_dims": wanted.ae_dims, "e_dims": wanted.e_dims, "d_dims": wanted.d_dims,
                   "d_mask_dims": wanted.d_mask_dims}
    for name in MODEL_FIELDS:
        if stored_opts[name] != wanted_opts[name]:
            out.append((name, stored_opts[name], wanted_opts[name]))
    return out


def mismatch_error(mismatch: list[tuple[str, Any, Any]], path: str | Path) -> TrainingError:
    fields = ", ".join(f"{n}: checkpoint {a!r} vs requested {b!r}" for n, a, b in mismatch)
    flags = " ".join(f"--{n.replace('_', '-')} {a}" for n, a, _ in mismatch)
    return TrainingError(
        f"the checkpoint was trained with other model options ({fields})", path,
        f"resume with the checkpoint's values ({flags}) or start a new run with another --run name",
    )


def check_checkpoint_compatible(path_or_ckpt: str | Path | dict, options: Any) -> dict[str, Any]:
    """Raise TrainingError naming every model option that differs from the checkpoint's."""
    if isinstance(path_or_ckpt, dict):
        return validate_checkpoint(path_or_ckpt, options, "<checkpoint>")
    return validate_checkpoint(load_checkpoint(path_or_ckpt, mmap=True), options, path_or_ckpt)


def checkpoint_summary(path: str | Path) -> dict[str, Any]:
    """Small JSON-able facts about a checkpoint (step, options, model config, time) without the weights."""
    ckpt = load_checkpoint(path, mmap=True)
    return {k: ckpt.get(k) for k in ("schema_version", "step", "model_config", "options", "pretrain", "saved_at")}


def write_backup(latest: str | Path, folder: str | Path, step: int, keep: int) -> Path:
    """Copy the latest checkpoint to ``folder/step_XXXXXXXX.pt`` and keep only the newest ``keep`` copies."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step_{step:08d}.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(latest, tmp)
    backups = sorted(folder.glob("step_*.pt"))
    for old in backups[:-keep] if keep > 0 else []:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return target


def python_rng_state(state: tuple) -> list:
    """``random.getstate()`` as nested lists (weights_only-friendly)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def python_rng_restore(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def now() -> float:
    return time.time()


# ----------------------------------------------------------------------------------------------------------
# restore: read, validate, apply (the trainer's resume, pretrained start and collapse rollback all come here)


def validate_checkpoint(ckpt: dict[str, Any], options: Any, path: str | Path) -> dict[str, Any]:
    """Raise TrainingError naming every model option of ``options`` that the checkpoint contradicts."""
    mismatch = config_mismatch(ckpt, options)
    if mismatch:
        raise mismatch_error(mismatch, path)
    return ckpt


def read_checkpoint(path: str | Path, options: Any, map_location: Any = "cpu") -> dict[str, Any]:
    """Load (:func:`load_checkpoint`) and validate (:func:`validate_checkpoint`) a checkpoint for ``options``."""
    return validate_checkpoint(load_checkpoint(path, map_location=map_location), options, path)


@dataclass
class TrainParts:
    """The live objects of a face trainer that a checkpoint fills (optional parts are None when unused)."""

    model: Any
    opt: Any
    gan_d: Any
    gan_opt: Any
    code_d: Any
    code_opt: Any
    scaler: Any
    aug_gen: torch.Generator
    dropout_gen: torch.Generator
    data: Any  # TrainData (its sampler state travels in rng["sampler"])


@dataclass(frozen=True)
class Restored:
    """What :func:`apply_checkpoint` read besides the weights: the trainer adopts these values."""

    step: int
    loss_history: list
    collapse_events: list
    notes: tuple[str, ...] = ()
    ends_pretraining: bool = False  # a pretrained checkpoint continued without pretraining (DFL §3.6)


def numpy_global_state() -> list:
    """``np.random.get_state()`` as weights_only-friendly values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, torch.from_numpy(np.asarray(keys, np.int64)), int(pos), int(has_gauss), float(cached)]


def numpy_global_restore(state: list) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, np.asarray(keys.cpu().numpy(), np.uint32), pos, has_gauss, cached))


def capture_rng(parts: TrainParts) -> dict[str, Any]:
    """Every random state training draws from (global torch/CUDA/numpy/python, augmentation, lr_dropout, sampler)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": numpy_global_state(),
        "python": python_rng_state(random.getstate()),
        "augment": parts.aug_gen.get_state(),
        "dropout": parts.dropout_gen.get_state(),
        "sampler": parts.data.state_dict(),
    }


def restore_rng(rng: dict[str, Any], parts: TrainParts) -> list[str]:
    """Set the states :func:`capture_rng` saved; returns notes (a changed faceset restarts sampling)."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    numpy_global_restore(rng["numpy"])
    random.setstate(python_rng_restore(rng["python"]))
    parts.aug_gen.set_state(rng["augment"].cpu())
    parts.dropout_gen.set_state(rng["dropout"].cpu())
    try:
        parts.data.load_state_dict(rng["sampler"])
    except (KeyError, ValueError, IndexError):
        return ["the faceset changed since the checkpoint: sampling restarts from the seed"]
    return []


def _apply_discriminators(ckpt: dict[str, Any], parts: TrainParts, options: Any, same_opt: bool) -> list[str]:
    old = ckpt.get("options", {})
    notes = []
    same_gan = (old.get("gan_dims"), old.get("gan_patch_size") or max(3, options.resolution // 8)) == (
        options.gan_dims, options.effective_gan_patch_size)
    discs = ckpt.get("discriminators") or {}
    if parts.gan_d is not None and discs.get("gan") is not None and same_gan:
        parts.gan_d.load_state_dict(discs["gan"])
        if same_opt and ckpt["optimizers"].get("gan") is not None:
            parts.gan_opt.load_state_dict(ckpt["optimizers"]["gan"])
    elif parts.gan_d is not None and discs.get("gan") is not None:
        notes.append("GAN patch size/dims changed: the discriminator starts fresh (as DFL)")
    if parts.code_d is not None and discs.get("code") is not None:
        parts.code_d.load_state_dict(discs["code"])
        if same_opt and ckpt["optimizers"].get("code") is not None:
            parts.code_opt.load_state_dict(ckpt["optimizers"]["code"])
    return notes


def apply_checkpoint(ckpt: dict[str, Any], parts: TrainParts, options: Any, *, restore_rng_state: bool) -> Restored:
    """Load a validated checkpoint into the trainer's parts.

    The weights always load. A pretraining checkpoint continued without pretraining stops there
    (``ends_pretraining``: the trainer re-initialises the inters). Otherwise the optimiser state loads when the
    optimiser is the same, the discriminators when their shape is, the fp16 scaler, and with
    ``restore_rng_state`` every random state (a resume; a collapse rollback keeps the data moving on).
    """
    parts.model.load_state_dict(ckpt["model"])
    if ckpt.get("pretrain") and not options.pretrain:
        return Restored(0, [], [], ends_pretraining=True)
    old = ckpt.get("options", {})
    same_opt = old.get("optimizer") == options.optimizer
    notes: list[str] = []
    if same_opt and ckpt["optimizers"].get("model") is not None:
        parts.opt.load_state_dict(ckpt["optimizers"]["model"])
    elif not same_opt:
        notes.append(f"optimizer changed ({old.get('optimizer')} -> {options.optimizer}): its state starts fresh")
    notes += _apply_discriminators(ckpt, parts, options, same_opt)
    if parts.scaler.is_enabled() and ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng") or {}
    if restore_rng_state and rng:
        notes += restore_rng(rng, parts)
    return Restored(int(ckpt.get("step", 0)), [list(r) for r in ckpt.get("loss_history", [])],
                    list(ckpt.get("collapse_events", [])), tuple(notes))
