"""`ModelConfig`: the architecture options of a DeepFaceLab SAEHD-style autoencoder (DF or LIAE).

The names and defaults follow DFL's SAEHD prompts (`models/Model_SAEHD/Model.py`):

- ``archi``: ``"df"`` or ``"liae"``, optionally followed by ``-`` and letters: ``"liae-ud"``.
  ``u`` pixel-normalises the encoder output, ``d`` doubles the output resolution with a depth-to-space head
  (cheaper: everything runs at half resolution), ``t`` uses a deeper encoder/decoder (one more stage and two
  residual blocks in the encoder), ``c`` swaps leaky-ReLU for the activation x·cos(x) (in DFL's code, not in its
  help text).
- ``resolution``: face crop side in pixels; a multiple of 16, or of 32 when ``d`` or ``t`` is used.
- ``ae_dims``: width of the bottleneck vector; ``e_dims``/``d_dims``/``d_mask_dims``: encoder, decoder and mask
  decoder base channel counts (even numbers).

The constructor validates strictly and raises `ConfigError` (it never silently changes a value). DFL's own
rounding (resolution snapped down to the multiple, clipped to 64..640, odd dims made even, ``d_mask_dims``
defaulting to ``d_dims // 3`` made even) is available as ``ModelConfig.from_archi_string(..., snap=True)``.
DFL's recommended ranges are listed in `DFL_RANGES`; values outside them but structurally valid (tiny models
for tests and demos) are allowed, and `ModelConfig.dfl_warnings` lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from workbench.align import normalize_face_type
from workbench.errors import ConfigError

ARCHIS: tuple[str, ...] = ("df", "liae")
LETTERS: str = "udtc"  # canonical order of the archi letters
SCHEMA_VERSION = 1

# DFL's prompt ranges (constants.md §5). Outside them the model still builds; see ModelConfig.dfl_warnings.
DFL_RANGES: dict[str, tuple[int, int]] = {
    "resolution": (64, 640),
    "ae_dims": (32, 1024),
    "e_dims": (16, 256),
    "d_dims": (16, 256),
    "d_mask_dims": (16, 256),
}
# Hard limits: below these the network cannot be built (or is meaningless); above them it cannot fit anywhere.
_HARD_LIMITS: dict[str, tuple[int, int]] = {
    "resolution": (16, 640),
    "ae_dims": (2, 4096),
    "e_dims": (2, 1024),
    "d_dims": (2, 1024),
    "d_mask_dims": (2, 1024),
}

FIELD_HELP: dict[str, str] = {
    "archi": "Architecture: 'df' (one shared inter, one decoder per identity) or 'liae' (two inters, one decoder).",
    "letters": "Archi letters: u = pixel-norm the code, d = double resolution via depth-to-space, "
    "t = deeper encoder/decoder, c = x*cos(x) activation.",
    "resolution": "Face crop side in pixels the network sees; multiple of 16 (32 with 'd' or 't'). DFL default 128.",
    "face_type": "Crop extent the model is trained on: half, mid_full, full, whole_face or head. DFL default full.",
    "ae_dims": "Bottleneck width: the size of the face code vector. Larger keeps more detail. DFL default 256.",
    "e_dims": "Encoder base channels (even); the encoder ends at 8x this. DFL default 64.",
    "d_dims": "Decoder base channels (even); the decoder starts at 8x this. DFL default 64.",
    "d_mask_dims": "Mask-decoder base channels (even). DFL default d_dims // 3 made even (22).",
}


def default_d_mask_dims(d_dims: int) -> int:
    """DFL's default mask-decoder width: ``d_dims // 3``, made even (64 -> 22)."""
    m = d_dims // 3
    return m + (m % 2)


