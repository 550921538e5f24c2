"""Curation: scores rank faces sensibly, rejects go to the trash, nothing is deleted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.extract import ExtractOptions, extract_faces
from workbench.faceset import load_aligned_face, replace_meta, scan_faceset, write_aligned_face
from workbench.sort import best_selection, histogram, histogram_chain, sharpness, sort_faceset


@pytest.fixture(scope="module")
def two_people(tmp_path_factory, data_file):
    """A faceset mixing two men (every 12th frame of lp_d18 and lp_d19)."""
    out = tmp_path_factory.mktemp("sort") / "faces"
    for clip in ("videos/lp_d18.mp4", "videos/lp_d19.mp4"):
        extract_faces(data_file(clip), out, ExtractOptions(size=128, every_nth=12, workers=0), progress=False,
                      source_name=clip)
    return out


def test_blur_score_ranks_a_blurred_copy_lower(two_people, tmp_path):
    record = scan_faceset(two_people).faces[0]
    image, meta = load_aligned_face(record.path)
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    assert sharpness(blurred, meta) < 0.5 * sharpness(image, meta)
    folder = tmp_path / "f"
    write_aligned_face(folder / "sharp.png", image, meta)
    write_aligned_face(folder / "soft.png", blurred, replace_meta(meta, frame_index=1))
    result = sort_faceset(folder, "blur", keep=1, progress=False)
    assert [p.name for p in result.kept] == ["00000_sharp.png"]
    assert [p.name for p in result.trashed] == ["soft.png"] and result.trashed[0].exists()
    assert result.trashed[0].parent.name == "f_trash"


def test_hist_chain_groups_identities(two_people):
    faces = scan_faceset(two_people).faces
    who = [0 if "lp_d18" in r.meta.source_file else 1 for r in faces]
    order = histogram_chain([histogram(load_aligned_face(r.path)[0]) for r in faces])
    changes = sum(who[a] != who[b] for a, b in zip(order, order[1:]))
    assert sorted(order) == list(range(len(faces)))
    assert changes <= 3  # similar faces end up next to each other: the chain crosses identities rarely


def test_sort_by_source_renames_in_order_and_is_repeatable(two_people, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(two_people, folder)
    n = len(scan_faceset(folder))
    first = sort_faceset(folder, "source", progress=False)
    assert len(first.kept) == n and first.trashed == ()
    again = sort_faceset(folder, "face-size", progress=False)
    names = sorted(p.name for p in folder.glob("*.jpg"))
    assert len(names) == n and all(name[:5].isdigit() and name[5] == "_" and name[6:12].isdigit() for name in names)
    assert list(again.scores) == sorted(again.scores, reverse=True)
    result = sort_faceset(folder, "yaw", min_score=0.0, progress=False)  # trash faces turned one way
    assert len(result.kept) + len(result.trashed) == n and min(result.scores) >= 0.0
    with pytest.raises(ConfigError, match="keep"):
        sort_faceset(folder, "best")
    with pytest.raises(ConfigError, match="unknown sort method"):
        sort_faceset(folder, "smile")


def test_best_selection_balances_pose():
    rng = np.random.default_rng(0)
    # 900 frontal faces and 100 turned ones; a naive "sharpest first" pick would take only frontals
    yaws = np.concatenate([rng.normal(0, 0.02, 900), rng.uniform(-1.0, 1.0, 100)])
    pitches = rng.normal(0, 0.1, 1000)
    quality = np.concatenate([np.full(900, 10.0), np.full(100, 1.0)])
    chosen = best_selection(yaws, pitches, quality, target=100)
    assert len(set(chosen)) == 100
    assert np.mean(np.abs(yaws[chosen]) > 0.2) > 0.4
