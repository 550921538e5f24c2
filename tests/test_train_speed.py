"""Issue 17: the training speed-ups compute what the plain code computed.

The fast paths are (a) both sides through a shared network in one batch (``with_swap=False`` forwards) and
(b) the optimisers' flat buffers. Each is compared with the straightforward computation it replaced: the same
seeded steps must give the same losses and weights within float32 tolerance.
"""

from __future__ import annotations

import pytest
import torch
from train_fixtures import fast_options, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

import workbench.optim as optim
from workbench.train import Trainer
from workbench.train.step import TrainForward


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("speed")
    return make_faceset(base / "src", 8, seed=1), make_faceset(base / "dst", 8, seed=2)


def _per_side_forward(self, warped_src, warped_dst):
    """The computation before the speed-up: each side encoded and decoded on its own."""
    model = self.model
    src_code, dst_code = model.encode(warped_src, "src"), model.encode(warped_dst, "dst")
    src_src, src_src_mask = model.decode(src_code, "src")
    dst_dst, dst_dst_mask = model.decode(dst_code, "dst")
    return {"src_src": src_src, "src_src_mask": src_src_mask, "dst_dst": dst_dst, "dst_dst_mask": dst_dst_mask}


def _losses(options, src, dst, steps: int) -> tuple[list[float], list[torch.Tensor]]:
    trainer = Trainer(options, src, dst)
    losses = [trainer.train_step()["total"] for _ in range(steps)]
    return losses, [p.detach().clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("overrides", [
    dict(archi="liae-ud", optimizer="adabelief", lr=1e-3),  # SAEHD liae-ud: one encoder and one decoder pass
    dict(archi="df-ud", optimizer="rmsprop", lr=2e-4, lr_dropout=0.3),  # Quick96: RMSprop with lr_dropout
])
def test_fast_paths_give_the_losses_of_the_plain_computation(synth, monkeypatch, overrides):
    src, dst = synth
    options = fast_options(precision="fp32", **overrides)  # the claim is "within fp32 tolerance"
    fast, fast_weights = _losses(options, src, dst, 6)
    monkeypatch.setattr(TrainForward, "forward", _per_side_forward)
    monkeypatch.setattr(optim._FlatGroup, "eligible", staticmethod(lambda params: False))
    plain, plain_weights = _losses(options, src, dst, 6)
    assert fast == pytest.approx(plain, rel=1e-5)
    assert fast[-1] < fast[0]  # and it trains
    for a, b in zip(fast_weights, plain_weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)  # AdaBelief steps are ~lr whatever the gradient


def test_trainer_updates_through_flat_buffers(synth):
    """On CPU the trainer's optimiser packs the model into one buffer (the speed-up is really in use)."""
    src, dst = synth
    trainer = Trainer(fast_options(optimizer="rmsprop", lr_dropout=0.3), src, dst)
    trainer.train_step()
    flat = trainer.opt._flat_groups[0]
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    assert flat.params.numel() == sum(p.numel() for p in params)
    start = flat.params.data_ptr()
    assert all(start <= p.data_ptr() < start + 4 * flat.params.numel() for p in params)


@pytest.mark.parametrize("archi", ["df-ud", "liae-ud"])
def test_forward_without_swap_equals_the_full_forward(archi):
    from workbench.models import build_model
    from workbench.models.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig.from_archi_string(archi, resolution=32, ae_dims=32, e_dims=8, d_dims=8,
                                                      d_mask_dims=8))
    src, dst = torch.rand(3, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        full = model(src, dst, return_codes=True)
        lean = model(src, dst, return_codes=True, with_swap=False)
    assert "src_dst" not in lean and set(full) - set(lean) == {"src_dst", "src_dst_mask"}
    for key, value in lean.items():
        torch.testing.assert_close(value, full[key], rtol=1e-5, atol=1e-6)
