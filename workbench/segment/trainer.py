"""The XSeg trainer: the face trainer's run-folder protocol, reused, around a small segmentation loop.

Run folder (default ``PROJECT/xseg/<name>``; the same layout and readers as ``workbench.train.runs``)::

    config.json  {"kind": "xseg", options, folders, limits}       status.json / metrics.jsonl (RunDirWriter)
    previews/    image | label | prediction rows                    checkpoints/latest.pt (atomic, weights_only)
    commands/    pause, resume, save, preview, stop                 trainer.lock / trainer.log

Reused from ``workbench.train``: the run loop and control surface (:class:`~workbench.train.loop.RunLoop`,
:class:`~workbench.train.loop.RunControl`), :class:`~workbench.train.writer.RunDirWriter` (status, metrics, previews,
command files), :class:`~workbench.train.runs.RunLock`, ``send_command``/``read_status``/``wait_for_state``,
``spawn_detached``, the atomic ``save_checkpoint``, ``resolve_device`` and the CPU thread tuner. A killed
trainer resumes from its last checkpoint (weights, optimiser, step, RNG) on the next start.

Loss: binary cross-entropy + soft Dice on the logits (DFL uses plain sigmoid cross-entropy; Dice makes the
small face-vs-occluder boundary count more). Optimiser: Adam lr 1e-3 (DFL: RMSprop 1e-4, fine for GPU
weeks, too slow for a CPU bootstrap). The served weights (evaluation, previews, the checkpoint's ``model``,
``predict_masks``) are an exponential moving average of the trained ones (``train_model`` in the checkpoint,
used to resume): short CPU runs swing a lot from one step to the next.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, TrainingError
from ..fileutil import atomic_write_json
from ..models.xseg import XSegConfig, XSegLite
from ..train.loop import RunControl, RunLoop
from ..train.runs import (
    CONFIG_NAME,
    STATUS_NAME,
    _read_json,
    checkpoint_path,
    spawn_detached,
    take_commands,
    trainer_pid,
    write_status,
)
from ..train.trainer import Callback, CpuThreadTuner, DistContext, TrainResult, resolve_device
from ..train.writer import ProgressLine, RunDirWriter
from .data import SegBank, load_seg_bank, make_batch

CHECKPOINT_KIND = "workbench.segment.checkpoint"
CHECKPOINT_SCHEMA = 1


@dataclass(frozen=True)
class XSegOptions:
    """XSeg training options (architecture fields go into the checkpoint and must match on resume)."""

    resolution: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64, 96)
    bottleneck: int = 256
    # the learned mean-outline prior (an alternative to the hull input; both may be on, they add up)
    prior: bool = False
    # the face's landmark hull as a fourth input channel (see workbench.models.xseg). 15-minute zero-label
    # bootstraps on an idle 2-core CPU, scored on 90 faces of two unseen videos (README, XSeg): occluder IoU
    # 0.91 with it, against 0.78 for the plain hull and 0.83 for the image-only net with the outline prior
    hull_input: bool = True
    # with the hull input: half the training hulls come from randomly moved landmarks (std of the shift as a
    # fraction of the face; scale and rotation alike), so a hull misplaced by a hand in front of the face is
    # corrected from the pixels instead of copied. Same test with landmarks found again on the occluded
    # faces: 0.842 with 0.03, 0.810 without, 0.792 with 0.05 (0.911 / 0.914 / 0.835 with the stored landmarks)
    hull_jitter: float = 0.03
    batch_size: int = 8
    lr: float = 1e-3
    target_steps: int = 0
    occluder_probability: float = 0.8
    # the elastic warp bends the landmark outline into shapes no aligned face has: off by default, it
    # hurt 4-minute bootstraps scored on a held-out video (occluder IoU 0.62 with it, 0.77 without)
    random_warp: bool = False
    # exponential moving average of the weights (0 = off): short CPU runs oscillate from step to step, and
    # the average is what gets evaluated, previewed, checkpointed as "model" and applied
    ema: float = 0.99
    labelled_fraction: float = 0.5
    heldout: int = 16
    save_every_seconds: float = 120.0
    preview_every: int = 100
    metrics_every: int = 100
    status_every_seconds: float = 2.0
    device: str = "auto"
    cpu_threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.batch_size < 1 or self.lr <= 0 or self.heldout < 0 or not 0 <= self.occluder_probability <= 1
                or not 0 <= self.hull_jitter <= 0.2):
            raise ConfigError("XSeg options need batch_size >= 1, lr > 0, heldout >= 0, occluder_probability in "
                              "[0, 1], hull_jitter in [0, 0.2]")
        self.model_config()  # validates resolution/channels

    def model_config(self) -> XSegConfig:
        return XSegConfig(int(self.resolution), tuple(int(c) for c in self.channels), int(self.bottleneck),
                          bool(self.prior), bool(self.hull_input))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> XSegOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(int(c) for c in known["channels"])
        return cls(**known)


def default_run_dir(project: Any, name: str = "default") -> Path:
    """``PROJECT/xseg/<name>`` (kept out of ``models/`` so the face-run listing never sees it)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"XSeg run names are plain names, got {name!r}", hint="e.g. --run default")
    root = Path(getattr(project, "root", project))
    return root / "xseg" / name


