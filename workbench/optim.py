"""DeepFaceLab's optimisers and learning-rate helpers in torch (DFL ``core/leras/optimizers``).

- `AdaBelief` (SAEHD default): lr 5e-5, β1 0.9, β2 0.999, ε 1e-6, and **no bias correction**::

      m = β1·m + (1-β1)·g
      v = β2·v + (1-β2)·(g - m)²          # m is the *new* m
      p = p - lr · m / (sqrt(v) + ε)

  Without bias correction the first steps are tiny (m starts at 0.1·g), a gentle built-in warm-up.
- `RMSprop` (SAEHD with adabelief off, Quick96 lr 2e-4, XSeg lr 1e-4): ``a = ρ·a + (1-ρ)·g²;
  p -= lr·g/(sqrt(a) + ε)`` with ρ 0.9, ε 1e-6. ``torch.optim.RMSprop(alpha=0.9, eps=1e-6)`` computes the same
  update (ε outside the square root too); this class adds ``lr_dropout``.
- ``lr_dropout`` (both): DFL's value is the *keep* probability (0.3 when on, 1.0 off). Each step every update
  element is multiplied by a fresh Bernoulli(keep) draw, so about 30% of the weights move per step. Masks come
  from the ``generator`` you pass (deterministic); a CPU generator with GPU weights draws on the CPU and copies,
  DFL's ``lr_dropout = cpu`` mode.
- `lr_cos_factor`: DFL pairs lr_dropout with a cosine cycle ``(cos(2π·step/500) + 1) / 2``. Use it (and
  `warmup_factor`) through ``torch.optim.lr_scheduler.LambdaLR``::

      sched = LambdaLR(opt, lambda s: lr_cos_factor(s, 500) * warmup_factor(s, 0))

- clipgrad: DFL clips by the global norm at 1.0 (``g·c / max(norm, c)``); use
  ``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` between ``backward()`` and ``step()``. (torch
  scales by ``c / (norm + 1e-6)`` when the norm exceeds c: the same up to 1e-6.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["AdaBelief", "RMSprop", "lr_cos_factor", "warmup_factor"]

FLOAT32_RESOLUTION = 1e-6  # np.finfo(np.float32).resolution, DFL's epsilon


def lr_cos_factor(step: int, period: int = 500) -> float:
    """DFL's ``lr_cos`` multiplier ``(cos(2π·step/period) + 1) / 2`` in [0, 1]; 1.0 when ``period`` is 0."""
    if period <= 0:
        return 1.0
    return (math.cos(2.0 * math.pi * step / period) + 1.0) / 2.0


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up multiplier ``min(1, (step + 1) / warmup_steps)``; 1.0 when ``warmup_steps`` is 0.

    Not in DFL (AdaBelief without bias correction already starts slowly); useful with larger learning rates.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def _keep_masks(
    params: list[torch.Tensor], keep: float, generator: torch.Generator | None
) -> list[torch.Tensor]:
    """One Bernoulli(keep) 0/1 mask per tensor, drawn on the generator's device and moved to the parameter's."""
    masks = []
    for p in params:
        device = generator.device if generator is not None else p.device
        u = torch.rand(p.shape, generator=generator, device=device, dtype=torch.float32)
        masks.append((u < keep).to(device=p.device, dtype=p.dtype))
    return masks


class _DFLOptimizer(Optimizer):
    """Shared plumbing: lr_dropout validation, generator, foreach choice and the closure protocol."""

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        lr_dropout: float,
        generator: torch.Generator | None,
        foreach: bool | None,
    ):
        if not 0.0 < lr_dropout <= 1.0:
            raise ValueError(
                f"lr_dropout is the keep probability in (0, 1] (DFL uses 0.3, 1.0 = off), got {lr_dropout}"
            )
        if defaults["lr"] < 0.0:
            raise ValueError(f"learning rate must be >= 0, got {defaults['lr']}")
        defaults = dict(defaults, lr_dropout=lr_dropout, foreach=foreach)
        super().__init__(params, defaults)
        self.generator = generator

    def _use_foreach(self, group: dict[str, Any], params: list[torch.Tensor]) -> bool:
        if group["foreach"] is not None:
            return bool(group["foreach"])
        return bool(params) and all(p.is_cuda for p in params)

    def _params_with_grad(self, group: dict[str, Any]) -> list[torch.Tensor]:
        out = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            out.append(p)
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = self._params_with_grad(group)
            if params:
                self._update_group(group, params)
        return loss

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError


