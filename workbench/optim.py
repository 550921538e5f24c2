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

- Flat buffers (CPU default, ``flat=None``): on the first step a parameter group's parameters, gradients and
  state are packed into one contiguous buffer each (the parameters and state tensors become views into them,
  so modules, ``state_dict`` and checkpoints see the same tensors as before). Each update is then a handful of
  large multi-threaded operations that allocate nothing; per-tensor updates allocate a model-sized temporary per
  operation every step, and on CPU those page faults and ~100 small loops cost about as much as the arithmetic.
  The operations are the multi-tensor path's, in the same order, and one ``uniform_`` over the flat buffer draws
  the same lr_dropout numbers as one per tensor, so results are identical (tested).
- clipgrad: DFL clips by the global norm at 1.0 (``g·c / max(norm, c)``); use
  ``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` between ``backward()`` and ``step()``. (torch
  scales by ``c / (norm + 1e-6)`` when the norm exceeds c: the same up to 1e-6.)
"""

from __future__ import annotations

import math
import threading
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


class _FlatGroup:
    """One parameter group packed into contiguous buffers (see the module docstring, "Flat buffers").

    ``params``, ``grads`` and each ``state[name]`` hold every tensor of the group back to back, in group order;
    the parameters' ``.data`` and the optimiser's state tensors are views into them. ``scratch`` holds the
    per-step temporaries, ``uniform``/``keep`` the lr_dropout draw and mask.
    """

    # 64k float32 per stream: the ~6 streams of a chunk fit a core's L2 cache, so each of the ~8 operations of an
    # update reads cache instead of memory (measured on 38M parameters, 1 thread: 235 -> 155 ms per update, 80 of
    # it the serial random draw); each chunk still splits over 2 threads (torch's grain is 32k elements)
    CHUNK = 1 << 16

    def __init__(self, params: list[torch.Tensor], states: list[dict[str, Any]], names: tuple[str, ...]):
        total = sum(p.numel() for p in params)
        like = params[0]
        self.params = torch.empty(total, dtype=like.dtype, device=like.device)
        self.grads = torch.empty_like(self.params)
        self.scratch = torch.empty_like(self.params)
        self.state = {name: torch.empty_like(self.params) for name in names}
        self.uniform: torch.Tensor | None = None
        self.keep: torch.Tensor | None = None
        self.sizes = [p.numel() for p in params]
        with torch.no_grad():
            for p, segment in zip(params, self._segments(self.params)):
                segment.copy_(p.reshape(-1))
                p.data = segment.view_as(p)
            for name in names:
                for p, st, segment in zip(params, states, self._segments(self.state[name])):
                    segment.copy_(st[name].reshape(-1))
                    st[name] = segment.view_as(p)
        self.signature = self.signature_of(params, states, names)

    def _segments(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return list(flat.split(self.sizes))

    @staticmethod
    def eligible(params: list[torch.Tensor]) -> bool:
        """Dense, contiguous CPU tensors of one floating dtype (channels-last weights keep the per-tensor path)."""
        dtype = params[0].dtype
        return all(p.device.type == "cpu" and p.dtype == dtype and p.is_floating_point() and p.is_contiguous()
                   and p.grad is not None and p.grad.layout == torch.strided for p in params)

    @staticmethod
    def signature_of(params: list[torch.Tensor], states: list[dict[str, Any]], names: tuple[str, ...]) -> tuple:
        """What must not change for the views to stay valid: the tensors and where their data lives."""
        return tuple((id(p), p.data_ptr(), *(st[n].data_ptr() for n in names)) for p, st in zip(params, states))

    def gather_grads(self, params: list[torch.Tensor]) -> torch.Tensor:
        """Copy the gradients into ``grads`` and leave each ``p.grad`` a view of it (autograd's tensors are freed).

        Gradients that already are those views (``zero_grad(set_to_none=False)`` lets autograd accumulate into
        them) stay where they are."""
        for p, segment in zip(params, self._segments(self.grads)):
            if p.grad.data_ptr() != segment.data_ptr():
                segment.copy_(p.grad.reshape(-1))
                p.grad = segment.view_as(p)
        return self.grads

    def chunks(self) -> list[slice]:
        """Consecutive slices of ``CHUNK`` elements: each update operation then works on data still in cache."""
        total = self.params.numel()
        return [slice(start, min(start + self.CHUNK, total)) for start in range(0, total, self.CHUNK)]

    def _draw_buffers(self) -> torch.Tensor:
        if self.uniform is None:
            self.uniform = torch.empty_like(self.params, dtype=torch.float32)
            self.keep = torch.empty_like(self.params, dtype=torch.bool)
        return self.uniform

    def draw(self, chunk: slice, generator: torch.Generator | None) -> None:
        """lr_dropout's uniform numbers for one chunk. Drawn chunk after chunk in order, they are the numbers
        `_keep_masks` draws tensor after tensor (one float per element from the same generator)."""
        self._draw_buffers()[chunk].uniform_(generator=generator)

    def start_draw(self, generator: torch.Generator | None) -> tuple[threading.Thread, list[BaseException]]:
        """Draw the whole buffer's uniform numbers on another thread (the same numbers as `draw` chunk by chunk)."""
        uniform, errors = self._draw_buffers(), []

        def work() -> None:
            try:
                uniform.uniform_(generator=generator)
            except BaseException as error:  # noqa: BLE001 - re-raised by finish_draw on the caller's thread
                errors.append(error)

        thread = threading.Thread(target=work, name="lr-dropout-draw", daemon=True)
        thread.start()
        return thread, errors

    @staticmethod
    def finish_draw(draw: tuple[threading.Thread, list[BaseException]]) -> None:
        thread, errors = draw
        thread.join()
        if errors:
            raise errors[0]


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
        flat: bool | None = None,
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
        self.flat = flat
        self._flat_groups: dict[int, _FlatGroup] = {}

    def _flat_group(self, index: int, group: dict[str, Any], params: list[torch.Tensor],
                    names: tuple[str, ...]) -> _FlatGroup | None:
        """The group's flat buffers when the flat path applies (built, or rebuilt after a state or device change)."""
        generator_ok = self.generator is None or self.generator.device.type == "cpu"
        wanted = self.flat if self.flat is not None else True
        if not (wanted and generator_ok and len(params) == len(group["params"]) and _FlatGroup.eligible(params)):
            return None
        states = [self.state[p] for p in params]
        flat = self._flat_groups.get(index)
        if flat is None or flat.signature != _FlatGroup.signature_of(params, states, names):
            flat = self._flat_groups[index] = _FlatGroup(params, states, names)
        return flat

    def _init_state(self, params: list[torch.Tensor], names: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each parameter's state (zeros on first use), its ``step`` counted up."""
        states = []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                for name in names:
                    state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            states.append(state)
        return states

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
        for index, group in enumerate(self.param_groups):
            params = self._params_with_grad(group)
            if not params:
                continue
            self._init_state(params, self.STATE)
            flat = self._flat_group(index, group, params, self.STATE)
            if flat is not None:
                self._update_flat(group, flat, flat.gather_grads(params))
            else:
                self._update_group(group, params)
        return loss

    STATE: tuple[str, ...] = ()

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _chunk_terms(self, group: dict[str, Any], flat: _FlatGroup, grads: torch.Tensor,
                     c: slice) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _update_flat(self, group: dict[str, Any], flat: _FlatGroup, grads: torch.Tensor) -> None:
        """``p -= lr · numerator / denominator`` (times the lr_dropout mask), chunk by chunk, as the multi-tensor
        path computes it: addcdiv without dropout, else reciprocal, product, mask and add.

        With lr_dropout and more than one thread, the serial random draw (one Mersenne-Twister number per weight,
        about half the update's time) runs on a second thread while this one computes the step directions
        single-threaded; the masks are applied once the draw is done. Same numbers, same order: bit-identical.
        """
        lr, keep = group["lr"], group["lr_dropout"]
        if keep >= 1.0:
            for c in flat.chunks():
                numerator, denominator = self._chunk_terms(group, flat, grads, c)
                flat.params[c].addcdiv_(numerator, denominator, value=-lr)
            return
        threads = torch.get_num_threads()
        draw = flat.start_draw(self.generator) if threads > 1 else None
        if draw is not None:
            torch.set_num_threads(1)  # the other core draws the random numbers meanwhile
        try:
            for c in flat.chunks():
                numerator, denominator = self._chunk_terms(group, flat, grads, c)
                if draw is None:
                    flat.draw(c, self.generator)
                denominator.reciprocal_().mul_(numerator)  # the step direction, in scratch
        finally:
            if draw is not None:
                torch.set_num_threads(threads)
                flat.finish_draw(draw)
        for c in flat.chunks():
            direction = flat.scratch[c].mul_(torch.lt(flat.uniform[c], keep, out=flat.keep[c]))
            flat.params[c].add_(direction, alpha=-lr)


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
        flat: pack each group into flat buffers (default None = when every parameter is a contiguous CPU
            tensor; False under DDP, which keeps references to the gradients' storage).

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
        flat: bool | None = None,
    ):
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps), lr_dropout, generator, foreach, flat)

    STATE = ("exp_avg", "exp_avg_var")

    def _chunk_terms(self, group: dict[str, Any], flat: _FlatGroup, grads: torch.Tensor,
                     c: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Update m and v on one chunk; the step is ``m / (sqrt(v) + eps)`` (the denominator in ``scratch``)."""
        beta1, beta2 = group["betas"]
        m, v, tmp, g = flat.state["exp_avg"][c], flat.state["exp_avg_var"][c], flat.scratch[c], grads[c]
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        torch.sub(g, m, out=tmp)
        v.mul_(beta2).addcmul_(tmp, tmp, value=1.0 - beta2)
        return m, torch.sqrt(v, out=tmp).add_(group["eps"])

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, keep = group["lr"], group["eps"], group["lr_dropout"]
        grads = [p.grad for p in params]
        ms = [self.state[p]["exp_avg"] for p in params]
        vs = [self.state[p]["exp_avg_var"] for p in params]
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
        flat: bool | None = None,
    ):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1), got {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps), lr_dropout, generator, foreach, flat)

    STATE = ("square_avg",)

    def _chunk_terms(self, group: dict[str, Any], flat: _FlatGroup, grads: torch.Tensor,
                     c: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the square average on one chunk; the step is ``g / (sqrt(a) + eps)`` (denominator in ``scratch``)."""
        acc, tmp, g = flat.state["square_avg"][c], flat.scratch[c], grads[c]
        acc.mul_(group["rho"]).addcmul_(g, g, value=1.0 - group["rho"])
        return g, torch.sqrt(acc, out=tmp).add_(group["eps"])

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        rho, lr, eps, keep = group["rho"], group["lr"], group["eps"], group["lr_dropout"]
        grads = [p.grad for p in params]
        accs = [self.state[p]["square_avg"] for p in params]
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
