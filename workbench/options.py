"""One options mechanism: an options dataclass field carries its help, range and choices, and every front end
(CLI flags, Gradio controls, notebook widgets) is generated from that one description, so they cannot drift.

Declare a field with :func:`option`; read the descriptions back with :func:`option_specs`::

    @dataclass(frozen=True)
    class MergeSettings:
        erode: int = option(0, "Shrink (>0) or grow (<0) the mask ...", range=(-400, 400))

The front-end builders (:func:`add_arguments` for argparse, ``workbench.app.ui`` for Gradio,
``workbench.widgets`` for ipywidgets) only read :class:`OptionSpec` objects.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_KEY = "workbench_option"


@dataclass(frozen=True)
class OptionSpec:
    """What a front end needs to show one option: name, kind, default, one-line help, range or choices."""

    name: str
    kind: str  # "bool" | "int" | "float" | "str"
    default: Any
    help: str
    range: tuple[float, float | None] | None = None  # inclusive; an upper bound None = unbounded
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # the CLI flag without "--" (default: the name with '-' for '_')

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))

    @property
    def range_text(self) -> str:
        """The range as users read it: ``"1..64"``, ``">= 0"``, or ``""`` without a range."""
        if self.range is None:
            return ""
        lo, hi = self.range
        return f">= {lo}" if hi is None else f"{lo}..{hi}"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` lies in the declared range and choices (the type is the dataclass's concern)."""
        if self.choices is not None and value not in self.choices:
            return False
        if self.range is None:
            return True
        lo, hi = self.range
        return lo <= value and (hi is None or value <= hi)


def option(default: Any, help: str, *, range: tuple[float, float | None] | None = None,  # noqa: A002 - the word users read
           choices: Sequence[str] | None = None, flag: str | None = None) -> Any:
    """A dataclass field with a default and its description (help, inclusive range, choices, CLI flag)."""
    meta = {"help": help, "range": None if range is None else tuple(range),
            "choices": None if choices is None else tuple(choices), "flag": flag}
    return dataclasses.field(default=default, metadata={_KEY: meta})


def option_specs(cls: type) -> dict[str, OptionSpec]:
    """The :class:`OptionSpec` of every field of an options dataclass declared with :func:`option`, in order."""
    out = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        out[f.name] = OptionSpec(f.name, kind, f.default, meta["help"], meta["range"], meta["choices"], meta["flag"])
    return out


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "y", "yes", "true", "on"):
        return True
    if value in ("0", "n", "no", "false", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected y/n, got {text!r}")


def add_arguments(parser: Any, specs: Iterable[OptionSpec], *, dest_prefix: str = "",
                  bool_values: bool = False) -> None:
    """One optional flag per option (default None = "not given"): type, choices, range and help from the spec.

    Booleans are ``--x/--no-x`` switches, or with ``bool_values`` flags that take ``y``/``n`` (DFL's style,
    kept by ``workbench train``).
    """
    for spec in specs:
        help_text = spec.help
        if spec.range is not None and spec.range_text not in help_text:
            help_text += f" ({spec.range_text})"
        kwargs: dict[str, Any] = {"dest": dest_prefix + spec.name, "default": None,
                                  "help": help_text.replace("%", "%%")}  # argparse formats help with %
        if spec.kind == "bool" and bool_values:
            kwargs.update(type=_bool, metavar="y|n")
        elif spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}[spec.kind]
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
            else:
                kwargs["metavar"] = spec.kind.upper()
        parser.add_argument(spec.cli_flag, **kwargs)