def snap_resolution(resolution: int, letters: str = "") -> int:
    """DFL's rounding of a requested resolution: down to a multiple of 16 (32 with 'd' or 't'), clipped to 64..640.

    DFL itself only uses multiples of 32 for 'd'; with 't' and a resolution of 16 x odd its encoder output does
    not match the inter's input size, so the workbench requires a multiple of 32 for 't' as well.
    """
    step = 32 if ("d" in letters or "t" in letters) else 16
    lo, hi = DFL_RANGES["resolution"]
    return int(min(max((int(resolution) // step) * step, lo), hi))


def _canonical_letters(letters: str) -> str:
    letters = letters.strip().lower()
    bad = sorted({ch for ch in letters if ch not in LETTERS})
    if bad:
        raise ConfigError(
            f"unknown archi letter(s) {''.join(bad)!r} in {letters!r}",
            hint="use any of u, d, t, c (for example 'liae-ud' or 'df-udt')",
        )
    if len(set(letters)) != len(letters):
        raise ConfigError(
            f"archi letters {letters!r} repeat a letter", hint="write each letter once, e.g. 'ud'"
        )
    return "".join(ch for ch in LETTERS if ch in letters)


def _canonical_face_type(face_type: str) -> str:
    # One list of face types and DFL spellings for the whole workbench: the alignment module's.
    return normalize_face_type(face_type)


def parse_archi_string(text: str) -> tuple[str, str]:
    """Split a DFL archi string such as ``"liae-ud"`` into ``("liae", "ud")`` (letters in canonical order)."""
    text = str(text).strip().lower()
    archi, sep, letters = text.partition("-")
    if archi not in ARCHIS:
        raise ConfigError(
            f"unknown architecture {text!r}", hint="use 'df' or 'liae', optionally with -letters"
        )
    if sep and not letters:
        raise ConfigError(
            f"archi string {text!r} ends with '-'", hint="drop the '-' or add letters (u, d, t, c)"
        )
    return archi, _canonical_letters(letters)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture options of a DF/LIAE autoencoder (validated; JSON-able with `to_dict`).

    Example:
        >>> cfg = ModelConfig.from_archi_string("liae-ud", resolution=128)
        >>> cfg.archi_string, cfg.d_mask_dims, cfg.inter_res
        ('liae-ud', 22, 4)
    """

    archi: str = "liae"
    letters: str = "ud"
    resolution: int = 128
    face_type: str = "full"
    ae_dims: int = 256
    e_dims: int = 64
    d_dims: int = 64
    d_mask_dims: int = 22

    def __post_init__(self) -> None:
        archi = str(self.archi).strip().lower()
        if "-" in archi:
            raise ConfigError(
                f"archi {self.archi!r} contains letters",
                hint="use ModelConfig.from_archi_string for 'liae-ud'",
            )
        if archi not in ARCHIS:
            raise ConfigError(f"unknown architecture {self.archi!r}", hint="use 'df' or 'liae'")
        object.__setattr__(self, "archi", archi)
        object.__setattr__(self, "letters", _canonical_letters(str(self.letters)))
        object.__setattr__(self, "face_type", _canonical_face_type(self.face_type))
        for name in ("resolution", "ae_dims", "e_dims", "d_dims", "d_mask_dims"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            lo, hi = _HARD_LIMITS[name]
            if not lo <= value <= hi:
                raise ConfigError(f"{name} = {value} is outside {lo}..{hi}", hint=FIELD_HELP[name])
        step = 32 if ("d" in self.letters or "t" in self.letters) else 16
        if self.resolution % step:
            why = "with 'd' or 't' in the archi" if step == 32 else ""
            raise ConfigError(
                f"resolution {self.resolution} is not a multiple of {step} {why}".rstrip(),
                hint=f"use {max(step, (self.resolution // step) * step)} (DFL rounds down)",
            )
        for name in ("e_dims", "d_dims", "d_mask_dims"):
            value = getattr(self, name)
            if value % 2:
                raise ConfigError(
                    f"{name} = {value} must be even", hint=f"use {value + 1} (DFL adds 1 to odd values)"
                )

    # ---- construction helpers -------------------------------------------------------------------------------
    @classmethod
    def from_archi_string(
        cls,
        archi: str,
        *,
        resolution: int = 128,
        face_type: str = "full",
        ae_dims: int = 256,
        e_dims: int = 64,
        d_dims: int = 64,
        d_mask_dims: int | None = None,
        snap: bool = False,
    ) -> ModelConfig:
        """Build from a DFL archi string (``"df"``, ``"liae-ud"``, ``"df-udt"``...).

        Args:
            d_mask_dims: None gives DFL's default ``d_dims // 3`` made even.
            snap: apply DFL's rounding instead of raising: resolution down to the multiple and clipped to
                64..640, odd e/d/d_mask dims + 1, dims clipped to DFL's ranges.
        """
        name, letters = parse_archi_string(archi)
        if snap:
            resolution = snap_resolution(resolution, letters)

            def clip(n: str, v: int) -> int:
                lo, hi = DFL_RANGES[n]
                return int(min(max(int(v) + int(v) % (1 if n == "ae_dims" else 2), lo), hi))

            ae_dims, e_dims, d_dims = clip("ae_dims", ae_dims), clip("e_dims", e_dims), clip("d_dims", d_dims)
            d_mask_dims = clip(
                "d_mask_dims", default_d_mask_dims(d_dims) if d_mask_dims is None else d_mask_dims
            )
        elif d_mask_dims is None:
            d_mask_dims = default_d_mask_dims(int(d_dims))
        return cls(
            archi=name,
            letters=letters,
            resolution=resolution,
            face_type=face_type,
            ae_dims=ae_dims,
            e_dims=e_dims,
            d_dims=d_dims,
            d_mask_dims=d_mask_dims,
        )

    @classmethod
    def quick96(cls) -> ModelConfig:
        """DFL's Quick96 model: df-ud, res 96, full face, ae 128, e 64, d 64, d_mask 16 (about 38.3M parameters)."""
        return cls(
            archi="df",
            letters="ud",
            resolution=96,
            face_type="full",
            ae_dims=128,
            e_dims=64,
            d_dims=64,
            d_mask_dims=16,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        data = asdict(self)
        data.update(changes)
        return ModelConfig(**data)

    # ---- derived values -------------------------------------------------------------------------------------
    @property
    def archi_string(self) -> str:
        """DFL spelling, e.g. ``"liae-ud"`` or ``"df"``."""
        return f"{self.archi}-{self.letters}" if self.letters else self.archi

    @property
    def encoder_res(self) -> int:
        """Spatial side of the encoder output: res/16, or res/32 with 't'."""
        return self.resolution // (32 if "t" in self.letters else 16)

    @property
    def inter_res(self) -> int:
        """Side R of the inter's dense reshape: res//16, or res//32 with 'd'."""
        return self.resolution // (32 if "d" in self.letters else 16)

    @property
    def code_res(self) -> int:
        """Spatial side of the code the decoder consumes: 2R, or R with 't' (no inter upscale)."""
        return self.inter_res if "t" in self.letters else 2 * self.inter_res

    def dfl_warnings(self) -> list[str]:
        """Fields that build fine but lie outside DFL's prompt ranges (one sentence each)."""
        out = []
        for name, (lo, hi) in DFL_RANGES.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                out.append(f"{name} = {value} is outside DFL's range {lo}..{hi}")
        return out

    # ---- serialisation --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (with ``schema_version`` and the readable ``archi_string``)."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "archi_string": self.archi_string}
        data.update(asdict(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys or a newer schema raise `ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(
                f"model config schema_version {version!r} is newer than this workbench understands",
                hint="upgrade the workbench",
            )
        archi_string = data.pop("archi_string", None)
        if archi_string is not None and "archi" not in data and "letters" not in data:
            data["archi"], data["letters"] = parse_archi_string(archi_string)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown model config key(s): {', '.join(unknown)}", hint=f"known: {sorted(names)}"
            )
        cfg = cls(**data)
        if archi_string is not None and str(archi_string).lower() != cfg.archi_string:
            try:
                same = parse_archi_string(archi_string) == (cfg.archi, cfg.letters)
            except ConfigError:
                same = False
            if not same:
                raise ConfigError(
                    f"archi_string {archi_string!r} disagrees with archi/letters {cfg.archi_string!r}",
                    hint="edit one of them so they match",
                )
        return cfg
