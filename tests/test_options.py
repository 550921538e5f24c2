"""One options mechanism: the merge settings' help, ranges and choices live on the dataclass fields, and the CLI
flags and notebook widgets are generated from them (so they cannot drift apart)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from workbench.merge import FIELD_HELP, INT_RANGES, MergeSettings
from workbench.merge.settings import SETTING_SPECS
from workbench.options import add_arguments, option, option_specs


def test_every_merge_setting_is_described_on_its_field():
    assert list(SETTING_SPECS) == [f.name for f in dataclasses.fields(MergeSettings)]
    for name, spec in SETTING_SPECS.items():
        assert spec.help and spec.default == getattr(MergeSettings(), name)
        assert FIELD_HELP[name] == spec.help
        if spec.kind == "int":
            assert INT_RANGES[name] == spec.range
            lo, hi = spec.range
            MergeSettings().replace(**{name: lo}).replace(**{name: hi})  # the range is what validation accepts
            with pytest.raises(Exception, match="out of range"):
                MergeSettings().replace(**{name: hi + 1})
        if spec.choices is not None:
            for choice in spec.choices:
                MergeSettings().replace(**{name: choice})


def test_cli_flags_are_generated_from_the_fields():
    from workbench.commands.merge import _setting_specs, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    merge = parser._subparsers._group_actions[0].choices["merge"]  # noqa: SLF001 - argparse has no public getter
    actions = {a.dest: a for a in merge._actions}  # noqa: SLF001
    specs = _setting_specs()
    assert {s.name for s in specs} >= {"mode", "mask_mode", "color_transfer", "erode", "blursharpen_amount"}
    for spec in specs:
        action = actions[f"set_{spec.name}"]
        assert spec.cli_flag in action.option_strings
        assert action.choices == spec.choices or spec.kind == "bool"
        assert spec.help.replace("%", "%%")[:40] in action.help
    args = merge.parse_args(["proj", "--color", "mkl-m", "--face-scale", "-10", "--no-masked-hist-match"])
    assert (args.set_color_transfer, args.set_output_face_scale, args.set_masked_hist_match) == ("mkl-m", -10, False)
    with pytest.raises(SystemExit):
        merge.parse_args(["proj", "--color", "not-a-transfer"])


def test_option_specs_of_a_small_dataclass():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        size: int = option(8, "side in px", range=(1, 64))
        kind: str = option("a", "which one", choices=("a", "b"), flag="type")
        fast: bool = option(True, "go fast")
        plain: float = 1.0  # no description: not an option

    specs = option_specs(Opts)
    assert list(specs) == ["size", "kind", "fast"]
    assert specs["kind"].cli_flag == "--type" and specs["size"].range == (1, 64) and specs["fast"].kind == "bool"
    parser = argparse.ArgumentParser()
    add_arguments(parser, specs.values())
    args = parser.parse_args(["--size", "3", "--type", "b", "--no-fast"])
    assert (args.size, args.kind, args.fast) == (3, "b", False)
    assert "(1..64)" in parser.format_help()


# ---------------------------------------------------------------------------------------------------------------
# training options: the same mechanism drives the train CLI, the app's Train tab and the notebook form


def _train_parser():
    from workbench.commands.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001 - argparse has no public getter


def _beyond(spec):
    """Values just outside a spec's range (what validation must refuse)."""
    lo, hi = spec.range
    step = 1 if spec.kind == "int" else 0.01
    return [v for v in (lo - step, None if hi is None else hi + step) if v is not None]


def test_every_training_option_is_described_on_its_field():
    from workbench.errors import ConfigError
    from workbench.train.options import OPTION_CHOICES, OPTION_HELP, OPTION_SPECS, PRESETS, TrainOptions

    assert list(OPTION_SPECS) == [f.name for f in dataclasses.fields(TrainOptions)]
    assert dict(OPTION_HELP) == {n: s.help for n, s in OPTION_SPECS.items()}
    assert OPTION_CHOICES["ct_mode"] == ("none", "rct", "lct", "mkl", "idt", "sot")
    ranged = [s for s in OPTION_SPECS.values() if s.range is not None]
    assert len(ranged) >= 30 and OPTION_SPECS["batch_size"].range == (1, 512)
    for spec in OPTION_SPECS.values():
        assert spec.default == getattr(TrainOptions(), spec.name)
        for options in PRESETS.values():
            assert spec.accepts(getattr(options, spec.name)), spec.name
    base = PRESETS["saehd"]
    for spec in ranged:  # the declared range is what validation enforces
        for value in _beyond(spec):
            assert not spec.accepts(value)
            with pytest.raises(ConfigError, match=spec.name):
                base.replace(**{spec.name: value})
    for name, choices in OPTION_CHOICES.items():
        for choice in choices:
            base.replace(**{name: choice})
        with pytest.raises(ConfigError, match=name):
            base.replace(**{name: "no-such-" + name})


