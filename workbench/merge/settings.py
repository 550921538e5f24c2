"""Merge settings: DFL's merger knobs (:class:`MergeSettings`), their names, ranges and help, and the
per-frame-range overrides saved as ``PROJECT/merge.json`` (:class:`MergeConfig`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import align, color
from ..errors import ConfigError
from ..fileutil import atomic_write_json

# ----------------------------------------------------------------------------------------------------------
# Names and constants (constants.md §9)

MODES: tuple[str, ...] = (
    "original", "overlay", "hist-match", "seamless", "seamless-hist-match", "raw-rgb", "raw-predict",
)
"""Merge modes, in DFL's order (codes 0..6)."""

LEARNED_MASK_MODES: tuple[str, ...] = (
    "full", "dst", "learned-prd", "learned-dst", "learned-prd*learned-dst", "learned-prd+learned-dst",
)
"""Mask modes that need only the model (codes 0..5)."""

SEGMENTATION_MASK_MODES: tuple[str, ...] = (
    "xseg-prd", "xseg-dst", "xseg-prd*xseg-dst", "learned-prd*learned-dst*xseg-prd*xseg-dst",
)
"""Mask modes that also need a segmentation callable (DFL's XSeg modes 6..9)."""

MASK_MODES: tuple[str, ...] = LEARNED_MASK_MODES + SEGMENTATION_MASK_MODES
SHARPEN_MODES: tuple[str, ...] = ("none", "box", "gaussian")

MERGE_SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# Settings


def color_transfer_names() -> tuple[str, ...]:
    """Valid ``color_transfer`` values: "none", every key of ``color.TRANSFERS``, and ``<key>-m``.

    The ``-m`` variants run the transfer on the images multiplied by the binary working mask (DFL's
    ``mkl-m``, ``idt-m``, ``sot-m``, ``mix-m``); ``rct`` always uses the mask, as in DFL.
    """
    names = ["none"]
    for key in color.TRANSFERS:
        if key not in names:
            names.append(key)
    for key in color.TRANSFERS:
        if key not in ("none", "rct", "hist_match"):
            names.append(f"{key}-m")
    return tuple(names)


INT_RANGES: dict[str, tuple[int, int]] = {
    "erode": (-400, 400),
    "blur": (0, 400),
    "motion_blur": (0, 100),
    "output_face_scale": (-50, 50),
    "hist_match_threshold": (0, 255),
    "blursharpen_amount": (-100, 100),
    "super_resolution_power": (0, 100),
    "image_denoise_power": (0, 500),
    "bicubic_degrade_power": (0, 100),
    "color_degrade_power": (0, 100),
    "resolution": (16, 1024),
}

FIELD_HELP: dict[str, str] = {
    "mode": "How the face is put back: overlay (alpha blend), hist-match, seamless (Poisson clone), "
    "seamless-hist-match, raw-rgb (whole predicted square), raw-predict (the aligned prediction) or original.",
    "mask_mode": "Which mask cuts the face: full square, dst landmark hull, learned-prd (model's mask of the swap), "
    "learned-dst (model's mask of the destination), their product (default) or sum; xseg-* need a segmenter.",
    "erode": "Shrink (>0) or grow (<0) the mask, in pixels of the 4x-resolution mask (-400..400).",
    "blur": "Feather the mask edge with a Gaussian of this size, in 4x-resolution pixels (0..400).",
    "motion_blur": "Blur the face along its motion between the previous and next frame, % of the motion (0..100).",
    "output_face_scale": "Resize the pasted face: the face square is scaled by 1/(1 + s/100), so positive values "
    "paste a smaller face, negative a larger one (-50..50).",
    "color_transfer": "Match the swapped face's colours to the destination face: rct (default), lct, mkl, idt, sot, "
    "mix, hist_match, none; '-m' variants use masked images.",
    "masked_hist_match": "Hist-match only inside the mask (pixels outside are set to white in both faces).",
    "hist_match_threshold": "Limit the histogram-matching correction: 255 = full match, lower = weaker (0..255).",
    "sharpen_mode": "Filter for a positive blur/sharpen amount: none, box or gaussian (3 px kernel).",
    "blursharpen_amount": "Sharpen the face (>0, with sharpen_mode) or blur it by median blending (<0) (-100..100).",
    "super_resolution_power": "Blend in a x4 face enhancer's output by this percent (0..100; needs an enhancer).",
    "image_denoise_power": "Median-denoise the destination frame (background) to match a smooth face (0..500).",
    "bicubic_degrade_power": "Soften the frame by bicubic down- and up-scaling, % strength (0..100).",
    "color_degrade_power": "Blend in a 256-colour adaptive-palette version of the output, percent (0..100).",
    "face_type": "Face type the model was trained on (crop extent): half, mid_full, full, whole_face, head.",
    "resolution": "Model input resolution in pixels (the side of the face crop the model sees).",
}


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"merge setting {name} must be an integer, got {value!r}", hint=FIELD_HELP.get(name))
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise ConfigError(f"merge setting {name} must be a whole number, got {value!r}", hint=FIELD_HELP.get(name))
    value = int(value)
    lo, hi = INT_RANGES[name]
    if not lo <= value <= hi:
        raise ConfigError(f"merge setting {name}={value} is out of range {lo}..{hi}", hint=FIELD_HELP.get(name))
    return value


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"merge setting {name}={value!r} is not one of: {', '.join(choices)}",
                          hint=FIELD_HELP.get(name))
    return value