def project_folders(project: Any) -> list[Path]:
    root = Path(getattr(project, "root", project))
    return [root / "aligned" / "src", root / "aligned" / "dst"]


# ----------------------------------------------------------------------------------------------------------
# the trainer


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of two binary (B, 1, H, W) masks (1 when both are empty)."""
    p, t = pred > 0.5, target > 0.5
    inter = (p & t).sum((1, 2, 3)).float()
    union = (p | t).sum((1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class XSegTrainer(RunControl):
    """Train :class:`XSegLite` on faceset folders; the face trainer's control surface and run loop
    (:mod:`workbench.train.loop`), so the same callbacks drive it."""

    def __init__(self, options: XSegOptions, folders: list[str | Path], *, run_dir: str | Path | None = None,
                 callbacks: list[Callback] | None = None, bank: SegBank | None = None):
        self.options = o = options
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks or [])
        self.device = resolve_device(o.device)
        self.dist = DistContext()
        self.ranks_in_sync = True
        self.notes: list[str] = []
        self._init_control(speed_window=30)
        self.step = 0
        self.resumed = False
        self.data = bank if bank is not None else load_seg_bank(folders, o.resolution, min_faces=max(2, o.batch_size))
        self.rng = np.random.default_rng(o.seed)
        self.gen = torch.Generator(device="cpu").manual_seed(o.seed)
        self._split()
        torch.manual_seed(o.seed)
        self.model = XSegLite(o.model_config()).to(self.device)
        # start from the average outline of the training faces (a resumed run overwrites it below)
        train = torch.as_tensor(self.train_idx)
        self.model.init_prior(self.data.targets.index_select(0, train).float().mean(0) / 255.0,
                              self.data.hulls.index_select(0, train).float().mean(0) / 255.0)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if o.ema > 0 else None
        if self.device.type == "cpu" and o.cpu_threads == 0:
            self.callbacks.insert(0, CpuThreadTuner(max(1, torch.get_num_threads())))
        elif o.cpu_threads > 0:
            torch.set_num_threads(o.cpu_threads)
        if self.run_dir is not None and checkpoint_path(self.run_dir).exists():
            self._restore(load_xseg_checkpoint(checkpoint_path(self.run_dir)))
            self.resumed = True

    # -- data -------------------------------------------------------------------------------------
    def _split(self) -> None:
        """Held-out faces (never trained on): labelled ones when there are enough, else hull faces with
        fixed synthetic occluders. The eval set is drawn once, so IoU is comparable over time."""
        o, bank = self.options, self.data
        n = len(bank)
        rng = np.random.default_rng(o.seed + 1)
        labelled = np.flatnonzero(bank.labelled)
        pool = labelled if len(labelled) >= 4 else np.arange(n)
        k = min(o.heldout, len(pool) // 4) if len(pool) >= 4 else 0
        held = rng.choice(pool, size=k, replace=False) if k else np.zeros(0, int)
        self.heldout = np.sort(held)
        self.train_idx = np.setdiff1d(np.arange(n), self.heldout)
        self.train_labelled = np.intersect1d(self.train_idx, labelled)
        self.train_unlabelled = np.setdiff1d(self.train_idx, labelled)
        self.eval_kind = "labels" if len(labelled) >= 4 else "hull+occluders"
        if k:
            g = torch.Generator(device="cpu").manual_seed(o.seed + 2)
            erng = np.random.default_rng(o.seed + 2)
            self.eval_images, self.eval_hulls, self.eval_targets = make_batch(
                bank, self.heldout, torch.device("cpu"), g, erng, occluder_probability=1.0, augment=False)

    def _indices(self) -> np.ndarray:
        o = self.options
        b = o.batch_size
        lab, unl = self.train_labelled, self.train_unlabelled
        if len(lab) and len(unl):  # labels take priority: a fixed share of each batch
            n_lab = int(np.clip(round(b * o.labelled_fraction), 1, b - 1)) if b > 1 else 1
            return np.concatenate([self.rng.choice(lab, n_lab), self.rng.choice(unl, b - n_lab)])[:b]
        return self.rng.choice(lab if len(lab) else unl, b)

    # -- one step ---------------------------------------------------------------------------------
    @staticmethod
    def loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        inter = (p * target).sum((1, 2, 3))
        dice = 1 - ((2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)).mean()
        return bce + 0.5 * dice, {"bce": float(bce.detach()), "dice": float(dice.detach())}

    def train_step(self) -> dict[str, float]:
        self.model.train()
        images, hulls, targets = make_batch(self.data, self._indices(), self.device, self.gen, self.rng,
                                            occluder_probability=self.options.occluder_probability,
                                            random_warp=self.options.random_warp,
                                            hull_jitter=self.options.hull_jitter if self.options.hull_input else 0.0)
        logits = self.model(images, hulls)
        loss, parts = self.loss(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if self.ema_model is not None:
            decay = min(self.options.ema, (1 + self.step) / (10 + self.step))  # a short warm-up, as usual
            with torch.no_grad():
                for avg, cur in zip(self.ema_model.parameters(), self.model.parameters()):
                    avg.lerp_(cur, 1 - decay)
        return {"loss": float(loss.detach()), **parts}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, hulls: torch.Tensor | None = None) -> torch.Tensor:
        net = self.served_model
        net.eval()
        return torch.sigmoid(net(images.to(self.device), None if hulls is None else hulls.to(self.device))).cpu()

    @property
    def served_model(self) -> XSegLite:
        """The weights that are evaluated, previewed, saved as ``model`` and applied: the average when on."""
        return self.ema_model if self.ema_model is not None else self.model

    def evaluate(self) -> dict[str, float]:
        """Mean IoU on the held-out faces (and, for reference, the plain hull's IoU on the same targets)."""
        if not len(self.heldout):
            return {}
        pred = torch.cat([self.predict(self.eval_images[i:i + 16], self.eval_hulls[i:i + 16])
                          for i in range(0, len(self.heldout), 16)])
        out = {"iou": float(iou(pred, self.eval_targets).mean()), "heldout": int(len(self.heldout)),
               "eval_kind": self.eval_kind}
        if self.eval_kind != "labels":
            out["hull_iou"] = float(iou(self.eval_hulls, self.eval_targets).mean())
        return out

    def preview(self) -> np.ndarray:
        """Rows of image | label | prediction (held-out faces, else training faces)."""
        if len(self.heldout):
            images, hulls, targets = self.eval_images[:4], self.eval_hulls[:4], self.eval_targets[:4]
        else:
            images, hulls, targets = make_batch(self.data, np.arange(min(4, len(self.data))), torch.device("cpu"),
                                                torch.Generator().manual_seed(0), np.random.default_rng(0),
                                                augment=False)
        pred = self.predict(images, hulls)
        rows = []
        for img, tgt, prd in zip(images, targets, pred):
            im = img.permute(1, 2, 0).numpy()
            rows.append(np.concatenate([im, np.repeat(tgt.permute(1, 2, 0).numpy(), 3, 2),
                                        np.repeat(prd.permute(1, 2, 0).numpy(), 3, 2)], axis=1))
        return np.concatenate(rows, axis=0).astype(np.float32)

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        return {
            "schema_version": CHECKPOINT_SCHEMA, "kind": CHECKPOINT_KIND,
            "model_config": self.options.model_config().to_dict(), "options": self.options.to_dict(),
            "step": self.step, "saved_at": time.time(),
            "model": self.served_model.state_dict(), "train_model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": self.gen.get_state(), "numpy": json.dumps(self.rng.bit_generator.state)},
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if XSegConfig.from_dict(ckpt["model_config"]) != self.options.model_config():
            raise TrainingError("this XSeg run was trained with another architecture",
                                self.run_dir, "use another --run name, or the same resolution/channels")
        self.model.load_state_dict(ckpt.get("train_model", ckpt["model"]))  # older checkpoints: one set
        if self.ema_model is not None:
            self.ema_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.last_save_step, self.last_save_time = self.step, float(ckpt.get("saved_at", 0.0))
        rng = ckpt.get("rng") or {}
        if "torch" in rng:
            self.gen.set_state(rng["torch"])
        if "numpy" in rng:
            self.rng.bit_generator.state = json.loads(rng["numpy"])

    def save(self) -> Path | None:
        if self.run_dir is None:
            return None
        if not all(torch.isfinite(p).all() for p in (*self.model.parameters(), *self.served_model.parameters())):
            self._event({"kind": "save_refused", "step": self.step, "reason": "non-finite weights"})
            return None
        return self._write_checkpoint(checkpoint_path(self.run_dir), self.checkpoint_dict())

    def effective_resolution(self) -> int:
        return self.options.resolution

    def mean_losses(self) -> dict[str, float]:
        if not self._recent:
            return {}
        return {k: float(np.mean([r[k] for r in self._recent if math.isfinite(r[k])] or [float("nan")]))
                for k in self._recent[-1]}

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, steps: int | None = None, seconds: float | None = None) -> TrainResult:
        """Train until ``steps`` more steps, ``seconds``, ``target_steps`` or a stop command; saves at the end."""
        return RunLoop(self, steps, seconds).run()