def test_train_cli_flags_are_generated_from_the_fields():
    from workbench.commands.train import _SKIP
    from workbench.train.options import OPTION_SPECS

    train = _train_parser()
    actions = {a.dest: a for a in train._actions}  # noqa: SLF001
    for name, spec in OPTION_SPECS.items():
        if name in _SKIP:
            assert f"opt_{name}" not in actions
            continue
        action = actions[f"opt_{name}"]
        assert action.option_strings == [spec.cli_flag]
        assert action.choices == spec.choices
        assert spec.help.replace("%", "%%")[:40] in action.help
        if spec.range is not None:
            assert f"({spec.range_text})" in action.help or spec.range_text in spec.help
    args = train.parse_args(["proj", "--random-warp", "n", "--batch-size", "4", "--ct-mode", "rct", "--lr", "1e-4"])
    assert (args.opt_random_warp, args.opt_batch_size, args.opt_ct_mode, args.opt_lr) == (False, 4, "rct", 1e-4)
    for bad in (["--ct-mode", "xyz"], ["--random-warp", "maybe"], ["--batch-size", "2.5"]):
        with pytest.raises(SystemExit):
            train.parse_args(["proj", *bad])


def test_train_cli_refuses_an_option_out_of_range(tmp_path, capsys):
    import json

    from workbench.cli import main

    root = tmp_path / "proj"
    root.mkdir()
    (root / "workbench.json").write_text(json.dumps({"schema_version": 1, "name": "t"}))
    assert main(["train", str(root), "--batch-size", "0"]) == 2
    assert "batch_size=0: must be in 1..512" in capsys.readouterr().err
    assert main(["train", str(root), "--random-hsv-power", "0.31"]) == 2
    assert "must be in 0..0.3" in capsys.readouterr().err
    assert not (root / "models" / "tiny" / "config.json").exists()


def test_app_train_controls_are_generated_from_the_fields():
    from workbench.app.ui import _option_component
    from workbench.train.options import OPTION_SPECS, PRESETS

    tiny = PRESETS["tiny"]
    for name, spec in OPTION_SPECS.items():
        comp = _option_component(spec, getattr(tiny, name))
        assert comp.elem_id == f"opt-{name}" and comp.info == spec.help
        kind = type(comp).__name__
        if spec.kind == "bool":
            assert kind == "Checkbox"
        elif spec.choices is not None:
            assert kind == "Dropdown" and [c[1] for c in comp.choices] == list(spec.choices)
        elif spec.kind in ("int", "float"):
            assert kind == "Number" and comp.value == getattr(tiny, name)
            if spec.range is not None:
                lo, hi = spec.range
                assert (comp.minimum, comp.maximum) == (lo, hi)
                for value in _beyond(spec):  # the page refuses what validation would refuse
                    with pytest.raises(Exception, match="minimum|maximum"):
                        comp.preprocess(value)


def test_notebook_training_form_is_generated_from_the_fields():
    pytest.importorskip("ipywidgets")
    from workbench.errors import ConfigError
    from workbench.train.options import OPTION_SPECS, preset
    from workbench.widgets import WIDGET_INT_MAX, training_options_form

    start = preset("quick")
    form = training_options_form(start)
    assert list(form.controls) == list(OPTION_SPECS)
    for name, spec in OPTION_SPECS.items():
        control = form.controls[name]
        assert control.value == getattr(start, name) and control.tooltip == spec.help
        if spec.choices is not None:
            assert list(control.options) == list(spec.choices)
        elif spec.range is not None:
            lo, hi = spec.range
            assert (control.min, control.max) == (lo, WIDGET_INT_MAX if hi is None else hi)
    assert form.options() == start
    form.controls["batch_size"].value = 9999  # bounded: clamped to the range's top
    form.controls["ct_mode"].value = "mkl"
    assert (form.options().batch_size, form.options().ct_mode) == (512, "mkl")
    form.controls["archi"].value = "not-an-archi"
    with pytest.raises(ConfigError, match="archi"):
        form.options()


def test_a_new_training_option_appears_in_all_three_front_ends(monkeypatch):
    """A field added to TrainOptions needs no front-end code: the CLI flag, the app control and the notebook
    control all come from OPTION_SPECS (a made-up spec stands in for the new field)."""
    pytest.importorskip("ipywidgets")
    from workbench.options import OptionSpec
    from workbench.train import options as train_options
    from workbench.widgets import training_options_form

    knob = OptionSpec("new_knob", "int", 3, "A knob added later.", range=(1, 9))
    monkeypatch.setattr(train_options, "OPTION_SPECS", {**train_options.OPTION_SPECS, "new_knob": knob})
    train = _train_parser()
    assert train.parse_args(["proj", "--new-knob", "7"]).opt_new_knob == 7
    assert "(1..9)" in train.format_help()

    from workbench.app.ui import build_app

    demo = build_app(None)
    comps = [c for c in demo.blocks.values() if getattr(c, "elem_id", None) == "opt-new_knob"]
    assert len(comps) == 1 and (comps[0].minimum, comps[0].maximum, comps[0].value) == (1, 9, 3)
    control = training_options_form().controls["new_knob"]
    assert (type(control).__name__, control.min, control.max, control.value) == ("BoundedIntText", 1, 9, 3)