class AdaBelief(_DFLOptimizer):
    """DFL's AdaBelief (no bias correction, ε outside the square root, optional lr_dropout).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (DFL 5e-5).
        betas: (β1, β2) = (0.9, 0.999).
        eps: 1e-6 = float32 resolution, as DFL.
        lr_dropout: keep probability of each update element (1.0 = off, DFL "y" = 0.3).
        generator: torch.Generator for the lr_dropout masks (None: the global RNG of the parameter's device).
        foreach: use the multi-tensor ``torch._foreach_*`` path (default: when every parameter is on CUDA).

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_var`` (v).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = FLOAT32_RESOLUTION,
        lr_dropout: float = 1.0,
        generator: torch.Generator | None = None,
        foreach: bool | None = None,
    ):
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps), lr_dropout, generator, foreach)

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, keep = group["lr"], group["eps"], group["lr_dropout"]
        grads, ms, vs = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_var"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            grads.append(p.grad)
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_var"])
        masks = _keep_masks(params, keep, self.generator) if keep < 1.0 else None

        if self._use_foreach(group, params):
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, grads, alpha=1.0 - beta1)  # m = β1·m + (1-β1)·g
            diff = torch._foreach_sub(grads, ms)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, diff, diff, value=1.0 - beta2)  # v = β2·v + (1-β2)·(g-m)²
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, eps)
            if masks is None:
                torch._foreach_addcdiv_(params, ms, denom, value=-lr)
            else:
                torch._foreach_reciprocal_(denom)  # reuse the buffers: denom <- ms / denom * mask
                torch._foreach_mul_(denom, ms)
                torch._foreach_mul_(denom, masks)
                torch._foreach_add_(params, denom, alpha=-lr)
            return

        for i, p in enumerate(params):
            g, m, v = grads[i], ms[i], vs[i]
            m.mul_(beta1).add_(g, alpha=1.0 - beta1)
            d = g - m
            v.mul_(beta2).addcmul_(d, d, value=1.0 - beta2)
            upd = m / (v.sqrt() + eps)
            if masks is not None:
                upd.mul_(masks[i])
            p.add_(upd, alpha=-lr)


class RMSprop(_DFLOptimizer):
    """DFL's RMSprop: ``a = ρ·a + (1-ρ)·g²; p -= lr·g / (sqrt(a) + ε)``, plus optional lr_dropout.

    Args:
        lr: learning rate (SAEHD 5e-5; Quick96 2e-4; XSeg 1e-4).
        rho: 0.9.
        eps: 1e-6 (float32 resolution).
        lr_dropout, generator, foreach: as in `AdaBelief`.

    State per parameter: ``step`` (int), ``square_avg``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 5e-5,
        rho: float = 0.9,
        eps: float = FLOAT32_RESOLUTION,
        lr_dropout: float = 1.0,
        generator: torch.Generator | None = None,
        foreach: bool | None = None,
    ):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1), got {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps), lr_dropout, generator, foreach)

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        rho, lr, eps, keep = group["rho"], group["lr"], group["eps"], group["lr_dropout"]
        grads, accs = [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            grads.append(p.grad)
            accs.append(state["square_avg"])
        masks = _keep_masks(params, keep, self.generator) if keep < 1.0 else None

        if self._use_foreach(group, params):
            torch._foreach_mul_(accs, rho)
            torch._foreach_addcmul_(accs, grads, grads, value=1.0 - rho)
            denom = torch._foreach_sqrt(accs)
            torch._foreach_add_(denom, eps)
            if masks is None:
                torch._foreach_addcdiv_(params, grads, denom, value=-lr)
            else:
                torch._foreach_reciprocal_(denom)  # reuse the buffers: denom <- grads / denom * mask
                torch._foreach_mul_(denom, grads)
                torch._foreach_mul_(denom, masks)
                torch._foreach_add_(params, denom, alpha=-lr)
            return

        for i, p in enumerate(params):
            g, a = grads[i], accs[i]
            a.mul_(rho).addcmul_(g, g, value=1.0 - rho)
            upd = g / (a.sqrt() + eps)
            if masks is not None:
                upd.mul_(masks[i])
            p.add_(upd, alpha=-lr)