@dataclass(frozen=True)
class MergeSettings:
    """Every knob of DFL's merger, with ``MergerConfigMasked``'s constructor defaults (constants.md §9).

    Integer settings keep DFL's units and ranges; see :data:`FIELD_HELP` for one-line explanations.
    ``face_type`` and ``resolution`` describe the model (they are set from the predictor when it knows them).

    Raises:
        ConfigError: a value is out of range or not a valid name (the message names the field and its range).
    """

    mode: str = "overlay"
    mask_mode: str = "learned-prd*learned-dst"
    erode: int = 0
    blur: int = 0
    motion_blur: int = 0
    output_face_scale: int = 0
    color_transfer: str = "rct"
    masked_hist_match: bool = True
    hist_match_threshold: int = 238
    sharpen_mode: str = "none"
    blursharpen_amount: int = 0
    super_resolution_power: int = 0
    image_denoise_power: int = 0
    bicubic_degrade_power: int = 0
    color_degrade_power: int = 0
    face_type: str = "full"
    resolution: int = 128

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        if isinstance(self.mask_mode, str):
            object.__setattr__(self, "mask_mode", self.mask_mode.lower())
        _check_choice("mask_mode", self.mask_mode, MASK_MODES)
        _check_choice("color_transfer", self.color_transfer, color_transfer_names())
        _check_choice("sharpen_mode", self.sharpen_mode, SHARPEN_MODES)
        if not isinstance(self.masked_hist_match, (bool, np.bool_)):
            raise ConfigError(f"merge setting masked_hist_match must be true or false, got {self.masked_hist_match!r}")
        object.__setattr__(self, "masked_hist_match", bool(self.masked_hist_match))
        for name in INT_RANGES:
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        try:
            object.__setattr__(self, "face_type", align.normalize_face_type(self.face_type))
        except ConfigError as exc:
            raise ConfigError(f"merge setting face_type: {exc.message}", hint=FIELD_HELP["face_type"]) from exc

    @property
    def is_raw(self) -> bool:
        return self.mode.startswith("raw")

    @property
    def needs_segmenter(self) -> bool:
        return "xseg" in self.mask_mode

    def replace(self, **changes: Any) -> MergeSettings:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown merge setting(s): {', '.join(sorted(unknown))}",
                              hint=f"valid: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergeSettings:
        """Build from a mapping; missing keys take the defaults, unknown keys raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"merge settings must be a JSON object, got {type(data).__name__}")
        return cls().replace(**dict(data))

    def fingerprint(self) -> str:
        """Short stable hash of the settings (used to re-merge frames whose settings changed)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Per-frame-range overrides (the interactive merger's carry-over)


@dataclass(frozen=True)
class RangeOverride:
    """Setting changes for frames ``start <= index < stop`` (``stop`` None = to the end)."""

    start: int
    stop: int | None
    changes: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.start, bool) or not isinstance(self.start, (int, np.integer)) or self.start < 0:
            raise ConfigError(f"override start must be a frame index >= 0, got {self.start!r}")
        if self.stop is not None and (isinstance(self.stop, bool) or not isinstance(self.stop, (int, np.integer))
                                      or self.stop <= self.start):
            raise ConfigError(f"override stop must be an index > start ({self.start}) or null, got {self.stop!r}")
        if not isinstance(self.changes, Mapping):
            raise ConfigError("override changes must be a mapping of setting name -> value")
        object.__setattr__(self, "start", int(self.start))
        object.__setattr__(self, "stop", None if self.stop is None else int(self.stop))
        object.__setattr__(self, "changes", dict(self.changes))

    def covers(self, frame_index: int) -> bool:
        return self.start <= frame_index and (self.stop is None or frame_index < self.stop)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "changes": dict(self.changes)}