def load_xseg_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read an XSeg checkpoint with ``weights_only=True``; raises TrainingError on a bad or foreign file."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise TrainingError("no XSeg checkpoint here", path, "train one first: workbench xseg train PROJECT") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        raise TrainingError(f"cannot read the XSeg checkpoint ({exc})", path, "delete it and train again") from exc
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise TrainingError("this is not an XSeg checkpoint", path, "point at PROJECT/xseg/<run>")
    if int(ckpt.get("schema_version", 0)) > CHECKPOINT_SCHEMA:
        raise TrainingError("the XSeg checkpoint is newer than this workbench", path, "upgrade the workbench package")
    return ckpt


# ----------------------------------------------------------------------------------------------------------
# run folders: config, foreground, background


def write_xseg_config(run_dir: Path, options: XSegOptions, folders: list[Path], max_steps: int | None,
                      max_seconds: float | None) -> None:
    atomic_write_json(run_dir / CONFIG_NAME, {"schema_version": 1, "kind": "xseg", "options": options.to_dict(),
                                               "folders": [str(f) for f in folders], "max_steps": max_steps,
                                               "max_seconds": max_seconds, "written": time.time()})


def read_xseg_config(run_dir: str | Path) -> tuple[XSegOptions, list[Path], int | None, float | None]:
    path = Path(run_dir) / CONFIG_NAME
    data = _read_json(path)
    if not data or data.get("kind") != "xseg":
        raise TrainingError("no XSeg config.json in this run folder", path.parent,
                            "start it with `workbench xseg train PROJECT`")
    return (XSegOptions.from_dict(data.get("options", {})), [Path(f) for f in data["folders"]],
            data.get("max_steps"), data.get("max_seconds"))


