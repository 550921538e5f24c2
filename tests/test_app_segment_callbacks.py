"""The Segment tab's callbacks without a browser: a click sends back the saved polygons only (no 512 px image),
the view is re-rendered only when the green label tint changes, and the polygons' JSON for the browser's
overlay round-trips through the HTML attribute."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from train_fixtures import make_faceset

from workbench.faceset import read_face_meta, scan_faceset
from workbench.segment.labels import SegPolygon


@pytest.fixture
def seg_project(tmp_path):
    from workbench.app.context import AppContext
    from workbench.project import create_project

    project = create_project(tmp_path / "proj", face_size=48)
    make_faceset(project.aligned_dir("dst"), 2, size=48)
    return AppContext(tmp_path, max_upload_mb=5), str(project.root), project.aligned_dir("dst")


def _payload(out: dict) -> dict:
    found = re.fullmatch(r'<div class="seg-polys-data" data-polys="(.*)"></div>', out["seg_polys"])
    assert found, out["seg_polys"]
    return json.loads(html.unescape(found.group(1)))


def test_clicks_send_polygons_only_and_the_view_changes_with_the_tint(seg_project):
    from workbench.app import tab_segment as ts

    ctx, root, dst = seg_project
    first = ts.segment_refresh(ctx, root, "dst", "all", False)
    assert first["seg_view"].shape == (512, 512, 3) and _payload(first) == {"view": 512, "event": "view", "polys": []}
    state = first["seg_state"]
    clicks = ((128, 128), (384, 128), (384, 384))
    for k, xy in enumerate(clicks, start=1):
        out = ts.segment_click(ctx, root, state, "include", False, index=list(xy))
        assert "seg_view" not in out  # no image travels on a point click
        data = _payload(out)
        assert data["event"] == "click" and len(data["polys"]) == 1 and not data["polys"][0]["closed"]
        assert np.allclose(data["polys"][0]["points"], clicks[:k])  # view pixels
        assert f"drawing: {k} point(s)" in out["seg_info"]
    face = scan_faceset(dst).faces[0].path
    saved = read_face_meta(face).seg_polys  # saved at once, in aligned-face pixels (48 px)
    assert saved == (SegPolygon("include", ((12.0, 12.0), (36.0, 12.0), (36.0, 36.0)), closed=False),)

    undo = ts.segment_action(ctx, root, state, False, action="undo")  # the open polygon only: no image
    assert "seg_view" not in undo and len(_payload(undo)["polys"][0]["points"]) == 2
    ts.segment_click(ctx, root, state, "include", False, index=[384, 384])
    closed = ts.segment_action(ctx, root, state, False, action="close")  # the tint changes: a new view
    view = closed["seg_view"].astype(int)
    assert _payload(closed)["polys"][0]["closed"]
    inside, outside = view[200:300, 200:300], view[5:60, 5:60]
    assert (inside[..., 1] - inside[..., 0]).mean() > (first["seg_view"][200:300, 200:300, 1].astype(int)
                                                      - first["seg_view"][200:300, 200:300, 0]).mean() + 20
    assert np.array_equal(outside, first["seg_view"][5:60, 5:60].astype(int))  # no outlines drawn server-side

    # an exclude click after a closed polygon starts a new open polygon: outlines only, no new view
    out = ts.segment_click(ctx, root, state, "exclude", False, index=[250, 250])
    assert "seg_view" not in out and [p["kind"] for p in _payload(out)["polys"]] == ["include", "exclude"]
    # switching back to include mid-polygon closes the exclude one: the tint changes, the view comes back
    out = ts.segment_click(ctx, root, state, "include", False, index=[10, 10])
    assert "seg_view" in out and [p["closed"] for p in _payload(out)["polys"]] == [True, True, False]


def test_payload_escapes_for_the_html_attribute():
    from workbench.app.tab_segment import polygons_payload

    text = polygons_payload((SegPolygon("exclude", ((1.0, 2.0), (3.5, 4.25), (0.0, 8.0))),), 64, "click")
    assert '"' not in text.split('data-polys="', 1)[1][:-len('"></div>')]
    data = json.loads(html.unescape(text.split('data-polys="', 1)[1][:-len('"></div>')]))
    assert data == {"view": 512, "event": "click",
                    "polys": [{"kind": "exclude", "closed": True, "points": [[8.0, 16.0], [28.0, 34.0], [0.0, 64.0]]}]}