@dataclass(frozen=True)
class MergeConfig:
    """Default settings plus per-frame-range overrides; later overrides win where ranges overlap.

    ``temporal_smoothing`` (0..1) is the strength of landmark smoothing over time (0 = off).
    Saved as ``PROJECT/merge.json``.
    """

    default: MergeSettings = field(default_factory=MergeSettings)
    overrides: tuple[RangeOverride, ...] = ()
    temporal_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.default, MergeSettings):
            raise ConfigError("MergeConfig.default must be a MergeSettings")
        overrides = tuple(self.overrides)
        for ov in overrides:
            if not isinstance(ov, RangeOverride):
                raise ConfigError("MergeConfig.overrides must hold RangeOverride items")
            try:
                self.default.replace(**ov.changes)
            except ConfigError as exc:
                raise ConfigError(f"override for frames {ov.start}..{ov.stop}: {exc.message}", hint=exc.hint) from exc
        object.__setattr__(self, "overrides", overrides)
        ts = self.temporal_smoothing
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0.0 <= float(ts) <= 1.0:
            raise ConfigError(f"temporal_smoothing={ts!r} is out of range 0..1",
                              hint="0 = off; 0.5 is a good start for steady shots")
        object.__setattr__(self, "temporal_smoothing", float(ts))

    def settings_for(self, frame_index: int) -> MergeSettings:
        """The settings that apply to one frame."""
        changes: dict[str, Any] = {}
        for ov in self.overrides:
            if ov.covers(frame_index):
                changes.update(ov.changes)
        return self.default.replace(**changes) if changes else self.default

    def with_override(self, start: int, stop: int | None, **changes: Any) -> MergeConfig:
        """A new config with one more override (applied on top of the earlier ones)."""
        return dataclasses.replace(self, overrides=(*self.overrides, RangeOverride(start, stop, changes)))

    def with_settings(self, start: int, stop: int | None, settings: MergeSettings) -> MergeConfig:
        """Carry ``settings`` over frames ``start..stop`` (stored as its difference from the default)."""
        diff = {k: v for k, v in settings.to_dict().items() if getattr(self.default, k) != v}
        return self.with_override(start, stop, **diff)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": MERGE_SCHEMA_VERSION,
            "default": self.default.to_dict(),
            "overrides": [ov.to_dict() for ov in self.overrides],
            "temporal_smoothing": self.temporal_smoothing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MergeConfig:
        if not isinstance(data, Mapping):
            raise ConfigError("merge config must be a JSON object")
        version = data.get("schema_version", MERGE_SCHEMA_VERSION)
        if version != MERGE_SCHEMA_VERSION:
            raise ConfigError(f"unsupported merge config schema_version {version!r} (expected {MERGE_SCHEMA_VERSION})")
        unknown = set(data) - {"schema_version", "default", "overrides", "temporal_smoothing"}
        if unknown:
            raise ConfigError(f"unknown merge config key(s): {', '.join(sorted(unknown))}")
        try:
            overrides = tuple(RangeOverride(int(o["start"]), None if o.get("stop") is None else int(o["stop"]),
                                            dict(o.get("changes", {}))) for o in data.get("overrides", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"broken override entry in merge config ({exc})") from exc
        return cls(MergeSettings.from_dict(data.get("default", {})), overrides,
                   data.get("temporal_smoothing", 0.0))

    def save(self, path: str | Path) -> Path:
        """Write as JSON, atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> MergeConfig:
        """Read a saved config.

        Raises:
            ConfigError: unreadable JSON or invalid values (the message names the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read merge settings ({exc})", path,
                              "fix the JSON or delete the file to start from the defaults") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(exc.message, path, exc.hint) from exc


def adapt_to_predictor(config: MergeConfig, predict: Any) -> MergeConfig:
    """Set ``resolution`` and ``face_type`` from the predictor's attributes of those names, when it has them
    (they are facts about the model, not choices), in the default and in every override."""
    facts = {k: getattr(predict, k) for k in ("resolution", "face_type") if getattr(predict, k, None) is not None}
    if not facts:
        return config
    overrides = tuple(RangeOverride(o.start, o.stop, {k: v for k, v in o.changes.items() if k not in facts})
                      for o in config.overrides)
    return dataclasses.replace(config, default=config.default.replace(**facts), overrides=overrides)
