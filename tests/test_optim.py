"""Tests for workbench.optim: DFL's AdaBelief / RMSprop updates, lr_dropout and LR helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.optim import AdaBelief, RMSprop, lr_cos_factor, warmup_factor


def numpy_adabelief(p, grads, lr=5e-5, b1=0.9, b2=0.999, eps=1e-6):
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for g in grads:
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g - m) ** 2
        p = p - lr * m / (np.sqrt(v) + eps)
    return p


def run_steps(opt_cls, p0: torch.Tensor, grads: list[torch.Tensor], **kw) -> torch.Tensor:
    p = torch.nn.Parameter(p0.clone())
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("foreach, flat", [(False, False), (True, False), (None, True)])
def test_adabelief_matches_hand_computed_update(foreach, flat):
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(5, 7)).astype(np.float32)
    grads = [rng.normal(size=(5, 7)).astype(np.float32) for _ in range(3)]
    lr = 1e-2
    # one step by hand: m = 0.1 g, v = 0.001 (g - m)^2 = 0.001 (0.9 g)^2, p -= lr m / (sqrt(v) + eps)
    g = grads[0].astype(np.float64)
    m = 0.1 * g
    v = 0.001 * (0.9 * g) ** 2
    one = p0 - lr * m / (np.sqrt(v) + 1e-6)
    got = run_steps(AdaBelief, torch.from_numpy(p0), [torch.from_numpy(grads[0])], lr=lr, foreach=foreach, flat=flat)
    np.testing.assert_allclose(got.numpy(), one, rtol=1e-5, atol=1e-6)
    got3 = run_steps(
        AdaBelief, torch.from_numpy(p0), [torch.from_numpy(x) for x in grads], lr=lr, foreach=foreach, flat=flat
    )
    np.testing.assert_allclose(got3.numpy(), numpy_adabelief(p0, grads, lr=lr), rtol=1e-5, atol=1e-6)


def test_adabelief_defaults_are_dfl():
    opt = AdaBelief([torch.nn.Parameter(torch.zeros(1))])
    group = opt.param_groups[0]
    assert group["lr"] == 5e-5 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-6
    assert group["lr_dropout"] == 1.0


def test_foreach_and_loop_paths_agree_with_several_tensors():
    torch.manual_seed(0)
    shapes = [(3, 4), (10,), (2, 3, 3, 3)]
    p0 = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(4)]
    results = {}
    for cls in (AdaBelief, RMSprop):
        for foreach in (False, True):
            ps = [torch.nn.Parameter(x.clone()) for x in p0]
            opt = cls(
                ps, lr=1e-3, foreach=foreach, flat=False, lr_dropout=0.5, generator=torch.Generator().manual_seed(7)
            )
            for gs in grads:
                for p, g in zip(ps, gs):
                    p.grad = g.clone()
                opt.step()
            results[(cls, foreach)] = [p.detach() for p in ps]
        for a, b in zip(results[(cls, False)], results[(cls, True)]):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("flat", [False, True])
def test_rmsprop_matches_torch_rmsprop(flat):
    torch.manual_seed(1)
    p0 = torch.randn(6, 6)
    grads = [torch.randn(6, 6) for _ in range(5)]
    ours = run_steps(RMSprop, p0, grads, lr=2e-4, flat=flat)
    theirs = run_steps(torch.optim.RMSprop, p0, grads, lr=2e-4, alpha=0.9, eps=1e-6)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("cls", [AdaBelief, RMSprop])
def test_lr_dropout_updates_about_30_percent_and_is_deterministic(cls):
    p0 = torch.zeros(200, 200)
    g = torch.ones(200, 200)
    a = run_steps(cls, p0, [g], lr=1e-2, lr_dropout=0.3, generator=torch.Generator().manual_seed(3))
    b = run_steps(cls, p0, [g], lr=1e-2, lr_dropout=0.3, generator=torch.Generator().manual_seed(3))
    frac = (a != 0).float().mean().item()
    assert frac == pytest.approx(0.3, abs=0.02)
    torch.testing.assert_close(a, b)
    # a fresh mask every step: after two steps more than 30% have moved
    two = run_steps(cls, p0, [g, g], lr=1e-2, lr_dropout=0.3, generator=torch.Generator().manual_seed(3))
    assert (two != 0).float().mean().item() == pytest.approx(1 - 0.7**2, abs=0.02)


def _train_small(cls, *, flat: bool, steps: int = 5, reload_at: int | None = None, set_to_none: bool = True):
    """A conv net trained a few steps with lr_dropout; optionally the optimiser is saved and reloaded midway."""
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(0.1), torch.nn.Conv2d(8, 2, 3))
    x = torch.randn(4, 3, 12, 12)
    gen = torch.Generator().manual_seed(9)
    opt = cls(net.parameters(), lr=1e-2, lr_dropout=0.3, generator=gen, foreach=True, flat=flat)
    losses = []
    for step in range(steps):
        if step == reload_at:
            state = opt.state_dict()
            opt = cls(net.parameters(), lr=1e-2, lr_dropout=0.3, generator=gen, foreach=True, flat=flat)
            opt.load_state_dict(state)
        opt.zero_grad(set_to_none=set_to_none)
        loss = net(x).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, opt, losses


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request):
    """1 thread draws lr_dropout's numbers chunk by chunk; more overlap the draw on a second thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("chunk", [1 << 16, 100])  # one chunk; chunks that cut through tensors
