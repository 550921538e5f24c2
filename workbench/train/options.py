"""Training options: one frozen dataclass, a one-line explanation per option, presets and validation.

The defaults are DeepFaceLab's SAEHD defaults (reference constants §5); :data:`PRESETS` holds the three
starting points (``tiny`` for demos and tests, ``quick`` = Quick96, ``saehd`` = SAEHD). Options travel as
plain JSON (``to_dict``/``from_dict``), never pickle.

Example:
    >>> opts = preset("tiny", batch_size=4)
    >>> TrainOptions.from_dict(opts.to_dict()) == opts
    True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from ..options import option, option_specs

ARCHI_RE = re.compile(r"^(df|liae)(-[udtc]*)?$")
FACE_TYPES = ("half", "mid_full", "full", "whole_face", "head")
OPTIMIZERS = ("adabelief", "adam", "rmsprop")
CT_MODES = ("none", "rct", "lct", "mkl", "idt", "sot")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Options that define the network's shape: a checkpoint only loads into a model with the same values.
MODEL_FIELDS = ("archi", "resolution", "face_type", "ae_dims", "e_dims", "d_dims", "d_mask_dims")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that controls a training run (model shape + optimisation + bookkeeping).

    Defaults are DFL SAEHD's. Each field is declared with :func:`workbench.options.option`: its one-line help,
    inclusive range and choices live here, and the CLI flags, the app's controls and the notebook widgets are
    generated from them (:data:`OPTION_SPECS`).
    """

    # --- model (fixed for the life of a run) ---
    archi: str = option("liae-ud",
        "Network family and letters: 'df' (one inter, two decoders) or 'liae' (two inters, one decoder) plus "
        "-u (pixel-norm), -d (double output res), -t (deeper), e.g. liae-ud.")
    resolution: int = option(128,
        "Side of the square face the model sees, in pixels (multiple of 16; of 32 with 'd'); cost grows with "
        "its square.", range=(32, 640))
    face_type: str = option("full",
        "How much of the head the model sees: half, mid_full, full, whole_face or head (facesets of another "
        "type are re-cropped).", choices=FACE_TYPES)
    ae_dims: int = option(256,
        "Width of the bottleneck code (autoencoder dims); more keeps more identity/expression detail but "
        "costs memory.", range=(8, 1024))
    e_dims: int = option(64, "Base channel count of the encoder's convolutions (DFL e_dims).", range=(4, 256))
    d_dims: int = option(64, "Base channel count of the image decoder (DFL d_dims).", range=(4, 256))
    d_mask_dims: int = option(22,
        "Base channel count of the mask decoder (DFL d_mask_dims, default d_dims//3 made even).", range=(4, 256))
    # --- data and augmentation ---
    batch_size: int = option(8,
        "Faces per side per step; larger is smoother and faster per face but needs more memory.", range=(1, 512))
    masked_training: bool = option(True,
        "Compute the image losses only inside the (blurred) face mask, so the background is not learned.")
    eyes_mouth_prio: bool = option(False,
        "Add a strong L1 loss on the eyes and mouth so these details sharpen earlier.")
    uniform_yaw: bool = option(False,
        "Sample faces evenly over head yaw (128 bins) so rare profile views are seen as often as frontal "
        "ones.")
    blur_out_mask: bool = option(False,
        "Replace the background of targets by a blur of the face's surroundings so the mask edge carries no "
        "hard background detail.")
    random_warp: bool = option(True,
        "Elastically warp the network input (not the target) so the model learns faces instead of memorising "
        "pixels; turn off only to polish.")
    random_hsv_power: float = option(0.0,
        "Randomly shift hue/saturation/brightness of src inputs by up to this amount (0..0.3) for colour "
        "robustness.", range=(0, 0.3))
    ct_mode: str = option("none",
        "Colour-transfer each src face toward a random dst face before training: none, rct, lct, mkl, idt or "
        "sot.", choices=CT_MODES)
    random_src_flip: bool = option(False,
        "Mirror src faces at random (40%) to double pose variety; may hurt asymmetric faces.")
    random_dst_flip: bool = option(True, "Mirror dst faces at random (40%).")
    loader_workers: int = option(2,
        "Threads that decode face files (0 = decode in the training thread).", range=(0, 64))
    # --- optimisation ---
    optimizer: str = option("adabelief",
        "Update rule: adabelief (DFL default), adam or rmsprop (Quick96).", choices=OPTIMIZERS)
    lr: float = option(5e-5, "Learning rate (step size of every update); DFL uses 5e-5.", range=(0, 1))
    lr_dropout: float = option(1.0,
        "Probability that each weight's update is kept per step (DFL lr_dropout=y is 0.3; 1.0 = off); use "
        "late in training.", range=(0, 1))
    lr_cos_period: int = option(0,
        "Period in steps of a cosine learning-rate cycle (DFL uses 500 with lr_dropout; 0 = off).", range=(0, None))
    clipgrad: bool = option(False, "Clip the global gradient norm at 1.0 to soften loss spikes (DFL clipgrad).")
    warmup_steps: int = option(0,
        "Ramp the learning rate linearly from 0 over this many steps (0 = off).", range=(0, None))
    gan_power: float = option(0.0,
        "Weight of the adversarial loss from a U-Net patch discriminator (DFL suggests 0.1); sharpens, risks "
        "artefacts.", range=(0, 5))
    gan_patch_size: int = option(0,
        "Receptive field of the GAN discriminator in pixels (0 = resolution//8).", range=(0, 640))
    gan_dims: int = option(16, "Base channel count of the GAN discriminator.", range=(4, 512))
    true_face_power: float = option(0.0,
        "DF only: weight of a code discriminator that pushes src codes toward dst codes for a more src-like "
        "swap (0..1).", range=(0, 1))
    face_style_power: float = option(0.0,
        "Weight (0..100) of a style loss pulling the swapped face's colours/lighting toward the dst face.", range=(0, 100))
    bg_style_power: float = option(0.0,
        "Weight (0..100) of a loss pulling the swapped face's surroundings toward the dst background.", range=(0, 100))
    progressive: bool = option(False,
        "Coarse-to-fine schedule: train first on low-resolution versions of the samples, raising the "
        "effective resolution in stages.")
    progressive_stage_steps: int = option(2000,
        "Steps per progressive stage (res/4, res/2, then full resolution).", range=(1, 10_000_000))
    pretrain: bool = option(False,
        "Pretraining on a generic faceset: forces flips and uniform yaw on, warp/GAN/styles off; switching it "
        "off re-initialises the inters and resets the step.")
    # --- runtime ---
    precision: str = option("auto",
        "Number format: auto (bf16 on CUDA GPUs with bf16 and on CPUs with AVX512-BF16 or AMX, else fp32; never "
        "an emulated one), fp32, bf16 or fp16 autocast (fp16 with a gradient scaler).", choices=PRECISIONS)
    channels_last: bool = option(False,
        "Store activations as NHWC: try it on CUDA tensor cores; on CPU it measured ~5% slower for these "
        "models.")
    compile: bool = option(False, "Compile the model with torch.compile (slow start, faster steps on GPU).")
    device: str = option("auto", "Where to train: auto (CUDA if present), cpu, cuda, cuda:N or mps.")
    cpu_threads: int = option(0,
        "Torch CPU threads (0 = auto: now and then time 1 thread vs all cores and keep the faster; a busy "
        "machine often trains faster on one).", range=(0, 1024))
    seed: int = option(0,
        "Seed of every random choice (weights, sampling, augmentation) so runs are reproducible.", range=(0, None))
    # --- bookkeeping ---
    preview_every: int = option(500,
        "Write a preview grid every this many steps (0 = only on request).", range=(0, None))
    save_every_seconds: float = option(1500.0,
        "Save a checkpoint every this many seconds (DFL: 25 minutes; 0 = off).", range=(0, None))
    save_every_steps: int = option(0, "Also save every this many steps (0 = off).", range=(0, None))
    target_steps: int = option(0,
        "Stop (state finished) after this many steps (0 = train until stopped).", range=(0, None))
    autobackup_every: int = option(0,
        "Copy the checkpoint into a rotating backup every this many steps (0 = off).", range=(0, None))
    autobackup_keep: int = option(24, "How many rotating backups to keep.", range=(1, 1000))
    metrics_every: int = option(500,
        "Compute SSIM/PSNR on the held-out faces every this many steps (0 = off).", range=(0, None))
    metrics_samples: int = option(4,
        "Faces per side held out of training for objective metrics (fewer if the faceset is small).", range=(0, None))
    metrics_identity: bool = option(True,
        "With the metrics, also score how much src->dst swaps of a few dst faces look like the source (dlib "
        "face embedding): 'looks like the source'.")
    collapse_patience: int = option(3,
        "Non-finite losses in a row after which the trainer rolls back to the last good checkpoint.", range=(1, 1000))
    status_every_seconds: float = option(1.0, "How often status.json is rewritten.", range=(0, None))

    def __post_init__(self) -> None:
        validate(self)

    # ----- derived values -----
    @property
    def is_df(self) -> bool:
        return self.archi.split("-")[0] == "df"

    @property
    def archi_letters(self) -> str:
        parts = self.archi.split("-", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def effective_gan_patch_size(self) -> int:
        """DFL default for ``gan_patch_size`` 0: resolution // 8."""
        return self.gan_patch_size or max(3, self.resolution // 8)

    def effective(self) -> TrainOptions:
        """The options the trainer really uses: pretraining forces DFL's pretrain settings (§3.6)."""
        if not self.pretrain:
            return self
        return dataclasses.replace(
            self, random_warp=False, random_src_flip=True, random_dst_flip=True, gan_power=0.0,
            random_hsv_power=0.0, face_style_power=0.0, bg_style_power=0.0, true_face_power=0.0,
            lr_dropout=1.0, lr_cos_period=0, uniform_yaw=True,
        )

    def model_dict(self) -> dict[str, Any]:
        """The model-defining options only (what a checkpoint must match)."""
        return {name: getattr(self, name) for name in MODEL_FIELDS}

    def model_config(self):
        """Build the :class:`workbench.models.ModelConfig` for these options."""
        from ..models.config import ModelConfig

        try:
            return ModelConfig.from_archi_string(
                self.archi, resolution=self.resolution, face_type=self.face_type, ae_dims=self.ae_dims,
                e_dims=self.e_dims, d_dims=self.d_dims, d_mask_dims=self.d_mask_dims,
            )
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid model options: {exc}") from exc

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with some options changed (validated); unknown names raise ConfigError."""
        unknown = sorted(set(changes) - set(OPTION_HELP))
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}",
                              hint=f"valid options: {', '.join(OPTION_HELP)}")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    # ----- JSON -----
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Inverse of :meth:`to_dict`; unknown keys or wrong types raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"training options must be a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - set(OPTION_HELP))
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}",
                              hint="remove them from config.json or upgrade the workbench")
        return cls(**{k: _coerce(k, v) for k, v in data.items()})


OPTION_SPECS: MappingProxyType = MappingProxyType(option_specs(TrainOptions))
"""Every training option's :class:`workbench.options.OptionSpec` (help, range, choices), in dataclass order."""
OPTION_HELP: MappingProxyType = MappingProxyType({name: spec.help for name, spec in OPTION_SPECS.items()})
"""One line of help per option (derived from :data:`OPTION_SPECS`)."""
OPTION_CHOICES: MappingProxyType = MappingProxyType({name: spec.choices for name, spec in OPTION_SPECS.items()
                                                     if spec.choices is not None})
"""The options limited to a fixed list of names (derived from :data:`OPTION_SPECS`)."""

_FIELD_TYPES = {f.name: f.type for f in fields(TrainOptions)}


def _coerce(name: str, value: Any) -> Any:
    """Check/convert one JSON value to the option's type (ints accepted for floats, not vice versa)."""
    kind = _FIELD_TYPES[name]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("y", "yes", "true", "1", "n", "no", "false", "0"):
            return value.lower() in ("y", "yes", "true", "1")
        raise ConfigError(f"option {name} must be true/false, not {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"option {name} must be a whole number, not {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"option {name} must be a number, not {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"option {name} must be text, not {value!r}")
    return value


def validate(o: TrainOptions) -> None:
    """Raise ConfigError for any out-of-range or inconsistent option."""
    def bad(name: str, why: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"option {name}={getattr(o, name)!r}: {why}", hint=hint or OPTION_HELP[name])

    for f in fields(o):
        value = getattr(o, f.name)
        expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[f.type]
        if not isinstance(value, expected) or (f.type in ("int", "float") and isinstance(value, bool)):
            raise ConfigError(f"option {f.name} has type {type(value).__name__}, expected {f.type}")
    for name, spec in OPTION_SPECS.items():  # the declared ranges and choices
        value = getattr(o, name)
        if spec.choices is not None and value not in spec.choices:
            raise bad(name, f"must be one of {', '.join(spec.choices)}")
        if spec.range is not None:
            lo, hi = spec.range
            if hi is None and value < lo:
                raise bad(name, "must not be negative" if lo == 0 else f"must be >= {lo}")
            if hi is not None and not lo <= value <= hi:
                raise bad(name, f"must be in {lo}..{hi}")
    # the rules a range cannot say
    if not ARCHI_RE.match(o.archi):
        raise bad("archi", "must be df or liae plus optional -letters from u, d, t, c", "e.g. liae-ud, df-ud, df")
    step = 32 if "d" in o.archi_letters else 16
    if o.resolution % step:
        nearest = min(640, max(32, (o.resolution // step) * step))
        raise bad("resolution", f"must be a multiple of {step} between 32 and 640", f"try {nearest}")
    if 0 < o.gan_patch_size < 3:
        raise bad("gan_patch_size", "must be 0 (automatic) or in 3..640")
    if o.lr <= 0:
        raise bad("lr", "must be in (0, 1]")
    if o.lr_dropout <= 0:
        raise bad("lr_dropout", "keep probability must be in (0, 1]", "use 0.3 for DFL's lr_dropout=y, 1.0 for off")
    if o.true_face_power and not o.is_df:
        raise bad("true_face_power", "works only with the DF architecture", "set it to 0 or use archi df-...")
    if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", o.device):
        raise bad("device", "must be auto, cpu, mps, cuda or cuda:N")
    if o.optimizer == "adam" and o.lr_dropout < 1.0:
        raise bad("lr_dropout", "works with the adabelief and rmsprop optimisers only",
                  "use optimizer adabelief/rmsprop, or lr_dropout 1.0")
    o.model_config()  # the architecture's own rules (even dims, resolution multiple, ...)


PRESETS: MappingProxyType = MappingProxyType({
    # Small enough to learn two faces visibly within minutes on a 2-core CPU (demo, notebooks, tests).
    # Measured on lp_d18/lp_d19 faces: ~8 it/s on 2 idle cores; held-out SSIM 0.81 -> 0.87 in 1000 steps (2 min).
    "tiny": TrainOptions(
        archi="df-ud", resolution=64, face_type="full", ae_dims=64, e_dims=16, d_dims=16, d_mask_dims=8,
        batch_size=8, optimizer="adam", lr=5e-4, warmup_steps=20, preview_every=100, metrics_every=100,
        save_every_seconds=120.0, metrics_samples=4,
    ),
    # DFL Quick96: df-ud, 96 px full face, 128/64/64/16, batch 4, RMSprop 2e-4 with lr_dropout 0.3.
    "quick": TrainOptions(
        archi="df-ud", resolution=96, face_type="full", ae_dims=128, e_dims=64, d_dims=64, d_mask_dims=16,
        batch_size=4, optimizer="rmsprop", lr=2e-4, lr_dropout=0.3, preview_every=200, metrics_every=200,
    ),
    # DFL SAEHD defaults: liae-ud, 128 px full face, 256/64/64/22, batch 8, AdaBelief 5e-5.
    "saehd": TrainOptions(),
})


def preset(name: str, **overrides: Any) -> TrainOptions:
    """A preset's options with some changed, e.g. ``preset("tiny", batch_size=4)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'", hint=f"choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
