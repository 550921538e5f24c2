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