@pytest.mark.parametrize("cls", [AdaBelief, RMSprop])
def test_flat_buffers_give_the_multi_tensor_results_exactly(cls, chunk, monkeypatch, torch_threads):
    from workbench.optim import _FlatGroup

    monkeypatch.setattr(_FlatGroup, "CHUNK", chunk)
    drawn_on = []
    start_draw = _FlatGroup.start_draw
    monkeypatch.setattr(_FlatGroup, "start_draw", lambda self, gen: drawn_on.append(1) or start_draw(self, gen))
    net_a, opt_a, losses_a = _train_small(cls, flat=False)
    net_b, opt_b, losses_b = _train_small(cls, flat=True)
    assert losses_a == losses_b  # bit for bit: same operations, same lr_dropout draws
    assert len(drawn_on) == (5 if torch_threads > 1 else 0)  # the overlapped draw really ran (once per step)
    assert torch.get_num_threads() == torch_threads  # and the thread count is restored
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(a, b)
    # the parameters, gradients and state really are views into one buffer each
    flat = opt_b._flat_groups[0]
    params = list(net_b.parameters())
    base = flat.params.data_ptr()
    assert all(base <= p.data_ptr() < base + flat.params.numel() * 4 for p in params)
    assert all(p.grad.data_ptr() >= flat.grads.data_ptr() for p in params)
    for name in cls.STATE:
        s_ptr = flat.state[name].data_ptr()
        assert all(s_ptr <= opt_b.state[p][name].data_ptr() < s_ptr + flat.state[name].numel() * 4 for p in params)
    for a, b in zip(net_a.parameters(), params):
        for name in cls.STATE:
            assert torch.equal(opt_a.state[a][name], opt_b.state[b][name])


@pytest.mark.parametrize("cls", [AdaBelief, RMSprop])
def test_flat_buffers_with_gradients_zeroed_in_place(cls):
    """zero_grad(set_to_none=False): autograd accumulates into the flat gradient views themselves."""
    _, _, plain = _train_small(cls, flat=False, set_to_none=False)
    net, opt, flat = _train_small(cls, flat=True, set_to_none=False)
    assert plain == flat
    start = opt._flat_groups[0].grads.data_ptr()
    assert all(start <= p.grad.data_ptr() < start + 4 * opt._flat_groups[0].grads.numel() for p in net.parameters())


@pytest.mark.parametrize("cls", [AdaBelief, RMSprop])
def test_flat_buffers_survive_a_state_reload_and_a_module_reload(cls):
    _, _, straight = _train_small(cls, flat=True, steps=6)
    _, _, reloaded = _train_small(cls, flat=True, steps=6, reload_at=3)
    assert straight == reloaded  # state_dict round trip mid-run (checkpoint resume) changes nothing
    net, opt, _ = _train_small(cls, flat=True, steps=2)
    before = [p.detach().clone() for p in net.parameters()]
    net.load_state_dict({k: v + 1.0 for k, v in net.state_dict().items()})  # copies into the views
    for p, b in zip(net.parameters(), before):
        torch.testing.assert_close(p.detach(), b + 1.0)
    assert torch.equal(opt._flat_groups[0].params[: before[0].numel()], before[0].reshape(-1) + 1.0)
    net[0].weight.data = net[0].weight.data.clone()  # storage replaced behind the optimiser's back
    opt.zero_grad(set_to_none=True)
    net(torch.randn(2, 3, 12, 12)).sum().backward()
    opt.step()  # rebuilds its buffers instead of updating a stale copy
    base = opt._flat_groups[0].params.data_ptr()
    assert base <= net[0].weight.data_ptr() < base + opt._flat_groups[0].params.numel() * 4


def test_invalid_arguments_raise():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError):
        AdaBelief(p, lr_dropout=0.0)
    with pytest.raises(ValueError):
        AdaBelief(p, lr=-1)
    with pytest.raises(ValueError):
        AdaBelief(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        RMSprop(p, rho=1.5)


def test_state_dict_roundtrip_and_skips_params_without_grad():
    torch.manual_seed(2)
    model = torch.nn.Linear(4, 3)
    frozen = torch.nn.Parameter(torch.ones(2))
    opt = AdaBelief([*model.parameters(), frozen], lr=1e-3)
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()
    assert torch.equal(frozen, torch.ones(2)) and frozen not in opt.state
    state = opt.state_dict()
    opt2 = AdaBelief([*model.parameters(), frozen], lr=1e-3)
    opt2.load_state_dict(state)
    assert opt2.state[model.weight]["step"] == 1
    torch.testing.assert_close(opt2.state[model.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])


def test_adabelief_minimises_a_quadratic():
    torch.manual_seed(3)
    w = torch.nn.Parameter(torch.randn(20))
    opt = AdaBelief([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        opt.step()
    assert (w**2).sum().item() < 1e-2


def test_closure_is_supported():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = RMSprop([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(1.0)
    assert w.item() < 1.0


def test_lr_helpers():
    assert lr_cos_factor(0) == 1.0
    assert lr_cos_factor(250) == pytest.approx(0.0, abs=1e-12)
    assert lr_cos_factor(125) == pytest.approx(0.5)
    assert lr_cos_factor(500) == pytest.approx(1.0)
    assert lr_cos_factor(123, period=0) == 1.0
    assert warmup_factor(0, 0) == 1.0
    assert warmup_factor(0, 10) == pytest.approx(0.1)
    assert warmup_factor(9, 10) == 1.0 and warmup_factor(50, 10) == 1.0
    opt = AdaBelief([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_cos_factor(s, 4))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.5, 0.0, 0.5, 1.0], abs=1e-12)
    assert math.isclose(lr_cos_factor(375), 0.5, abs_tol=1e-12)
