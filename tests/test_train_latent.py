"""Latent tools, the merger's predictor, pretraining reuse, yaw balancing and the progressive schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fixtures import fast_options, make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.errors import TrainingError
from workbench.train import (
    Trainer,
    decode_code,
    interpolate,
    latent_code,
    load_model,
    load_predictor,
    reconstruct_both,
)
from workbench.train.data import SideSampler
from workbench.train.step import progressive_resolution


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("latent")
    src, dst = make_faceset(base / "src", 6, seed=1), make_faceset(base / "dst", 6, seed=2)
    torch.set_num_threads(1)
    for archi in ("df-ud", "liae-ud"):
        Trainer(fast_options(archi=archi), src, dst, run_dir=base / archi).run(steps=2)
    return base, src, dst


@pytest.mark.parametrize("archi, code_size", [("df-ud", 32), ("liae-ud", 64)])
def test_latent_tools(trained, archi, code_size):
    base, src, _ = trained
    model, config = load_model(base / archi)
    assert config.archi_string == archi and not model.training
    face_a = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    face_b = (np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8)  # other size and dtype
    z = latent_code(model, face_a)
    assert z.shape == (code_size,) and z.dtype == np.float32
    image, mask = decode_code(model, z, "dst")
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32) and 0 <= image.min() and image.max() <= 1
    frames = interpolate(model, face_a, face_b, steps=5)
    assert len(frames) == 5 and all(f.shape == (32, 32, 3) for f in frames)
    np.testing.assert_allclose(frames[0], decode_code(model, z, "src")[0], atol=1e-5)
    via_src, via_dst = reconstruct_both(model, face_a)
    assert via_src.shape == via_dst.shape == (32, 32, 3) and not np.allclose(via_src, via_dst)


def test_predictor_is_the_mergers_callable(trained):
    base, _, _ = trained
    predict = load_predictor(base / "df-ud", precision="fp32")
    assert (predict.resolution, predict.face_type) == (32, "full")
    face = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    swapped, swapped_mask, dst_mask = predict(face)
    assert swapped.shape == (32, 32, 3) and swapped_mask.shape == dst_mask.shape == (32, 32)
    model, _ = load_model(base / "df-ud")
    with torch.no_grad():
        expected, _ = model.swap(torch.from_numpy(face).permute(2, 0, 1)[None])
    np.testing.assert_allclose(swapped, expected[0].permute(1, 2, 0).numpy(), atol=1e-5)
    with torch.no_grad():  # the one-pass dst mask equals the dst decoder's mask of the dst code
        _, expected_mask = model.decode(model.encode(torch.from_numpy(face).permute(2, 0, 1)[None], "dst"), "dst")
    np.testing.assert_allclose(dst_mask, expected_mask[0, 0].numpy(), atol=1e-5)
    fast = load_predictor(base / "df-ud", precision="bf16")(face)  # bf16: within a few grey levels
    assert np.abs(fast[0] - swapped).max() < 0.03 and np.abs(fast[2] - dst_mask).max() < 0.03
    batch = predict.batch(np.stack([face, face]))
    assert batch[0].shape == (2, 32, 32, 3)
    with pytest.raises(TrainingError, match="no checkpoint"):
        load_predictor(base / "missing")


def test_pretraining_then_reuse_for_a_new_pair(trained, tmp_path):
    _, src, dst = trained
    generic = src  # a generic faceset: the same folder feeds both sides while pretraining
    pre = Trainer(fast_options(pretrain=True), generic, generic, run_dir=tmp_path / "pre")
    assert pre.options.uniform_yaw and not pre.options.random_warp and pre.options.random_src_flip
    pre.run(steps=3)
    pre_state = {k: v.clone() for k, v in pre.model.state_dict().items()}
    new = Trainer(fast_options(), src, dst, run_dir=tmp_path / "new", pretrained=tmp_path / "pre")
    assert new.step == 0 and any("re-initialised" in n for n in new.notes)
    state = new.model.state_dict()
    assert all(torch.equal(state[k], pre_state[k]) for k in state if k.startswith(("encoder", "decoder")))
    assert not torch.equal(state["inter.dense1.weight"], pre_state["inter.dense1.weight"])
    # switching pretraining off on the pretraining run itself does the same (DFL §3.6)
    resumed = Trainer(fast_options(), generic, generic, run_dir=tmp_path / "pre")
    assert resumed.step == 0 and not torch.equal(resumed.model.state_dict()["inter.dense1.weight"],
                                                 pre_state["inter.dense1.weight"])


def test_uniform_yaw_balances_rare_poses():
    yaw = np.r_[np.zeros(90), np.full(10, 0.9)]  # 90 frontal faces, 10 profiles
    plain = SideSampler(np.arange(100), 50, 0, yaw, uniform_yaw=False)
    balanced = SideSampler(np.arange(100), 50, 0, yaw, uniform_yaw=True)
    share = lambda s: np.mean([np.mean(s.next() >= 90) for _ in range(40)])  # noqa: E731
    assert share(plain) == pytest.approx(0.1, abs=0.02)
    assert share(balanced) == pytest.approx(0.5, abs=0.1)
    state = balanced.state_dict()
    a = balanced.next()
    balanced.load_state_dict(state)
    assert np.array_equal(balanced.next(), a)


def test_progressive_schedule():
    assert [progressive_resolution(s, 128, 100) for s in (0, 99, 100, 199, 200, 10_000)] == [32, 32, 64, 64, 128, 128]