def _prepare(run_dir: Path, options: XSegOptions, folders: list[str | Path] | None, steps: int | None,
             seconds: float | None) -> list[Path]:
    pid = trainer_pid(run_dir)
    if pid is not None:
        raise TrainingError(f"an XSeg trainer is already running on this run folder (pid {pid})", run_dir,
                            "stop it first: workbench xseg stop PROJECT")
    if folders is None:
        folders = project_folders(run_dir.parent.parent)
    resolved = [Path(f).resolve() for f in folders]
    if not any(f.is_dir() for f in resolved):
        raise TrainingError("none of the faceset folders exists", resolved[0] if resolved else run_dir,
                            "extract faces first (workbench extract PROJECT)")
    if checkpoint_path(run_dir).exists():
        ckpt = load_xseg_checkpoint(checkpoint_path(run_dir))
        if XSegConfig.from_dict(ckpt["model_config"]) != options.model_config():
            arch = XSegConfig.from_dict(ckpt["model_config"])
            options = replace(options, resolution=arch.resolution, bottleneck=arch.bottleneck,
                              channels=arch.channels, prior=arch.prior, hull_input=arch.hull_input)
    run_dir.mkdir(parents=True, exist_ok=True)
    take_commands(run_dir)  # stale commands from a dead trainer must not stop the new one
    write_xseg_config(run_dir, options, resolved, steps, seconds)
    return resolved


