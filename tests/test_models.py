"""Tests for workbench.models: config, blocks, DF/LIAE, discriminators, parameter counts."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from workbench.errors import ConfigError
from workbench.losses import reconstruction_loss
from workbench.models import (
    DF,
    FIELD_HELP,
    LIAE,
    MODELS,
    CodeDiscriminator,
    ModelConfig,
    UNetPatchDiscriminator,
    build_model,
    count_parameters,
)
from workbench.models.blocks import Downscale, Upscale, depth_to_space, glorot_init_, pixel_norm
from workbench.models.config import DFL_RANGES, default_d_mask_dims, snap_resolution
from workbench.models.discriminators import find_archi, receptive_field

LETTER_SETS = ["".join(c) for n in range(4) for c in itertools.combinations("udt", n)]
ALL_ARCHIS = [a + (f"-{s}" if s else "") for a in ("df", "liae") for s in LETTER_SETS]
OUT_KEYS = {"src_src", "src_src_mask", "dst_dst", "dst_dst_mask", "src_dst", "src_dst_mask"}


def tiny(archi: str, resolution: int = 32, **kw) -> ModelConfig:
    dims = dict(ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=8)
    dims.update(kw)
    return ModelConfig.from_archi_string(archi, resolution=resolution, **dims)


def seeded(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def images(n: int, res: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed))


# ---- config -------------------------------------------------------------------------------------------------
def test_config_defaults_are_dfl_saehd():
    cfg = ModelConfig()
    assert cfg.archi_string == "liae-ud"
    assert (cfg.resolution, cfg.face_type, cfg.ae_dims, cfg.e_dims, cfg.d_dims, cfg.d_mask_dims) == (
        128,
        "full",
        256,
        64,
        64,
        22,
    )
    assert (cfg.inter_res, cfg.code_res, cfg.encoder_res) == (4, 8, 8)
    assert default_d_mask_dims(64) == 22
    assert cfg.dfl_warnings() == []


@pytest.mark.parametrize(
    "text, archi, letters",
    [("liae-ud", "liae", "ud"), ("DF", "df", ""), ("df-tdu", "df", "udt"), ("liae-c", "liae", "c")],
)
def test_from_archi_string_parses(text, archi, letters):
    cfg = ModelConfig.from_archi_string(text, resolution=128)
    assert (cfg.archi, cfg.letters) == (archi, letters)
    assert cfg.archi_string == archi + (f"-{letters}" if letters else "")


@pytest.mark.parametrize(
    "text, kwargs",
    [
        ("vae", {}),
        ("df-x", {}),
        ("df-uu", {}),
        ("df-", {}),
        ("df", {"resolution": 120}),  # not a multiple of 16
        ("df-d", {"resolution": 112}),  # 'd' needs a multiple of 32
        ("df-t", {"resolution": 80}),  # 't' needs a multiple of 32 too
        ("df", {"e_dims": 63}),
        ("df", {"d_dims": 65}),
        ("df", {"d_mask_dims": 21}),
        ("df", {"ae_dims": 0}),
        ("df", {"resolution": 1024}),
        ("df", {"face_type": "torso"}),
    ],
)
def test_config_rejects_bad_values(text, kwargs):
    with pytest.raises(ConfigError):
        ModelConfig.from_archi_string(text, **kwargs)


def test_config_rejects_bool_and_float_dims():
    with pytest.raises(ConfigError):
        ModelConfig(archi="df", letters="", ae_dims=True)
    with pytest.raises(ConfigError):
        ModelConfig(archi="df", letters="", resolution=128.0)


def test_config_snap_applies_dfl_rounding():
    cfg = ModelConfig.from_archi_string(
        "liae-ud", resolution=200, e_dims=63, d_dims=65, ae_dims=2000, snap=True
    )
    assert cfg.resolution == 192 and cfg.e_dims == 64 and cfg.d_dims == 66 and cfg.ae_dims == 1024
    assert cfg.d_mask_dims == 22  # 65 // 3 = 21 -> 22
    assert snap_resolution(100) == 96 and snap_resolution(100, "d") == 96 and snap_resolution(30) == 64
    assert snap_resolution(1000) == 640


def test_config_face_type_aliases_and_tiny_warnings():
    assert ModelConfig(face_type="wf").face_type == "whole_face"
    assert ModelConfig(face_type="f").face_type == "full"
    warnings = tiny("df").dfl_warnings()
    assert any("resolution" in w for w in warnings) and any("e_dims" in w for w in warnings)
    assert set(DFL_RANGES) <= set(FIELD_HELP)


def test_config_dict_roundtrip_is_json():
    cfg = ModelConfig.from_archi_string("df-udt", resolution=256, face_type="whole_face")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["archi_string"] == "df-udt" and data["schema_version"] == 1
    assert ModelConfig.from_dict(data) == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**data, "bogus": 1})
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**data, "archi_string": "liae-ud"})
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**data, "schema_version": 99})
    assert cfg.replace(ae_dims=128).ae_dims == 128
    with pytest.raises(ConfigError):
        cfg.replace(resolution=100)


def test_field_help_covers_every_field():
    assert set(FIELD_HELP) == set(ModelConfig.__dataclass_fields__)
    assert all(isinstance(v, str) and "\n" not in v and v for v in FIELD_HELP.values())


# ---- blocks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("side, expected", [(64, 32), (32, 16), (7, 4), (5, 3)])
def test_downscale_matches_dfl_same_output_size(side, expected):
    # DFL pads (k-1)//2 = 2 on every side, then a VALID stride-2 conv: ceil(H / 2)
    y = Downscale(3, 4)(torch.rand(1, 3, side, side))
    assert y.shape == (1, 4, expected, expected)


def test_depth_to_space_uses_tensorflow_dcr_order():
    b, c, h, w, r = 1, 2, 3, 4, 2
    x = torch.randn(b, r * r * c, h, w)
    y = depth_to_space(x, r)
    assert y.shape == (b, c, h * r, w * r)
    for i, j, ch, hh, ww in itertools.product(range(r), range(r), range(c), range(h), range(w)):
        assert y[0, ch, hh * r + i, ww * r + j] == x[0, (i * r + j) * c + ch, hh, ww]
    assert Upscale(3, 5)(torch.rand(2, 3, 4, 4)).shape == (2, 5, 8, 8)


def test_pixel_norm_gives_unit_rms():
    x = torch.randn(4, 100) * 7
    assert torch.allclose(pixel_norm(x).pow(2).mean(-1), torch.ones(4), atol=1e-4)


def test_glorot_init_bounds_and_zero_bias():
    lin = torch.nn.Linear(300, 200)
    conv = torch.nn.Conv2d(8, 16, 3)
    glorot_init_(torch.nn.Sequential(lin, conv), torch.Generator().manual_seed(0))
    assert lin.weight.abs().max() <= (6 / 500) ** 0.5 and lin.weight.abs().max() > 0.9 * (6 / 500) ** 0.5
    assert conv.weight.abs().max() <= (6 / (9 * 8 + 9 * 16)) ** 0.5
    assert torch.count_nonzero(lin.bias) == 0 and torch.count_nonzero(conv.bias) == 0


# ---- every architecture -------------------------------------------------------------------------------------
@pytest.mark.parametrize("archi", ALL_ARCHIS)
def test_every_archi_forward_encode_decode_swap(archi):
    cfg = tiny(archi)
    model = seeded(cfg)
    assert isinstance(model, MODELS[cfg.archi]) and model.config is cfg
    src, dst = images(2, 32, 1), images(3, 32, 2)
    with torch.no_grad():
        out = model(src, dst, return_codes=True)
        assert set(out) == OUT_KEYS | {"src_code", "dst_code"}
        assert tuple(out["src_code"].shape[1:]) == tuple(out["dst_code"].shape[1:]) == model.code_shape
        for key, n in (("src_src", 2), ("dst_dst", 3), ("src_dst", 3)):
            assert out[key].shape == (n, 3, 32, 32) and out[key + "_mask"].shape == (n, 1, 32, 32)
            for t in (out[key], out[key + "_mask"]):
                assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1
        for identity, x, key in (("src", src, "src_src"), ("dst", dst, "dst_dst")):
            code = model.encode(x, identity)
            assert tuple(code.shape[1:]) == model.code_shape
            img, mask = model.decode(code, identity)
            torch.testing.assert_close(img, out[key], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(mask, out[key + "_mask"], atol=1e-5, rtol=1e-4)
            z = model.bottleneck(x)
            assert z.shape == (x.shape[0], cfg.ae_dims * (2 if cfg.archi == "liae" else 1))
            torch.testing.assert_close(model.code_from_bottleneck(z, identity), code, atol=1e-5, rtol=1e-4)
        img, mask = model.swap(dst)
        torch.testing.assert_close(img, out["src_dst"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mask, out["src_dst_mask"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("archi", ["df-udtc", "liae-c"])
def test_cos_activation_letter_builds_and_runs(archi):
    model = seeded(tiny(archi))
    with torch.no_grad():
        img, mask = model.swap(images(1, 32, 0))
    assert img.shape == (1, 3, 32, 32) and mask.shape == (1, 1, 32, 32)


@pytest.mark.parametrize("archi", ["df", "liae"])
def test_forward_returns_exactly_the_contract_keys(archi):
    with torch.no_grad():
        assert set(seeded(tiny(archi))(images(1, 32, 0), images(1, 32, 1))) == OUT_KEYS


def test_res64_resolution_chain():
    model = seeded(tiny("liae-ud", resolution=64))
    assert model.code_shape == (64, 4, 4)  # R = 64 // 32 = 2, inter upscale -> 4; 4 * ae channels
    with torch.no_grad():
        assert model.swap(images(1, 64, 0))[0].shape == (1, 3, 64, 64)


def test_identity_and_archi_are_checked():
    model = seeded(tiny("df"))
    with pytest.raises(ValueError):
        model.encode(images(1, 32, 0), "celeb")
    with pytest.raises(ValueError):
        DF(tiny("liae"))
    with pytest.raises(ValueError):
        LIAE(tiny("df"))


# ---- swap wiring --------------------------------------------------------------------------------------------
def test_df_swap_uses_decoder_src_only():
    model = seeded(tiny("df-ud"))
    dst = images(2, 32, 3)
    with torch.no_grad():
        before = model.swap(dst)[0].clone()
        for p in model.decoder_dst.parameters():
            p.add_(torch.randn_like(p))
        torch.testing.assert_close(model.swap(dst)[0], before, atol=0, rtol=0)
        torch.testing.assert_close(model(images(1, 32, 4), dst)["src_dst"], before, atol=1e-6, rtol=1e-5)
        for p in model.decoder_src.parameters():
            p.add_(0.1 * torch.randn_like(p))
        assert not torch.allclose(model.swap(dst)[0], before)


def test_liae_swap_code_is_ab_twice():
    model = seeded(tiny("liae-ud"))
    dst = images(2, 32, 5)
    with torch.no_grad():
        ab = model.inter_AB(model.encoder(dst))
        b = model.inter_B(model.encoder(dst))
        torch.testing.assert_close(model.swap_code(dst), torch.cat([ab, ab], 1))
        torch.testing.assert_close(model.encode(dst, "dst"), torch.cat([b, ab], 1))
        torch.testing.assert_close(model.encode(dst, "src"), torch.cat([ab, ab], 1))
        swap_img = model.decoder(torch.cat([ab, ab], 1))[0]
        torch.testing.assert_close(model.swap(dst)[0], swap_img)
        # inter_B does not influence the swap
        for p in model.inter_B.parameters():
            p.add_(torch.randn_like(p))
        torch.testing.assert_close(model.swap(dst)[0], swap_img)


@pytest.mark.parametrize("archi, inters", [("df-ud", ("inter",)), ("liae-ud", ("inter_AB", "inter_B"))])
def test_reinit_inter_changes_only_inter_weights(archi, inters):
    model = seeded(tiny(archi))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reinit_inter(torch.Generator().manual_seed(123))
    after = model.state_dict()
    for key, value in before.items():
        in_inter = key.split(".")[0] in inters
        if key.endswith("weight"):
            assert torch.equal(value, after[key]) != in_inter, key
        else:  # biases: zero before and after
            assert torch.equal(value, after[key]) or in_inter, key
    for name in inters:
        for mod in getattr(model, name).modules():
            if isinstance(mod, torch.nn.Linear | torch.nn.Conv2d):
                assert torch.count_nonzero(mod.bias) == 0


@pytest.mark.parametrize(
    "archi, groups",
    [
        ("df", ["encoder", "inter", "decoder_src", "decoder_dst"]),
        ("liae", ["encoder", "inter_AB", "inter_B", "decoder"]),
    ],
)
def test_parameter_groups_partition_the_parameters(archi, groups):
    model = seeded(tiny(archi))
    got = model.parameter_groups()
    assert list(got) == groups
    ids = [id(p) for ps in got.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_build_model_registry():
    assert MODELS == {"df": DF, "liae": LIAE}
    assert isinstance(build_model(tiny("df")), DF) and isinstance(build_model(tiny("liae")), LIAE)


def test_bf16_autocast_forward_backward_on_cpu():
    model = seeded(tiny("liae-ud")).train()
    src, dst = images(2, 32, 6), images(2, 32, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(src, dst)
        loss = (
            reconstruction_loss(out["src_src"], src, 32) + reconstruction_loss(out["dst_dst"], dst, 32)
        ).mean()
        loss = loss + sum(out[k].float().mean() for k in ("src_src_mask", "dst_dst_mask"))
    assert out["src_src"].dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ---- parameter counts (built on the meta device: no memory, no forward) ----------------------------------
PARAM_TABLE = [
    # archi, res, ae, e, d, m, total, {group: expected}
    (
        "liae-ud",
        128,
        256,
        64,
        64,
        22,
        82.4e6,
        {"encoder": 4.31e6, "inter_AB": 19.93e6, "inter_B": 19.93e6, "decoder": 38.20e6},
    ),
    (
        "df-ud",
        128,
        256,
        64,
        64,
        22,
        54.5e6,
        {"encoder": 4.31e6, "inter": 11.80e6, "decoder_src": 19.18e6, "decoder_dst": 19.18e6},
    ),
    ("liae-ud", 256, 256, 64, 64, 22, 145.3e6, {"inter_AB": 51.42e6, "inter_B": 51.42e6}),
    ("df-udt", 256, 256, 64, 64, 22, 97.2e6, {"encoder": 15.65e6, "decoder_src": 34.46e6}),
    ("df", 128, 256, 64, 64, 22, 57.5e6, {}),
    ("liae", 128, 256, 64, 64, 22, 95.0e6, {}),
    ("df-ud", 96, 128, 64, 64, 16, 38.3e6, {}),  # Quick96
]


@pytest.mark.parametrize("archi, res, ae, e, d, m, total, parts", PARAM_TABLE)
def test_parameter_counts_match_dfl(archi, res, ae, e, d, m, total, parts):
    cfg = ModelConfig.from_archi_string(archi, resolution=res, ae_dims=ae, e_dims=e, d_dims=d, d_mask_dims=m)
    with torch.device("meta"):
        model = build_model(cfg)
    assert count_parameters(model) == pytest.approx(total, rel=0.005)
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    for name, expected in parts.items():
        assert groups[name] == pytest.approx(expected, rel=0.005), name


def test_quick96_preset():
    cfg = ModelConfig.quick96()
    with torch.device("meta"):
        assert count_parameters(build_model(cfg)) == pytest.approx(38.3e6, rel=0.005)


# ---- discriminators -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch", [3, 8, 12, 16, 22, 32, 64])
def test_find_archi_is_nearest_receptive_field(patch):
    layers = find_archi(patch)
    assert layers[0] == (3, 2) and all(k == 3 and s in (1, 2) for k, s in layers) and len(layers) <= 9
    rf = receptive_field(layers)
    assert abs(rf - patch) <= 2
    assert receptive_field([(3, 2), (3, 2), (3, 2)]) == 15


@pytest.mark.parametrize("res, patch", [(64, 8), (32, 4), (48, 6), (40, 12)])
def test_unet_patch_discriminator_shapes(res, patch):
    torch.manual_seed(0)
    disc = UNetPatchDiscriminator(patch, in_ch=3, base_ch=4)
    center, pixel = disc(torch.rand(2, 3, res, res))
    n_stride2 = sum(1 for _, s in disc.layers if s == 2)
    side = res
    for _ in range(n_stride2):
        side = (side + 1) // 2
    assert center.shape == (2, 1, side, side)
    assert pixel.shape == (2, 1, res, res)
    assert max(c.out_channels for c in disc.convs) <= 512


def test_unet_discriminator_channels_cap_at_512():
    with torch.device("meta"):
        disc = UNetPatchDiscriminator(200, in_ch=3, base_ch=64)
    assert max(c.out_channels for c in disc.convs) == 512


def test_code_discriminator_shape():
    model = seeded(tiny("df-ud", resolution=64))
    c, r, _ = model.code_shape
    disc = CodeDiscriminator(c, r, ch=8)
    assert len(disc.convs) == 1 + r // 8
    with torch.no_grad():
        logits = disc(model.encode(images(2, 64, 0), "src"))
    assert logits.shape[:2] == (2, 1) and torch.isfinite(logits).all()
