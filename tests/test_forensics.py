"""workbench.forensics: the statistics notebook 07 uses to tell real from swapped faces, on images whose answer
is known by construction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workbench import forensics


def _texture(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (size, size, 3)).astype(np.float32)


def test_blur_removes_high_frequencies():
    sharp = _texture()
    soft = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert forensics.high_frequency_share(sharp) > 5 * forensics.high_frequency_share(soft)
    spec_sharp, spec_soft = forensics.radial_spectrum(sharp), forensics.radial_spectrum(soft)
    assert spec_sharp.shape == (forensics.SPECTRUM_BINS,)
    assert abs(spec_sharp[1] - spec_soft[1]) < spec_sharp[-1] - spec_soft[-1]  # the gap opens at high frequency
    assert spec_sharp[-1] - spec_soft[-1] > 2  # orders of magnitude


def test_boundary_contrast_finds_a_pasted_patch():
    frame = np.full((64, 64, 3), 0.5, np.float32) + 0.02 * _texture(1)
    mask = np.zeros((64, 64), np.float32)
    cv2.circle(mask, (32, 32), 18, 1.0, -1)
    pasted = frame.copy()
    pasted[mask > 0.5] = (pasted[mask > 0.5] + 0.2).clip(0, 1)  # a face with other colours, hard seam
    assert forensics.boundary_contrast(pasted, mask) > 3 * forensics.boundary_contrast(frame, mask)
    assert np.isnan(forensics.boundary_contrast(frame, np.zeros((64, 64), np.float32)))


def test_detector_separates_and_generalises_in_time():
    rng = np.random.default_rng(0)
    n = len(forensics.FEATURE_NAMES)
    real = rng.normal(0, 1, (60, n))
    swapped = rng.normal(0, 1, (60, n))
    swapped[:, 16] += 4.0  # one informative feature: the high-frequency share
    train, test = forensics.time_split(60)
    assert (train.stop, test.start, test.stop) == (36, 36, 60)
    detector = forensics.train_detector(real[train], swapped[train])
    assert detector.accuracy(real[test], swapped[test]) > 0.9
    assert detector.strongest(1)[0][0] == "high-frequency share" and detector.strongest(1)[0][1] > 0
    p = detector.probability(real[test])
    assert p.shape == (24,) and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(ValueError):
        forensics.train_detector(real[:0], swapped)


def test_features_and_degrade():
    faces = np.stack([_texture(i, 48) for i in range(3)])
    masks = np.zeros((3, 48, 48), np.float32)
    masks[:, 10:38, 10:38] = 1
    feats = forensics.features_of(faces, masks)
    assert feats.shape == (3, len(forensics.FEATURE_NAMES)) and np.isfinite(feats).all()
    jpeg = forensics.degrade(faces, jpeg_quality=20)
    blurred = forensics.degrade(faces, blur_sigma=1.5)
    assert jpeg.shape == faces.shape and jpeg.dtype == np.float32
    assert 0.01 < np.abs(jpeg - faces).mean() < 0.5
    assert forensics.high_frequency_share(blurred[0]) < forensics.high_frequency_share(faces[0])


def test_paired_faces_needs_merged_frames(tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.project import create_project

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), np.zeros((32, 32, 3), np.uint8))
    project = create_project(tmp_path / "p", src, src)
    with pytest.raises(WorkbenchError):
        forensics.paired_faces(project)