class XSegProgress(ProgressLine):
    """The face trainer's console line with XSeg's numbers: loss, BCE and Dice."""

    def _line(self, trainer: Any) -> str:
        losses = trainer.mean_losses()
        ms = 1000.0 / trainer.it_per_s if trainer.it_per_s else 0.0
        return (f"[{time.strftime('%H:%M:%S')}][#{trainer.step:06d}][{ms:.0f}ms][loss {losses.get('loss', 0):.4f}]"
                f"[bce {losses.get('bce', 0):.4f}][dice {losses.get('dice', 0):.4f}][{trainer.state}]")


def _run_locked(run_dir: Path, progress: bool = False, callbacks: list[Callback] | None = None,
                config: tuple | None = None) -> TrainResult:
    from ..train.foreground import run_locked

    options, folders, steps, seconds = config if config is not None else read_xseg_config(run_dir)

    def make_callbacks() -> list[Callback]:
        return [RunDirWriter(run_dir, steps), *([XSegProgress()] if progress else []), *(callbacks or [])]

    return run_locked(run_dir, make_callbacks,
                      lambda cbs: XSegTrainer(options, folders, run_dir=run_dir, callbacks=cbs),
                      steps=steps, seconds=seconds)


def train_xseg(run_dir: str | Path, options: XSegOptions = XSegOptions(), *,
               folders: list[str | Path] | None = None, steps: int | None = None, seconds: float | None = None,
               progress: bool = False, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train in this process with the full run-folder protocol (the foreground twin of :func:`start_xseg`).

    ``folders`` default to ``PROJECT/aligned/src`` and ``dst`` for a run in ``PROJECT/xseg/<name>``.
    """
    run_dir = Path(run_dir).resolve()
    _prepare(run_dir, options, folders, steps, seconds)
    return _run_locked(run_dir, progress, callbacks)


def start_xseg(run_dir: str | Path, options: XSegOptions = XSegOptions(), *,
               folders: list[str | Path] | None = None, steps: int | None = None, seconds: float | None = None,
               env: dict[str, str] | None = None):
    """Start XSeg training in a detached process (``python -m workbench.segment RUN``) and return at once.

    Returns a :class:`workbench.train.runs.TrainerHandle`; watch with ``read_status``, steer with
    ``send_command(run_dir, "pause"|"resume"|"save"|"preview"|"stop")``.
    """
    from ..train.runs import TrainerHandle

    run_dir = Path(run_dir).resolve()
    _prepare(run_dir, options, folders, steps, seconds)
    previous = _read_json(run_dir / STATUS_NAME) or {}
    write_status(run_dir, {"step": previous.get("step", 0), "state": "starting", "pid": None, "last_error": None,
                           "started": time.time()})
    return TrainerHandle(run_dir, spawn_detached(run_dir, ["-m", "workbench.segment", str(run_dir)], env))


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.segment RUN_DIR``: the background XSeg trainer."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m workbench.segment RUN_DIR", file=sys.stderr)
        return 2
    from ..train.foreground import background_main

    return background_main(Path(args[0]), read_xseg_config,
                           lambda run_dir, config: _run_locked(run_dir, config=config), "xseg training")
