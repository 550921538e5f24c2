"""TrainOptions: presets, one-line help per option, JSON round trip and validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from workbench.errors import ConfigError
from workbench.train import OPTION_HELP, PRESETS, TrainOptions, preset


def test_every_option_has_one_line_help():
    names = [f.name for f in dataclasses.fields(TrainOptions)]
    assert set(names) == set(OPTION_HELP)
    for name, text in OPTION_HELP.items():
        assert text and "\n" not in text and len(text) < 200, name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    options = PRESETS[name]
    text = json.dumps(options.to_dict())
    assert TrainOptions.from_dict(json.loads(text)) == options


def test_presets_match_dfl():
    quick, saehd = PRESETS["quick"], PRESETS["saehd"]
    assert (quick.archi, quick.resolution, quick.face_type, quick.ae_dims, quick.e_dims, quick.d_dims,
            quick.d_mask_dims, quick.batch_size) == ("df-ud", 96, "full", 128, 64, 64, 16, 4)
    assert (quick.optimizer, quick.lr, quick.lr_dropout) == ("rmsprop", 2e-4, 0.3)
    assert (saehd.archi, saehd.resolution, saehd.face_type, saehd.ae_dims, saehd.e_dims, saehd.d_dims,
            saehd.d_mask_dims, saehd.batch_size) == ("liae-ud", 128, "full", 256, 64, 64, 22, 8)
    assert (saehd.optimizer, saehd.lr, saehd.random_dst_flip, saehd.random_src_flip) == ("adabelief", 5e-5, True, False)
    assert saehd.effective_gan_patch_size == 16
    tiny = PRESETS["tiny"]
    assert tiny.resolution == 64 and tiny.model_config().archi == "df"


def test_pretrain_forces_dfl_settings():
    o = preset("saehd", pretrain=True, gan_power=0.1, random_warp=True, face_style_power=10.0).effective()
    assert (o.random_warp, o.random_src_flip, o.random_dst_flip, o.uniform_yaw) == (False, True, True, True)
    assert o.gan_power == 0 and o.face_style_power == 0 and o.lr_dropout == 1.0
    assert preset("saehd").effective() == preset("saehd")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"resolution": 100}, "resolution"),
        ({"resolution": 80, "archi": "df-ud"}, "multiple of 32"),
        ({"archi": "dfx"}, "archi"),
        ({"true_face_power": 0.5}, "DF architecture"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"optimizer": "adam", "lr_dropout": 0.3}, "lr_dropout"),
        ({"lr_dropout": 0.0}, "lr_dropout"),
        ({"random_hsv_power": 0.5}, "random_hsv_power"),
        ({"ct_mode": "foo"}, "ct_mode"),
        ({"precision": "fp8"}, "precision"),
        ({"batch_size": 0}, "batch_size"),
        ({"e_dims": 23}, "even"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_validation_errors(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        preset("saehd", **changes)


def test_from_dict_rejects_unknown_and_wrong_types():
    data = PRESETS["tiny"].to_dict()
    with pytest.raises(ConfigError, match="unknown"):
        TrainOptions.from_dict({**data, "warp_power": 1})
    with pytest.raises(ConfigError, match="whole number"):
        TrainOptions.from_dict({**data, "batch_size": 2.5})
    with pytest.raises(ConfigError, match="true/false"):
        TrainOptions.from_dict({**data, "masked_training": "maybe"})
    assert TrainOptions.from_dict({**data, "lr": 1}).lr == 1.0  # ints are fine for floats
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("sae")


def test_precision_auto_never_picks_an_emulated_format():
    import torch

    from workbench.machine import native_formats as cpu_native_formats
    from workbench.train.device import resolve_precision

    cpu = torch.device("cpu")
    avx2 = {"avx", "avx2", "fma"}
    zen4 = avx2 | {"avx512f", "avx512_bf16"}
    sapphire = zen4 | {"amx_tile", "amx_bf16", "avx512_fp16"}
    assert preset("tiny").precision == "auto" and TrainOptions().precision == "auto"
    assert cpu_native_formats(avx2) == set() and cpu_native_formats(zen4) == {"bf16"}
    assert cpu_native_formats(sapphire) == {"bf16", "fp16"}
    assert resolve_precision("auto", cpu, avx2) == ("fp32", None)
    assert resolve_precision("auto", cpu, zen4) == ("bf16", None)  # AVX512-BF16 is native: keep the bf16 gain
    assert resolve_precision("auto", cpu, sapphire) == ("bf16", None)
    assert resolve_precision("fp32", cpu, avx2) == ("fp32", None)
    assert resolve_precision("bf16", cpu, zen4) == ("bf16", None)  # native: no warning
    with pytest.warns(RuntimeWarning, match="emulated"):
        name, note = resolve_precision("bf16", cpu, avx2)
    assert name == "bf16" and "bf16 training is emulated" in note and "--precision auto" in note
    with pytest.warns(RuntimeWarning, match="no fp16 instructions"):
        resolve_precision("fp16", cpu, zen4)
