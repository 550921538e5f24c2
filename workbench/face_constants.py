"""DeepFaceLab's landmark constants, copied exactly from ``facelib/LandmarksProcessor.py`` (HEAD 46fc239).

Everything here is a read-only numpy array or an immutable mapping, so importing modules cannot change
them by accident. Indices follow the iBUG 68-point order (0..16 jaw, 17..26 brows, 27..35 nose,
36..47 eyes, 48..67 mouth); "right"/"left" are the subject's, so the right eye is on the image's left.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

# fmt: off
_LANDMARKS_2D_ROWS = (
    (0.000213256, 0.106454),  # 17
    (0.0752622, 0.038915),  # 18
    (0.18113, 0.0187482),  # 19
    (0.29077, 0.0344891),  # 20
    (0.393397, 0.0773906),  # 21
    (0.586856, 0.0773906),  # 22
    (0.689483, 0.0344891),  # 23
    (0.799124, 0.0187482),  # 24
    (0.904991, 0.038915),  # 25
    (0.98004, 0.106454),  # 26
    (0.490127, 0.203352),  # 27
    (0.490127, 0.307009),  # 28
    (0.490127, 0.409805),  # 29
    (0.490127, 0.515625),  # 30
    (0.36688, 0.587326),  # 31
    (0.426036, 0.609345),  # 32
    (0.490127, 0.628106),  # 33
    (0.554217, 0.609345),  # 34
    (0.613373, 0.587326),  # 35
    (0.121737, 0.216423),  # 36
    (0.187122, 0.178758),  # 37
    (0.265825, 0.179852),  # 38
    (0.334606, 0.231733),  # 39
    (0.260918, 0.245099),  # 40
    (0.182743, 0.244077),  # 41
    (0.645647, 0.231733),  # 42
    (0.714428, 0.179852),  # 43
    (0.793132, 0.178758),  # 44
    (0.858516, 0.216423),  # 45
    (0.79751, 0.244077),  # 46
    (0.719335, 0.245099),  # 47
    (0.254149, 0.780233),  # 48
    (0.340985, 0.745405),  # 49
    (0.428858, 0.727388),  # 50
    (0.490127, 0.742578),  # 51
    (0.551395, 0.727388),  # 52
    (0.639268, 0.745405),  # 53
    (0.726104, 0.780233),  # 54
    (0.642159, 0.864805),  # 55
    (0.556721, 0.902192),  # 56
    (0.490127, 0.909281),  # 57
    (0.423532, 0.902192),  # 58
    (0.338094, 0.864805),  # 59
    (0.290379, 0.784792),  # 60
    (0.428096, 0.778746),  # 61
    (0.490127, 0.785343),  # 62
    (0.552157, 0.778746),  # 63
    (0.689874, 0.784792),  # 64
    (0.553364, 0.824182),  # 65
    (0.490127, 0.831803),  # 66
    (0.42689, 0.824182),  # 67
)

_LANDMARKS_68_3D_ROWS = (
    (-73.393523, -29.801432, 47.667532),  # 0
    (-72.775014, -10.949766, 45.909403),  # 1
    (-70.533638, 7.929818, 44.842580),  # 2
    (-66.850058, 26.074280, 43.141114),  # 3
    (-59.790187, 42.564390, 38.635298),  # 4
    (-48.368973, 56.481080, 30.750622),  # 5
    (-34.121101, 67.246992, 18.456453),  # 6
    (-17.875411, 75.056892, 3.609035),  # 7
    (0.098749, 77.061286, -0.881698),  # 8
    (17.477031, 74.758448, 5.181201),  # 9
    (32.648966, 66.929021, 19.176563),  # 10
    (46.372358, 56.311389, 30.770570),  # 11
    (57.343480, 42.419126, 37.628629),  # 12
    (64.388482, 25.455880, 40.886309),  # 13
    (68.212038, 6.990805, 42.281449),  # 14
    (70.486405, -11.666193, 44.142567),  # 15
    (71.375822, -30.365191, 47.140426),  # 16
    (-61.119406, -49.361602, 14.254422),  # 17
    (-51.287588, -58.769795, 7.268147),  # 18
    (-37.804800, -61.996155, 0.442051),  # 19
    (-24.022754, -61.033399, -6.606501),  # 20
    (-11.635713, -56.686759, -11.967398),  # 21
    (12.056636, -57.391033, -12.051204),  # 22
    (25.106256, -61.902186, -7.315098),  # 23
    (38.338588, -62.777713, -1.022953),  # 24
    (51.191007, -59.302347, 5.349435),  # 25
    (60.053851, -50.190255, 11.615746),  # 26
    (0.653940, -42.193790, -13.380835),  # 27
    (0.804809, -30.993721, -21.150853),  # 28
    (0.992204, -19.944596, -29.284036),  # 29
    (1.226783, -8.414541, -36.948060),  # 30
    (-14.772472, 2.598255, -20.132003),  # 31
    (-7.180239, 4.751589, -23.536684),  # 32
    (0.555920, 6.562900, -25.944448),  # 33
    (8.272499, 4.661005, -23.695741),  # 34
    (15.214351, 2.643046, -20.858157),  # 35
    (-46.047290, -37.471411, 7.037989),  # 36
    (-37.674688, -42.730510, 3.021217),  # 37
    (-27.883856, -42.711517, 1.353629),  # 38
    (-19.648268, -36.754742, -0.111088),  # 39
    (-28.272965, -35.134493, -0.147273),  # 40
    (-38.082418, -34.919043, 1.476612),  # 41
    (19.265868, -37.032306, -0.665746),  # 42
    (27.894191, -43.342445, 0.247660),  # 43
    (37.437529, -43.110822, 1.696435),  # 44
    (45.170805, -38.086515, 4.894163),  # 45
    (38.196454, -35.532024, 0.282961),  # 46
    (28.764989, -35.484289, -1.172675),  # 47
    (-28.916267, 28.612716, -2.240310),  # 48
    (-17.533194, 22.172187, -15.934335),  # 49
    (-6.684590, 19.029051, -22.611355),  # 50
    (0.381001, 20.721118, -23.748437),  # 51
    (8.375443, 19.035460, -22.721995),  # 52
    (18.876618, 22.394109, -15.610679),  # 53
    (28.794412, 28.079924, -3.217393),  # 54
    (19.057574, 36.298248, -14.987997),  # 55
    (8.956375, 39.634575, -22.554245),  # 56
    (0.381549, 40.395647, -23.591626),  # 57
    (-7.428895, 39.836405, -22.406106),  # 58
    (-18.160634, 36.677899, -15.121907),  # 59
    (-24.377490, 28.677771, -4.785684),  # 60
    (-6.897633, 25.475976, -20.893742),  # 61
    (0.340663, 26.014269, -22.220479),  # 62
    (8.444722, 25.326198, -21.025520),  # 63
    (24.474473, 28.323008, -5.712776),  # 64
    (8.449166, 30.596216, -20.671489),  # 65
    (0.205322, 31.408738, -21.903670),  # 66
    (-7.198266, 30.844876, -20.328022),  # 67
)
# fmt: on


def _frozen(rows, dtype) -> np.ndarray:
    arr = np.array(rows, dtype=dtype)
    arr.setflags(write=False)
    return arr


# DFL's mean face has no jaw: rows are landmarks 17..67 in a normalised frame where the face spans
# roughly [0, 1]^2 (x right, y down, brows at y ~ 0.02..0.1).
LANDMARKS_2D_INDICES: np.ndarray = _frozen(np.arange(17, 68), np.int64)
"""(51,) int: the 68-point index of each row of :data:`LANDMARKS_2D`."""

LANDMARKS_2D: np.ndarray = _frozen(_LANDMARKS_2D_ROWS, np.float64)
"""(51, 2) float64: DFL ``landmarks_2D``, the normalised mean face for landmarks 17..67."""

# get_transform_mat fits these 33 points: brows, nose and eyes (17..48, which also takes mouth corner 48)
# plus the other mouth corner 54. The jaw is left out because its outline slides with pose.
UMEYAMA_INDICES: np.ndarray = _frozen(np.r_[np.arange(17, 49), 54], np.int64)
"""(33,) int: frame landmark indices fed to the Umeyama fit (17..48 and 54)."""

UMEYAMA_TARGET: np.ndarray = _frozen(LANDMARKS_2D[UMEYAMA_INDICES - 17], np.float64)
"""(33, 2) float64: DFL ``landmarks_2D_new``, the mean-face rows for :data:`UMEYAMA_INDICES`."""

LANDMARKS_68_3D: np.ndarray = _frozen(_LANDMARKS_68_3D_ROWS, np.float64)
"""(68, 3) float64: DFL ``landmarks_68_3D``, the 3D mean shape used by ``solvePnP`` for head pose."""

# fmt: off
MIRROR_PAIRS: np.ndarray = _frozen(
    [
        # jaw
        [0, 16], [1, 15], [2, 14], [3, 13], [4, 12], [5, 11], [6, 10], [7, 9],
        # brows
        [17, 26], [18, 25], [19, 24], [20, 23], [21, 22],
        # eyes
        [36, 45], [37, 44], [38, 43], [39, 42], [40, 47], [41, 46],
        # nose
        [31, 35], [32, 34],
        # mouth
        [50, 52], [49, 53], [48, 54], [59, 55], [58, 56], [67, 65], [60, 64], [61, 63],
    ],
    np.int64,
)
"""(29, 2) int: DFL ``mirror_idxs``, landmark pairs that swap under a horizontal flip."""
# fmt: on


def _mirror_permutation() -> np.ndarray:
    perm = np.arange(68)
    perm[MIRROR_PAIRS[:, 0]] = MIRROR_PAIRS[:, 1]
    perm[MIRROR_PAIRS[:, 1]] = MIRROR_PAIRS[:, 0]
    return perm


MIRROR_INDEX: np.ndarray = _frozen(_mirror_permutation(), np.int64)
"""(68,) int: ``landmarks[MIRROR_INDEX]`` then ``x -> W - x - 1`` mirrors a face (DFL convention)."""

LANDMARK_GROUPS = MappingProxyType(
    {
        "jaw": slice(0, 17),
        "right_eyebrow": slice(17, 22),
        "left_eyebrow": slice(22, 27),
        "nose": slice(27, 36),
        "right_eye": slice(36, 42),
        "left_eye": slice(42, 48),
        "mouth": slice(48, 68),
    }
)
"""DFL ``landmarks_68_pt``: group name -> slice into a (68, 2) landmark array (subject's right/left)."""


def _mean_face_68() -> np.ndarray:
    # DFL's 2D mean face stops at landmark 17. For synthetic faces and diagrams we borrow the jaw from the 3D
    # mean shape: its (x, y) rows 17..67 are fitted to LANDMARKS_2D by least-squares similarity, and the same
    # similarity places its jaw rows 0..16 in the normalised frame.
    src = LANDMARKS_68_3D[17:, :2]
    dst = LANDMARKS_2D
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    # Closed-form 2D similarity (complex-number least squares): dst ~ a * src + b with a = s * e^(i*theta).
    zs = src_c[:, 0] + 1j * src_c[:, 1]
    zd = dst_c[:, 0] + 1j * dst_c[:, 1]
    a = np.vdot(zs, zd) / np.vdot(zs, zs)
    jaw = (LANDMARKS_68_3D[:17, 0] - src.mean(0)[0]) + 1j * (LANDMARKS_68_3D[:17, 1] - src.mean(0)[1])
    jaw = a * jaw
    out = np.empty((68, 2))
    out[:17, 0] = jaw.real + dst.mean(0)[0]
    out[:17, 1] = jaw.imag + dst.mean(0)[1]
    out[17:] = LANDMARKS_2D
    return out


MEAN_FACE_68: np.ndarray = _frozen(_mean_face_68(), np.float64)
"""(68, 2) float64: a full 68-point mean face in DFL's normalised frame.

Rows 17..67 are exactly :data:`LANDMARKS_2D`; the jaw rows 0..16 are NOT a DFL constant but the 3D mean
shape's jaw placed by a similarity fit, so synthetic faces and diagrams have a plausible chin.
"""


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image, re-ordered so each index keeps its meaning.

    Args:
        landmarks: (68, 2) pixel coordinates.
        width: width of the image being flipped, in pixels.

    Returns:
        (68, 2) array (same float dtype; float64 for integer input) with ``x -> width - x - 1``
        and left/right pairs swapped, as DFL does.
    """
    pts = np.asarray(landmarks)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {pts.shape}")
    out = pts[MIRROR_INDEX].astype(pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64)
    out[:, 0] = width - out[:, 0] - 1
    return out
