"""Merging: paste the swapped face back into each destination frame, the way DeepFaceLab's merger does.

The stage in pipeline order, one module per concern:

- :mod:`.settings`: :class:`MergeSettings` (DFL's merger knobs, their ranges and help) and :class:`MergeConfig`
  (default settings plus per-frame-range overrides, saved as ``PROJECT/merge.json``);
- :mod:`.effects`: pure post-effects (blur/sharpen, denoise, bicubic degrade, colour reduction, motion blur);
- :mod:`.face`: the per-face merge (:func:`merge_face`, :func:`merge_frame`) following DFL's ``MergeMaskedFace``,
  and the model interface (:data:`Predictor`);
- :mod:`.temporal`: face motion for motion blur, landmark smoothing over time, the flicker measure;
- :mod:`.project`: the resumable, threaded batch merge of a project (:func:`merge_project`).

The merger never imports a model: it receives a ``predict`` callable. Everything works on RGB float32 in [0, 1].
"""

from .effects import (
    BLUR_MEDIAN_KERNEL,
    BLUR_PASS_STEP,
    COLOR_DEGRADE_COLORS,
    DENOISE_KERNEL,
    DENOISE_PASS_STEP,
    MOTION_BLUR_MAX_KERNEL,
    SHARPEN_KERNEL,
    bicubic_degrade,
    blursharpen,
    denoise,
    linear_motion_blur,
    motion_blur_kernel_size,
    reduce_colors,
    seamless_mask,
)
from .face import (
    MASK_NOISE_FLOOR,
    MASK_SUBRES_FACTOR,
    SUPER_RESOLUTION_FACTOR,
    Enhancer,
    Prediction,
    Predictor,
    Segmenter,
    apply_color_transfer,
    crop_for_model,
    merge_face,
    merge_frame,
    refine_mask,
    scale_about_centre,
)
from .project import STATE_FILE, MergeSummary, landmarks_by_frame, merge_project, predict_many
from .settings import (
    FIELD_HELP,
    INT_RANGES,
    LEARNED_MASK_MODES,
    MASK_MODES,
    MERGE_SCHEMA_VERSION,
    MODES,
    SEGMENTATION_MASK_MODES,
    SHARPEN_MODES,
    MergeConfig,
    MergeSettings,
    RangeOverride,
    adapt_to_predictor,
    color_transfer_names,
)
from .temporal import (
    MOTION_REFERENCE_SIZE,
    FlickerMeter,
    flicker_metric,
    motion_vectors,
    smooth_landmark_tracks,
)

__all__ = [
    "BLUR_MEDIAN_KERNEL", "BLUR_PASS_STEP", "COLOR_DEGRADE_COLORS", "DENOISE_KERNEL", "DENOISE_PASS_STEP",
    "MASK_NOISE_FLOOR", "MASK_SUBRES_FACTOR", "MOTION_BLUR_MAX_KERNEL", "MOTION_REFERENCE_SIZE", "SHARPEN_KERNEL",
    "SUPER_RESOLUTION_FACTOR",
    "FIELD_HELP", "INT_RANGES", "LEARNED_MASK_MODES", "MASK_MODES", "MERGE_SCHEMA_VERSION", "MODES",
    "SEGMENTATION_MASK_MODES", "SHARPEN_MODES", "STATE_FILE", "Enhancer", "FlickerMeter", "MergeConfig",
    "MergeSettings", "MergeSummary", "Prediction", "Predictor", "RangeOverride", "Segmenter", "adapt_to_predictor",
    "apply_color_transfer", "bicubic_degrade", "blursharpen", "color_transfer_names", "crop_for_model", "denoise",
    "flicker_metric", "landmarks_by_frame", "linear_motion_blur", "merge_face", "merge_frame", "merge_project",
    "motion_blur_kernel_size", "motion_vectors", "predict_many", "reduce_colors", "refine_mask",
    "scale_about_centre", "seamless_mask", "smooth_landmark_tracks",
]
