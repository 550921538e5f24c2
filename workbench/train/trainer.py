"""The training loop: DFL's SAEHD/Quick96 trainer as a small class with callbacks.

``Trainer(options, src_dir, dst_dir, run_dir=...)`` builds the data, model, optional discriminators and
optimisers, resumes from ``RUN/checkpoints/latest.pt`` when it exists, and ``run()`` trains until a step/time
limit, ``target_steps`` or a stop request. Everything else talks to it through callbacks (minGPT's
``on_batch_end``): :class:`workbench.train.writer.RunDirWriter` turns it into the run-folder protocol, a notebook
can pass its own plotting callback and run 50 steps in-process through the same code path.

Robustness built in:

* collapse guard: a non-finite loss or gradient norm skips the update; ``collapse_patience`` of them in a row
  roll back to the last good checkpoint (the event is reported to the callbacks and status.json);
* out of memory: the state is saved, smaller batches are probed, and a TrainingError names one that fits;
* determinism: every random draw (sampling, augmentation, lr_dropout masks) comes from generators whose
  states are checkpointed, so train N + resume M equals N+M uninterrupted steps;
* DDP: under ``torchrun`` every rank draws the same global batch, augments it, keeps its slice, and gradients
  are averaged (gloo on CPU, NCCL on CUDA); rank 0 alone writes the run folder.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import __version__
from ..errors import TrainingError
from ..losses import psnr_metric, ssim_metric
from ..optim import AdaBelief, RMSprop, lr_cos_factor, warmup_factor
from . import checkpoint as ck
from .callback import Callback, TrainResult
from .data import TrainData, gather
from .device import DistContext, keep_freed_cpu_memory, resolve_device, resolve_precision
from .loop import RunControl, RunLoop
from .options import TrainOptions
from .preview import make_grid, predict_preview, preview_rows
from .runs import backups_dir, checkpoint_path
from .step import (
    TrainForward,
    augment_options,
    augment_side,
    code_discriminator_loss,
    gan_discriminator_loss,
    generator_losses,
    progressive_resolution,
)
from .tuning import CpuThreadTuner


class Trainer(RunControl):
    """Train a DF/LIAE autoencoder on two facesets (:class:`workbench.train.loop.RunLoop` drives a session).

    Args:
        options: :class:`TrainOptions` (pretraining settings are forced by ``options.effective()``).
        src_dir, dst_dir: aligned-face folders (the same generic faceset twice when pretraining).
        run_dir: the run folder for checkpoints (``None``: in-memory only, e.g. a notebook demo).
        callbacks: :class:`Callback` objects (rank 0 only under DDP).
        pretrained: a run folder or checkpoint to start a *new* run from (§3.6: reuse a pretrained model).
        loss_hook: ``f(step, batch_size, loss) -> loss`` called on every generator loss (tests inject NaN or
            out-of-memory errors with it).
        dist_context: the torch.distributed place (default: from the environment).

    Raises:
        TrainingError: facesets too small, checkpoint from another config, device missing, ...
    """

    def __init__(self, options: TrainOptions, src_dir: str | Path, dst_dir: str | Path, *,
                 run_dir: str | Path | None = None, callbacks: Iterable[Callback] = (),
                 pretrained: str | Path | None = None,
                 loss_hook: Callable[[int, int, torch.Tensor], torch.Tensor] | None = None,
                 dist_context: DistContext | None = None):
        from ..models import CodeDiscriminator, UNetPatchDiscriminator, build_model

        self.requested_options = options
        self.options = opts = options.effective()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.loss_hook = loss_hook
        self.dist = dist_context or DistContext.from_env(opts.device)
        self.device = resolve_device(opts.device, self.dist.local_rank)
        if opts.batch_size % self.dist.world:
            raise TrainingError(f"batch size {opts.batch_size} does not split evenly over {self.dist.world} processes",
                                hint=f"use a multiple of {self.dist.world}")
        self.local_batch = opts.batch_size // self.dist.world
        self.src_dir, self.dst_dir = Path(src_dir), Path(dst_dir)
        self.config = opts.model_config()
        self.precision, precision_note = resolve_precision(opts.precision, self.device)
        if self.device.type == "cpu":
            keep_freed_cpu_memory()  # no page faults for the activations every step re-allocates
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

        # ---- data (every rank holds the faces and draws the same global batch) ----
        self.data = TrainData(src_dir, dst_dir, opts, global_batch=opts.batch_size)

        # ---- networks, built from the seed without touching the caller's global RNG ----
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            self.model = build_model(self.config)
            self.gan_d = (UNetPatchDiscriminator(opts.effective_gan_patch_size, 3, opts.gan_dims)
                          if opts.gan_power > 0 else None)
            self.code_d = None
            if opts.true_face_power > 0:
                c, r, _ = self.model.code_shape
                self.code_d = CodeDiscriminator(c, r)
        self._frozen = self._frozen_parameters()
        for p in self._frozen:
            p.requires_grad_(False)
        memory_format = torch.channels_last if opts.channels_last else torch.preserve_format
        for net in (self.model, self.gan_d, self.code_d):
            if net is not None:
                net.to(self.device, memory_format=memory_format)

        # ---- generators: sampling (numpy, inside TrainData), augmentation, lr_dropout ----
        self.aug_gen = torch.Generator("cpu").manual_seed(opts.seed * 1000 + 3)
        self.dropout_gen = torch.Generator("cpu").manual_seed(opts.seed * 1000 + 4)
        self.aug_src = augment_options(opts, "src")
        self.aug_dst = augment_options(opts, "dst")

        self.opt = self._make_optimizer(self.model.parameters())
        self.gan_opt = self._make_optimizer(self.gan_d.parameters()) if self.gan_d is not None else None
        self.code_opt = self._make_optimizer(self.code_d.parameters()) if self.code_d is not None else None
        fp16 = self.precision == "fp16"
        # fp16: losses are O(10) sums, so start the scale at 2^10 rather than 2^16 (fewer skipped first steps)
        self.scaler = torch.amp.GradScaler(self.device.type, init_scale=1024.0, enabled=fp16)
        self.d_scaler = torch.amp.GradScaler(self.device.type, init_scale=1024.0, enabled=fp16)

        # ---- bookkeeping (the control surface and speed figures: RunControl) ----
        self._init_control(speed_window=50)
        self.step = 0
        self.loss_history: list[list[float]] = []
        self.last_losses: dict[str, float] = {}
        self._bad_streak = 0
        self._memory_ckpt: dict[str, Any] | None = None
        self.notes: list[str] = [precision_note] if precision_note else []
        banks = (self.data.src,) if self.data.dst is self.data.src else (self.data.src, self.data.dst)
        for bank in banks:  # files with broken metadata or pixels: named, skipped, training goes on
            self.notes += [f"skipped {path.name} ({bank.folder.name}): {why}" for path, why in bank.broken]
        self._identity_probe: Any = None  # built at the first metrics step (workbench.quality.IdentityProbe)
        self._identity_faces: tuple[np.ndarray, list[np.ndarray]] | None = None
        self.ranks_in_sync: bool | None = None

        # ---- resume, or start from a pretrained model ----
        self.resumed = False
        ckpt_file = checkpoint_path(self.run_dir) if self.run_dir is not None else None
        if ckpt_file is not None and ckpt_file.exists():
            self._restore(ck.read_checkpoint(ckpt_file, opts, map_location=self.device), restore_rng=True)
            self.resumed = True
            self.last_save_step = self.step
        elif pretrained is not None:
            ckpt = ck.read_checkpoint(pretrained, opts, map_location=self.device)
            self.model.load_state_dict(ckpt["model"])
            if ckpt.get("pretrain") and not opts.pretrain:
                self._end_pretraining()
            self.notes.append(f"initialised from pretrained model {pretrained} (step {ckpt.get('step')})")

        # ---- the training forward module (optionally compiled, DDP-wrapped) ----
        self.train_forward: nn.Module = TrainForward(
            self.model, need_swap=opts.bg_style_power > 0, need_codes=opts.true_face_power > 0,
            need_style_swap=opts.face_style_power > 0)
        self.gan_step_d = self.gan_d
        self.code_step_d = self.code_d
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_forward = DDP(self.train_forward, device_ids=ids)
            if self.gan_d is not None:
                self.gan_step_d = DDP(self.gan_d, device_ids=ids)
            if self.code_d is not None:
                self.code_step_d = DDP(self.code_d, device_ids=ids)
        if opts.compile:
            self.train_forward = torch.compile(self.train_forward)

        rows = preview_rows(opts.batch_size, opts.resolution)
        self._preview_idx = self.data.preview_indices(rows)
        if self.device.type == "cpu":
            if opts.cpu_threads:
                torch.set_num_threads(opts.cpu_threads)
            elif not self.dist.enabled and torch.get_num_threads() > 1:
                self.callbacks.insert(0, CpuThreadTuner(torch.get_num_threads()))

    # ------------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------------
    def _frozen_parameters(self) -> list[nn.Parameter]:
        """LIAE with random_warp off trains everything but inter_AB (DFL §3.3)."""
        if self.config.archi == "liae" and not self.options.random_warp:
            return list(self.model.parameter_groups()["inter_AB"])
        return []

    def _make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        opts = self.options
        params = list(params)
        # multi-tensor updates (far fewer kernel launches); flat buffers on CPU, except under DDP, whose reducer
        # keeps its own references to the gradients
        dfl = dict(lr=opts.lr, lr_dropout=opts.lr_dropout, generator=self.dropout_gen, foreach=True,
                   flat=False if self.dist.enabled else None)
        if opts.optimizer == "adabelief":
            return AdaBelief(params, **dfl)
        if opts.optimizer == "rmsprop":
            return RMSprop(params, **dfl)
        fused = self.device.type in ("cuda", "cpu")
        return torch.optim.Adam(params, lr=opts.lr, betas=(0.9, 0.999), eps=1e-7,
                                fused=fused, foreach=None if fused else True)

    def _end_pretraining(self) -> None:
        """DFL §3.6: leaving pretraining re-initialises the inter(s) and starts counting from 0."""
        gen = torch.Generator("cpu").manual_seed(self.options.seed * 1000 + 5)
        self.model.reinit_inter(gen)
        self.step = 0
        self.loss_history = []
        self.opt = self._make_optimizer(self.model.parameters())
        self.notes.append("pretraining ended: inters re-initialised, step reset to 0, optimiser state reset")

    # ------------------------------------------------------------------------------------------
    # checkpoint
    # ------------------------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        """The self-describing checkpoint (see :mod:`workbench.train.checkpoint`)."""
        return {
            "schema_version": ck.SCHEMA_VERSION, "kind": ck.KIND, "workbench_version": __version__,
            "model_config": self.config.to_dict(), "options": self.requested_options.to_dict(),
            "step": int(self.step), "pretrain": bool(self.options.pretrain), "saved_at": time.time(),
            "model": self.model.state_dict(),
            "discriminators": {"gan": None if self.gan_d is None else self.gan_d.state_dict(),
                               "code": None if self.code_d is None else self.code_d.state_dict()},
            "optimizers": {"model": self.opt.state_dict(),
                           "gan": None if self.gan_opt is None else self.gan_opt.state_dict(),
                           "code": None if self.code_opt is None else self.code_opt.state_dict()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": ck.capture_rng(self._parts()),
            "loss_history": self.loss_history[-ck.LOSS_HISTORY_KEEP:],
            "collapse_events": list(self.collapse_events[-50:]),
        }

    def _parts(self) -> ck.TrainParts:
        return ck.TrainParts(self.model, self.opt, self.gan_d, self.gan_opt, self.code_d, self.code_opt,
                             self.scaler, self.aug_gen, self.dropout_gen, self.data)

    def _restore(self, ckpt: dict[str, Any], *, restore_rng: bool) -> None:
        """Adopt a checkpoint (:func:`workbench.train.checkpoint.apply_checkpoint` does the loading)."""
        restored = ck.apply_checkpoint(ckpt, self._parts(), self.options, restore_rng_state=restore_rng)
        if restored.ends_pretraining:
            self._end_pretraining()
            return
        self.notes += restored.notes
        self.step = restored.step
        self.loss_history = restored.loss_history
        self.collapse_events = restored.collapse_events

    def _weights_finite(self) -> bool:
        nets = [n for n in (self.model, self.gan_d, self.code_d) if n is not None]
        return all(bool(torch.isfinite(p).all()) for n in nets for p in n.parameters())

    def save(self) -> Path | None:
        """Save a checkpoint (rank 0 writes ``RUN/checkpoints/latest.pt``; without a run folder: in memory).

        Refuses (returns None, reports an event) when the weights are not finite, so the latest
        checkpoint is always a good one to roll back to.
        """
        if not self._weights_finite():
            self._event({"kind": "save_refused", "step": self.step, "reason": "non-finite weights"})
            return None
        if self.run_dir is None:
            self._memory_ckpt = copy.deepcopy(self.checkpoint_dict())
            self.last_save_step, self.last_save_time = self.step, time.time()
            return None
        if not self.dist.is_main:
            self.last_save_step, self.last_save_time = self.step, time.time()
            return None
        opts = self.options

        def backup(path: Path) -> None:
            if opts.autobackup_every and self.step > 0 and self.step % opts.autobackup_every == 0:
                ck.write_backup(path, backups_dir(self.run_dir), self.step, opts.autobackup_keep)

        return self._write_checkpoint(checkpoint_path(self.run_dir), self.checkpoint_dict(), backup)

    def _rollback(self) -> None:
        """Reload the last good checkpoint's weights and optimiser state (data RNG keeps moving on)."""
        failing = self.step
        if self.dist.enabled:
            dist.barrier()
        if self.run_dir is not None and checkpoint_path(self.run_dir).exists():
            ckpt = ck.load_checkpoint(checkpoint_path(self.run_dir), map_location=self.device)
        elif self._memory_ckpt is not None:
            ckpt = self._memory_ckpt
        else:
            raise TrainingError(
                f"training collapsed (non-finite loss {self._bad_streak} times in a row) before any checkpoint existed",
                self.run_dir, "lower the learning rate, turn on clipgrad, or use precision fp32")
        events = list(self.collapse_events)
        self._restore(ckpt, restore_rng=False)
        self.collapse_events = events
        self._bad_streak = 0
        self._event({"kind": "rollback", "step": failing, "to_step": self.step, "time": time.time()})

    # ------------------------------------------------------------------------------------------
    # control (RunControl's commands, plus the DDP agreement)
    # ------------------------------------------------------------------------------------------
    def sync_control(self) -> None:
        """Under DDP rank 0 decides (it reads the command files) and every rank follows."""
        if not self.dist.enabled:
            return
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        flags = torch.tensor([self._stop, self._save_req, self._preview_req, self.paused], dtype=torch.int32,
                             device=comm)
        dist.broadcast(flags, 0)
        self._stop, self._save_req, self._preview_req, self.paused = (bool(v) for v in flags.tolist())

    # ------------------------------------------------------------------------------------------
    # one step
    # ------------------------------------------------------------------------------------------
    def current_lr(self, step: int | None = None) -> float:
        step = self.step if step is None else step
        o = self.options
        return o.lr * warmup_factor(step, o.warmup_steps) * lr_cos_factor(step, o.lr_cos_period)

    def effective_resolution(self) -> int:
        o = self.options
        if not o.progressive:
            return o.resolution
        return progressive_resolution(self.step, o.resolution, o.progressive_stage_steps)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _batch(self) -> tuple[Any, Any]:
        """Draw, gather and augment the global batch; keep this rank's slice."""
        o = self.options
        src_idx, dst_idx, ref_idx = self.data.next_indices()
        cl = o.channels_last
        src = gather(self.data.src, src_idx, self.device)
        dst = gather(self.data.dst, dst_idx, self.device)
        refs = gather(self.data.dst, ref_idx, self.device).images if ref_idx is not None else None
        eff = self.effective_resolution() if o.progressive else None
        s = augment_side(src, self.aug_src, self.aug_gen, references=refs, effective_res=eff, channels_last=cl)
        d = augment_side(dst, self.aug_dst, self.aug_gen, effective_res=eff, channels_last=cl)
        if self.dist.enabled:
            a, b = self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch
            s, d = s.slice(a, b), d.slice(a, b)
        return s, d

    def next_batch(self) -> tuple[Any, Any]:
        """The next augmented (src, dst) batch of this rank (what :meth:`train_step` consumes)."""
        return self._batch()

    def train_step(self, batch: tuple[Any, Any] | None = None) -> dict[str, float]:
        """One optimisation step on ``batch`` (default: the next one); returns batch-mean loss terms and ``lr``."""
        o = self.options
        s, d = batch if batch is not None else self._batch()
        lr = self.current_lr()
        for opt in (self.opt, self.gan_opt, self.code_opt):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

        with self._autocast():
            out = self.train_forward(s.warped, d.warped)
        total, terms = generator_losses(out, s, d, o, gan_d=self.gan_d, code_d=self.code_d, autocast=self._autocast)
        if self.loss_hook is not None:
            total = self.loss_hook(self.step, s.warped.shape[0], total)

        names = ["total", *terms]
        values = torch.stack([total.detach().float(), *(t.detach().float() for t in terms.values())])
        if self.dist.enabled:
            dist.all_reduce(values)
            values /= self.dist.world
        vals = dict(zip(names, values.tolist()))
        loss_ok = math.isfinite(vals["total"])

        grad_ok = True
        if loss_ok:
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            if self.scaler.is_enabled():
                self.scaler.unscale_(self.opt)
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            grad_ok = bool(torch.isfinite(norm))
            if grad_ok and o.clipgrad:
                torch.nn.utils.clip_grads_with_norm_(params, 1.0, norm)
            if self.scaler.is_enabled():
                self.scaler.step(self.opt)  # skips the update itself when the scaled grads overflowed
                self.scaler.update()
                grad_ok = True  # fp16 overflow is routine and handled by the scaler, not a collapse
                if self.scaler.get_scale() < 2.0 ** -10:  # ~20 overflows in a row: fp16 cannot represent them
                    raise TrainingError(
                        "fp16 gradients overflow at every step (the gradient scaler gave up)", self.run_dir,
                        "use --precision bf16 (same speed on recent GPUs, fp32 range) or fp32")
            elif grad_ok:
                self.opt.step()
            vals["grad_norm"] = float(norm)
            if grad_ok:
                self._discriminator_steps(out, s, vals)
        if self.dist.enabled:  # identical decision on every rank (norms are of all-reduced grads)
            ok = torch.tensor([loss_ok and grad_ok], dtype=torch.int32,
                              device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            loss_ok = grad_ok = bool(ok.item())
        vals["lr"] = lr
        self.step += 1
        if loss_ok and grad_ok:
            self._bad_streak = 0
            self.loss_history.append([self.step, vals["src"], vals["dst"]])
            if len(self.loss_history) > 2 * ck.LOSS_HISTORY_KEEP:
                self.loss_history = self.loss_history[-ck.LOSS_HISTORY_KEEP:]
        else:
            self.opt.zero_grad(set_to_none=True)
            self._bad_streak += 1
            what = "loss" if not loss_ok else "gradient"
            self._event({"kind": "skip", "step": self.step, "what": what, "time": time.time()})
            if self._bad_streak >= o.collapse_patience:
                self._rollback()
        return vals

    def _discriminator_steps(self, out: dict[str, torch.Tensor], s: Any, vals: dict[str, float]) -> None:
        o = self.options
        for disc, opt, name in ((self.gan_step_d, self.gan_opt, "d_gan"), (self.code_step_d, self.code_opt, "d_code")):
            if disc is None:
                continue
            opt.zero_grad(set_to_none=True)
            if name == "d_gan":
                loss = gan_discriminator_loss(disc, out, s, o, self._autocast)
            else:
                loss = code_discriminator_loss(disc, out, self._autocast)
            if not torch.isfinite(loss):
                continue
            self.d_scaler.scale(loss).backward()
            if self.d_scaler.is_enabled():
                self.d_scaler.step(opt)
                self.d_scaler.update()
            else:
                if o.clipgrad:
                    torch.nn.utils.clip_grad_norm_(disc.parameters(), 1.0)
                opt.step()
            vals[name] = float(loss.detach())

    # ------------------------------------------------------------------------------------------
    # previews and metrics (no randomness: they never change what training draws)
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> np.ndarray:
        """The current preview grid (H, W, 3) float32 on the fixed preview faces."""
        src_idx, dst_idx = self._preview_idx
        src = gather(self.data.src, src_idx, self.device)
        dst = gather(self.data.dst, dst_idx, self.device)
        with self._autocast():
            images = predict_preview(self.model, src.images, src.masks["full_face"], dst.images,
                                     dst.masks["full_face"])
        return make_grid(images)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """SSIM and PSNR of src->src and dst->dst on the held-out faces, inside the face (hull) mask."""
        out: dict[str, float] = {}
        for side, bank, idx in (("src", self.data.src, self.data.src_heldout),
                                ("dst", self.data.dst, self.data.dst_heldout)):
            if len(idx) == 0:
                continue
            batch = gather(bank, idx, self.device)
            x, m = batch.images, batch.masks["full_face"]
            with self._autocast():
                recon, _ = self.model.decode(self.model.encode(x, side), side)
            recon = recon.float()
            out[f"ssim_{side}"] = float(ssim_metric(recon * m, x * m).mean())
            out[f"psnr_{side}"] = float(psnr_metric(recon * m, x * m).mean())
            out[f"heldout_{side}"] = int(len(idx))
        if self.options.metrics_identity and self.data.dst is not self.data.src:  # not when pretraining
            out.update(self.identity_metrics())
        return out

    def _identity_setup(self) -> None:
        """Reference embeddings of both facesets and the dst faces to swap, at the model's resolution."""
        from ..quality import IDENTITY_PROBE_FACES, REFERENCE_FACES, IdentityProbe, even_sample
        from .data import face_landmarks

        o = self.options

        def faces(bank, indices) -> list[tuple[np.ndarray, np.ndarray]]:
            out = []
            for i in indices:
                img = bank.images[int(i)].permute(1, 2, 0).numpy().astype(np.float32) / 255.0
                out.append((img, face_landmarks(bank.paths[int(i)], o.face_type, o.resolution)))
            return out

        src = faces(self.data.src, even_sample(list(self.data.src_train), REFERENCE_FACES))
        dst = faces(self.data.dst, even_sample(list(self.data.dst_train), REFERENCE_FACES))
        self._identity_probe = IdentityProbe(src, dst)
        # the held-out dst faces first, topped up with training dst faces (a swap is never a training target)
        extra = [int(i) for i in even_sample(list(self.data.dst_train), IDENTITY_PROBE_FACES)]
        chosen = ([int(i) for i in self.data.dst_heldout] + [i for i in extra if i not in self.data.dst_heldout])
        chosen = chosen[:IDENTITY_PROBE_FACES]
        self._identity_faces = (np.asarray(chosen, np.int64),
                                [face_landmarks(self.data.dst.paths[i], o.face_type, o.resolution) for i in chosen])

    @torch.no_grad()
    def identity_metrics(self) -> dict[str, Any]:
        """How much src->dst swaps of a few dst faces look like the source (dlib embedding; see quality).

        Returns ``id_closer_to_src`` (share of swaps nearer the source reference than the destination's),
        ``id_distance_src``/``id_distance_dst`` (medians) and ``id_faces``; ``{}`` when dlib is unusable.
        """
        from ..errors import WorkbenchError

        try:
            if self._identity_probe is None:
                self._identity_setup()
            idx, landmarks = self._identity_faces
            batch = gather(self.data.dst, idx, self.device)
            with self._autocast():
                swapped, _ = self.model.swap(batch.images)
            faces = swapped.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            return self._identity_probe.score(list(faces), landmarks)
        except (WorkbenchError, ImportError, RuntimeError, ValueError) as exc:
            if self.options.metrics_identity and not any("identity score" in n for n in self.notes):
                self.notes.append(f"identity score unavailable: {exc}")
            return {}

    # ------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------
    def mean_losses(self) -> dict[str, float]:
        """Loss terms averaged over the last (up to) 50 steps."""
        if not self._recent:
            return {}
        keys = [k for k in self._recent[-1] if k not in ("lr",)]
        out = {}
        for k in keys:
            vals = [r[k] for r in self._recent if k in r and math.isfinite(r[k])]
            if vals:
                out[k] = float(sum(vals) / len(vals))
        return out

    def run(self, steps: int | None = None, seconds: float | None = None) -> TrainResult:
        """Train until ``steps`` more steps, ``seconds``, ``target_steps`` or a stop request.

        The model is saved at the end (and periodically per the options). Raises TrainingError for
        problems the user must fix (after saving what can be saved); the callbacks see ``on_end``.
        """
        return RunLoop(self, steps, seconds).run()

    # ---- the loop's hooks (see workbench.train.loop) ----
    def loop_step(self) -> dict[str, float]:
        try:
            vals = self.train_step()
        except torch.OutOfMemoryError as exc:
            self._handle_oom(exc)  # saves, then raises a TrainingError naming a batch size that fits
        self.last_losses = vals
        return vals

    def wants_first_preview(self) -> bool:
        return bool(self.options.preview_every)

    def save_due(self, seconds_since_save: float) -> bool:
        o = self.options
        return bool((o.save_every_seconds and seconds_since_save >= o.save_every_seconds) or (
            o.save_every_steps and self.step % o.save_every_steps == 0) or (
            o.autobackup_every and self.step % o.autobackup_every == 0))

    def before_session(self) -> bool:
        if self.step == 0 and self.last_save_step is None:
            self.save()  # a good checkpoint to roll back to from the very start (DFL saves at iteration 1)
            return True
        return False

    def finish_session(self, start_step: int) -> None:
        self.check_ranks_in_sync()
        if self.dist.is_main and self.options.preview_every and self.step > start_step and \
                self._preview_step != self.step:
            self._emit_preview()  # the preview shown after a stop is the final model's, not an older step's

    def save_after_error(self, exc: BaseException) -> None:
        try:
            if not isinstance(exc, TrainingError) or "out of memory" not in exc.message:
                if self.last_save_step != self.step:
                    self.save()
        except Exception as save_exc:  # noqa: BLE001 - keep the original error
            self.notes.append(f"saving after the error failed too: {save_exc}")

    def check_ranks_in_sync(self) -> bool:
        """Under DDP: compare a checksum of the weights across ranks (recorded as an event; True alone)."""
        if not self.dist.enabled:
            return True
        with torch.no_grad():
            total = torch.zeros(2, dtype=torch.float64, device=self.device)
            for i, p in enumerate(self.model.parameters()):
                total[0] += p.double().sum()
                total[1] += (p.double() * ((i % 7) + 1)).abs().sum()
        gathered = [torch.zeros_like(total) for _ in range(self.dist.world)]
        dist.all_gather(gathered, total)
        ok = all(torch.equal(g, gathered[0]) for g in gathered)
        self.ranks_in_sync = ok
        self._event({"kind": "ranks_in_sync", "step": self.step, "ok": ok,
                     "checksums": [g.tolist() for g in gathered]})
        return ok

    # ------------------------------------------------------------------------------------------
    # out of memory
    # ------------------------------------------------------------------------------------------
    def _free_memory(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _fits(self, batch: int) -> bool:
        """Does a forward+backward at this per-process batch size fit? (no update, no RNG use)."""
        res = self.options.resolution
        x = torch.rand(batch, 3, res, res, generator=torch.Generator("cpu").manual_seed(0)).to(self.device)
        m = torch.ones(batch, 1, res, res, device=self.device)
        from .step import SideTensors

        side = SideTensors(x, x, m, m)
        try:
            with self._autocast():
                out = self.train_forward(x, x)
            total, _ = generator_losses(out, side, side, self.options, gan_d=self.gan_d, code_d=self.code_d,
                                        autocast=self._autocast)
            if self.loss_hook is not None:
                total = self.loss_hook(self.step, batch, total)
            total.backward()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            self._free_memory()

    def _handle_oom(self, exc: BaseException) -> None:
        """Save (nothing is lost: the failed step never updated the weights), probe smaller batches, explain."""
        self._free_memory()
        self.save()
        b = self.local_batch
        fitting = None
        while b > 1:
            b //= 2
            if self._fits(b):
                fitting = b * self.dist.world
                break
        where = f"{self.device}" + (f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else "")
        if fitting:
            hint = (f"restart with --batch-size {fitting} (your progress is saved at step {self.step}; "
                    f"`workbench train ... --resume --batch-size {fitting}`)")
        else:
            hint = "even batch size 1 does not fit: lower --resolution or the dims, or use precision bf16/fp16"
        raise TrainingError(
            f"out of memory at batch size {self.options.batch_size} on {where}"
            + (f"; batch size {fitting} fits" if fitting else ""), self.run_dir, hint) from exc
