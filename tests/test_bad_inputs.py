"""The bad-input corpus: what a careless or hostile user feeds the CLI, and what must come back.

Every case is built at test time from the shared media (zero-byte, truncated, renamed, 16-bit, RGBA, grey,
1x1 and 8K stills, unicode and spaces in paths, symlinks out of the project, malformed face metadata of each
kind, corrupt status/config/merge/frames files, hostile run and output names, a full disk). For each one:
the exit code, an ``error:`` line naming the file, a hint, no traceback, nothing changed outside the project
and no partial output left behind. Commands run in-process (``workbench.cli.main``) to keep the corpus fast.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.cli import main

PHOTO = "stills/lp_d18_person/d19.jpg"  # one frontal face, 720x720
PHOTO2 = "stills/obama/obama_small.jpg"
VIDEO = "videos/lp_d18.mp4"
FACE_SIZE = 64


# ------------------------------------------------------------------------------------------------ helpers
def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``workbench ARGV`` in this process; argparse's own refusals (SystemExit) count as exit codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clear_error(result: tuple[int, str, str], *names: str, code: int = 2, hint: bool = True) -> str:
    """Exit ``code``, an ``error:`` line that names each of ``names``, a hint, and no traceback."""
    rc, out, err = result
    assert rc == code, (rc, out, err)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert lines, err
    for name in names:
        assert name in lines[0], (name, err)
    if hint:
        assert "hint:" in err, err
    return err


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder`` with its size, mtime and content hash (a changed byte shows)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns,
                                                  hashlib.sha1(path.read_bytes()).hexdigest())
        elif path.is_dir():
            out[str(path.relative_to(folder)) + "/"] = (0, 0, "")
    return out


def no_partial_output(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".tmp-" in p.name or p.name.endswith(".partial")]
    assert not leftovers, leftovers


def set_face_payload(src: Path, dst: Path, change) -> None:
    """Copy an aligned JPEG face, replacing its embedded metadata by ``change(metadata dict)``."""
    with Image.open(src) as img:
        payload = json.loads(img.info["comment"])
        pixels = img.copy()
    payload["workbench"] = change(payload["workbench"])
    pixels.save(dst, format="JPEG", quality=90, comment=json.dumps(payload).encode())


def faststart_copy(video: Path, out: Path) -> Path:
    """Remux a clip with its index first (as phones and web exports do), so a cut-off copy still decodes."""
    import av

    with av.open(str(video)) as source, av.open(str(out), "w", format="mp4",
                                                options={"movflags": "+faststart"}) as target:
        stream = source.streams.video[0]
        copy = target.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                target.mux(packet)
    return out


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory, data_file) -> Path:
    """A small project: two photos as the source, extracted once to 64 px faces (about 2 s)."""
    from workbench.extract import ExtractOptions, extract_project
    from workbench.project import Project, create_project

    work = tmp_path_factory.mktemp("corpus")
    photos = work / "photos"
    photos.mkdir()
    shutil.copy(data_file(PHOTO), photos / "d19.jpg")
    shutil.copy(data_file(PHOTO2), photos / "obama_small.jpg")
    project = create_project(work / "base", src=photos, face_size=FACE_SIZE, face_type="full")
    summary = extract_project(Project.open(project.root), "src",
                              ExtractOptions(face_type="full", size=FACE_SIZE, workers=0), progress=False)
    assert summary.faces >= 2, summary.format()
    return project.root


@pytest.fixture
def world(tmp_path, base):
    """A fresh copy of the base project plus an 'outside' folder that no command may touch."""
    root = tmp_path / "proj"
    shutil.copytree(base, root, symlinks=True)
    outside = tmp_path / "outside"
    (outside / "victim" / "commands").mkdir(parents=True)
    (outside / "victim" / "config.json").write_text('{"precious": true}\n')
    (outside / "victim" / "commands" / "keep-me").write_text("x")
    before = snapshot(outside)
    yield root, outside
    assert snapshot(outside) == before, "a command changed files outside the project"
    no_partial_output(root)


def faces_of(root: Path) -> list[Path]:
    return sorted((root / "aligned" / "src").glob("*.jpg"))


# ------------------------------------------------------------------------------------------------ new
def test_new_refuses_bad_media_and_leaves_nothing(tmp_path, capsys, data_file):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    renamed = tmp_path / "notes.mp4"
    renamed.write_text("this is a text file, not a video")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    video_as_photo = tmp_path / "clip.jpg"
    shutil.copy(data_file(VIDEO), video_as_photo)
    for bad, name in ((empty, "empty.mp4"), (renamed, "notes.mp4"), (tiny, "tiny.png"),
                      (video_as_photo, "clip.jpg")):
        err = assert_clear_error(cli(capsys, "new", tmp_path / "p", "--src", data_file(PHOTO), "--dst", bad), name)
        assert not (tmp_path / "p").exists(), err  # the good first medium was not copied either
    assert "empty (0 bytes)" in assert_clear_error(cli(capsys, "new", tmp_path / "p", "--dst", empty), "empty.mp4")
    # the retry after a failure is not refused
    assert cli(capsys, "new", tmp_path / "p", "--src", data_file(PHOTO), "--dst", data_file(VIDEO))[0] == 0


def test_new_on_an_existing_project_refuses_or_updates_explicitly(tmp_path, capsys, data_file):
    root = tmp_path / "p"
    assert cli(capsys, "new", root, "--src", data_file(PHOTO))[0] == 0
    other = tmp_path / "other" / "d19.jpg"  # same name, other picture
    other.parent.mkdir()
    shutil.copy(data_file(PHOTO2), other)
    assert "--update" in assert_clear_error(cli(capsys, "new", root, "--src", other), "d19.jpg")
    assert (root / "media/src/d19.jpg").read_bytes() == data_file(PHOTO).read_bytes()
    err = assert_clear_error(cli(capsys, "new", root, "--face-size", "256"), "workbench.json")
    assert "face_size 512 -> 256" in err and "--update" in err
    assert json.loads((root / "workbench.json").read_text())["face_size"] == 512
    # the same file again is fine; --update replaces and changes, explicitly
    assert cli(capsys, "new", root, "--src", data_file(PHOTO))[0] == 0
    assert cli(capsys, "new", root, "--src", other, "--face-size", "256", "--update")[0] == 0
    assert (root / "media/src/d19.jpg").read_bytes() == other.read_bytes()
    assert json.loads((root / "workbench.json").read_text())["face_size"] == 256
    no_partial_output(root)


def test_unicode_and_spaces_in_paths(tmp_path, capsys, data_file):
    folder = tmp_path / "my prøject ñ"
    photo = tmp_path / "fötö 1 (copy).jpg"
    shutil.copy(data_file(PHOTO), photo)
    assert cli(capsys, "new", folder, "--src", photo, "--face-size", "64")[0] == 0
    rc, out, err = cli(capsys, "extract", folder, "--side", "src", "--workers", "0", "--quiet")
    assert rc == 0 and "faces written:       1" in out, out + err
    assert [p.name for p in (folder / "aligned" / "src").glob("*.jpg")] == ["fötö 1 (copy)_0.jpg"]


# ------------------------------------------------------------------------------------------------ stills and video
def test_odd_stills_in_a_photo_folder(world, capsys, data_file):
    """16-bit, RGBA and grey photos give faces; zero-byte, 1x1 and a link out of the project are named and skipped."""
    root, outside = world
    photos = root / "media" / "src" / "photos"
    for p in photos.iterdir():
        p.unlink()
    rgb = np.asarray(Image.open(data_file(PHOTO)).convert("RGB"))
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(photos / "deep16.png")  # 16-bit grey
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(photos / "alpha.png")
    Image.fromarray(rgb).convert("L").save(photos / "grey.jpg")
    Image.new("RGB", (1, 1)).save(photos / "one.png")
    (photos / "zero.jpg").write_bytes(b"")
    shutil.copy(data_file(PHOTO2), outside / "secret.jpg")
    (photos / "link.jpg").symlink_to(outside / "secret.jpg")
    shutil.rmtree(root / "aligned" / "src")
    rc, out, err = cli(capsys, "extract", root, "--side", "src", "--workers", "0", "--quiet")
    assert rc == 0 and "Traceback" not in out + err, err
    assert "faces written:       3" in out, out
    for name, why in (("one.png", "too small"), ("zero.jpg", "empty"), ("link.jpg", "outside the photo folder")):
        line = next((ln for ln in out.splitlines() if f"skipped {name}" in ln), "")
        assert why in line, (name, out)
    assert not list((root / "aligned" / "src").glob("link*"))
    (outside / "secret.jpg").unlink()  # our own fixture file, not part of the check


@pytest.mark.slow
def test_a_small_face_in_an_8k_still_is_found(tmp_path, data_file):
    """At --detect-max-side 640 an 8K frame shrinks 12x: the face (~20 px) is below HOG's ~80 px. The
    extractor searches larger scales for stills, and says so when a frame has no face at its working scale."""
    from workbench import detect
    from workbench.extract import ExtractOptions, extract_faces
    canvas = Image.new("RGB", (7680, 4320), (90, 100, 110))
    canvas.paste(Image.open(data_file(PHOTO)).convert("RGB"), (3000, 1500))
    photos = tmp_path / "photos"
    photos.mkdir()
    canvas.save(photos / "big8k.jpg", quality=85)
    Image.new("RGB", (900, 600), (120, 120, 120)).save(photos / "wall.png")
    # what --detect-max-side 640 alone would see: no face (a 640x360 copy, made here without decoding 8K twice)
    shrunk = np.asarray(canvas.resize((640, 360), Image.Resampling.BOX), np.float32) / 255.0
    assert detect.detect_faces(shrunk, detect.load_engine("dlib")) == []
    summary = extract_faces(photos, tmp_path / "faces", ExtractOptions(size=FACE_SIZE, workers=0), progress=False)
    assert summary.faces == 1 and summary.frames_without_face == 1, summary.format()
    assert summary.no_face == (("wall.png", 900),)
    assert "no face in wall.png at the working scale (900 px long side)" in summary.format()


def test_truncated_video_keeps_the_frames_that_decode(tmp_path, capsys, data_file):
    clip = faststart_copy(data_file(VIDEO), tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    root = tmp_path / "p"
    assert cli(capsys, "new", root, "--dst", cut, "--face-size", "64")[0] == 0
    rc, out, err = cli(capsys, "extract", root, "--side", "dst", "--workers", "0", "--every-nth", "12", "--quiet")
    assert rc == 0 and "Traceback" not in out + err, err
    assert "video is truncated" in out and "the frames before it are kept" in out, out
    index = json.loads((root / "frames" / "dst" / "frames.json").read_text())
    assert 5 <= len(index["frames"]) <= 9  # ~96 of 216 frames decode; every 12th is kept
    assert all((root / "frames" / "dst" / f["file"]).is_file() for f in index["frames"])


# ------------------------------------------------------------------------------------------------ face metadata
@pytest.mark.parametrize("kind", ["list", "size0", "damaged", "facetype", "link-out"])
def test_malformed_face_metadata_is_named_and_skipped(world, capsys, kind):
    root, outside = world
    good = faces_of(root)
    bad = root / "aligned" / "src" / f"bad_{kind}_0.jpg"
    if kind == "list":
        set_face_payload(good[0], bad, lambda meta: [meta])
    elif kind == "size0":
        set_face_payload(good[0], bad, lambda meta: {**meta, "size": 0})
    elif kind == "facetype":
        set_face_payload(good[0], bad, lambda meta: {**meta, "face_type": "elbow"})
    elif kind == "damaged":
        data = good[0].read_bytes()
        scan_start = data.index(b"\xff\xda")  # start of the compressed pixels, after the metadata segment
        bad.write_bytes(data[: (scan_start + len(data)) // 2])  # header and metadata intact, pixels cut off
    else:
        shutil.copy(good[0], outside / "elsewhere_0.jpg")
        bad.symlink_to(outside / "elsewhere_0.jpg")
    rc, out, err = cli(capsys, "sort", root, "--side", "src", "--by", "blur", "--no-rename", "--quiet")
    assert rc == 0 and "Traceback" not in out + err, err
    assert f"skipped {bad.name}" in out, out
    assert f"{len(good)} kept" in out
    # the trainer's loader skips it by name too
    from workbench.train.data import load_face_bank

    bank = load_face_bank(root / "aligned" / "src", "src", "full", FACE_SIZE, workers=0)
    assert len(bank.paths) == len(good) and bad.name in [p.name for p, _ in bank.broken]
    if kind == "damaged":  # the app's gallery still shows the others, sorted, and names the damaged one
        from workbench.app.tab_curate import face_gallery

        page = face_gallery(str(root), "src", order="blur", show_landmarks=True)
        captions = [caption for _, caption in page["gallery"]]
        assert not str(page.get("status", "")).startswith("⚠️"), page
        assert captions[-1].startswith(f"{bad.name} · unreadable") and len(captions) == len(good) + 1, captions
    if kind == "link-out":
        (outside / "elsewhere_0.jpg").unlink()


# ------------------------------------------------------------------------------------------------ project files
def _fake_merged(root: Path, n: int = 3) -> None:
    """Destination frames + merged frames + frames.json, enough for export (no model needed)."""
    frames, merged = root / "frames" / "dst", root / "merged"
    rows = []
    for i in range(n):
        image = Image.new("RGB", (64, 48), (40 * i, 80, 120))
        image.save(frames / f"{i:06d}.png")
        image.save(merged / f"{i:06d}.png")
        rows.append({"index": i, "file": f"{i:06d}.png", "timestamp": i / 10})
    (frames / "frames.json").write_text(json.dumps({"schema_version": 1, "source": "", "fps": 10.0,
                                                    "has_audio": False, "width": 64, "height": 48,
                                                    "frames": rows}))


def _run(root: Path, name: str = "r1", status: str | None = None, config: str | None = None) -> Path:
    run = root / "models" / name
    (run / "checkpoints").mkdir(parents=True)
    if status is not None:
        (run / "status.json").write_text(status)
    if config is not None:
        (run / "config.json").write_text(config)
    return run


@pytest.mark.parametrize("case", ["frames-json", "frames-json-list", "frames-entry-out", "frame-link-out",
                                  "merged-link-out"])
def test_corrupt_or_escaping_frame_index_refused_by_export(world, capsys, case):
    root, outside = world
    _fake_merged(root)
    index = root / "frames" / "dst" / "frames.json"
    name = "frames.json"
    if case == "frames-json":
        index.write_text('{"frames": [ {"index": 0, "file": "0000')
    elif case == "frames-json-list":
        index.write_text("[1, 2, 3]")
    elif case == "frames-entry-out":
        data = json.loads(index.read_text())
        data["frames"][1]["file"] = "../../../outside/victim/config.json"
        index.write_text(json.dumps(data))
    else:
        victim = root / ("merged" if case == "merged-link-out" else "frames/dst") / "000001.png"
        shutil.copy(victim, outside / "stolen.png")
        victim.unlink()
        victim.symlink_to(outside / "stolen.png")
        name = "000001.png"
    assert_clear_error(cli(capsys, "export", root, "--quiet"), name)
    assert not list((root / "output").iterdir())
    if case.endswith("link-out"):
        (outside / "stolen.png").unlink()


def test_export_names_the_merging_model_and_honours_the_umask(world, capsys):
    from workbench.export import read_provenance
    from workbench.merge import STATE_FILE

    root, _ = world
    _fake_merged(root)
    _run(root, "old", config=json.dumps({"options": {"archi": "df", "resolution": 64}}))
    _run(root, "newest")  # made later, but not the model of these frames
    with open(root / "merged" / STATE_FILE, "w") as f:
        for i in range(3):
            f.write(json.dumps({"file": f"{i:06d}.png", "settings": "copy", "model": {"run": "old", "step": 1234}})
                    + "\n")
    old = os.umask(0o027)
    try:
        rc, out, err = cli(capsys, "export", root, "--quiet")
    finally:
        os.umask(old)
    assert rc == 0, err
    video = root / "output" / f"{root.name}_swap.mp4"
    assert "workbench run 'old' (archi=df, resolution=64), checkpoint at step 1234" in read_provenance(video)["model"]
    assert video.stat().st_mode & 0o777 == 0o640  # the user's umask, not mkstemp's 0600
    for output in ("../../evil.mp4", "/tmp/evil.mp4", "sub/x.mp4"):
        assert_clear_error(cli(capsys, "export", root, "--output", output, "--quiet"), output)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"src_media": "../../outside/victim/config.json"}',
                                     '{"src_media": 5}'])
def test_corrupt_project_config(world, capsys, content):
    root, _ = world
    (root / "workbench.json").write_text(content)
    assert_clear_error(cli(capsys, "extract", root, "--side", "src", "--workers", "0", "--quiet"), "workbench.json")


@pytest.mark.parametrize("content", ["{broken", "[1]", '{"default": {"erode": "lots"}}'])
def test_corrupt_merge_settings(world, capsys, content):
    root, _ = world
    (root / "merge.json").write_text(content)
    assert_clear_error(cli(capsys, "merge", root, "--no-progress"), "merge.json")


@pytest.mark.parametrize("content", ["{broken", "[]", '{"options": {}}'])
def test_corrupt_run_config(world, capsys, content):
    root, _ = world
    _run(root, "r1", config=content)
    assert_clear_error(cli(capsys, "train", root, "--run", "r1", "--resume", "--steps", "1"), "config.json")


@pytest.mark.parametrize("content", ["{half a status", "[]", '{"step": "many"}'])
def test_corrupt_status_is_shown_as_corrupt(world, capsys, content):
    root, _ = world
    _run(root, "r1", status=content, config="{}")
    rc, out, err = cli(capsys, "train-status", root)
    assert rc == 0 and "r1: corrupt" in out and "new" not in out and "Traceback" not in err, out + err
    assert "status.json" in out


# ------------------------------------------------------------------------------------------------ runs
HOSTILE_RUNS = ["../../outside/victim", "../models2", "/tmp/abs-run", "..", "a/b", ".hidden", "x" * 65, "name with space"]


@pytest.mark.parametrize("name", HOSTILE_RUNS)
@pytest.mark.parametrize("command", ["train", "merge", "train-cmd", "train-status"])
def test_hostile_run_names_are_refused_before_touching_disk(world, capsys, command, name):
    root, outside = world
    (root / "models").mkdir(exist_ok=True)
    argv = {"train": ["train", root, "--run", name, "--steps", "1"],
            "merge": ["merge", root, "--run", name, "--no-progress"],
            "train-cmd": ["train-cmd", root, "stop", "--run", name],
            "train-status": ["train-status", root, "--run", name]}[command]
    if name.startswith("/"):
        # an absolute run name must not even be created
        assert not Path(name).exists()
    err = assert_clear_error(cli(capsys, *argv), "invalid run name")
    assert "plain folder name" in err
    assert not any((root / "models").iterdir())
    if name.startswith("/"):
        assert not Path(name).exists()


def test_run_folder_link_out_of_the_project_is_refused(world, capsys):
    root, outside = world
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "evil").symlink_to(outside / "victim", target_is_directory=True)
    assert_clear_error(cli(capsys, "train", root, "--run", "evil", "--steps", "1"), "evil")
    assert_clear_error(cli(capsys, "merge", root, "--run", "evil", "--no-progress"), "evil")
    shutil.rmtree(root / "models")
    (root / "models").symlink_to(outside, target_is_directory=True)  # the whole models folder linked out
    assert_clear_error(cli(capsys, "train", root, "--run", "victim", "--steps", "1"), "victim")
    assert_clear_error(cli(capsys, "train-cmd", root, "stop", "--run", "victim"), "victim")


def test_numbers_out_of_range_are_refused(world, capsys):
    root, _ = world
    for flag, value in (("--steps", "-5"), ("--steps", "0"), ("--minutes", "-1"), ("--minutes", "nan")):
        rc, out, err = cli(capsys, "train", root, flag, value)
        assert rc == 2 and f"argument {flag}" in err and "Traceback" not in err, err
    assert not (root / "models" / "tiny").exists()


def test_train_cmd_to_a_trainer_that_is_not_running(world, capsys):
    root, _ = world
    run = _run(root, "r1", status=json.dumps({"state": "stopped", "step": 40}), config="{}")
    err = assert_clear_error(cli(capsys, "train-cmd", root, "stop", "--run", "r1"), "r1")
    assert "no trainer is running" in err and "step 40" in err
    assert not (run / "commands").exists() or not any((run / "commands").iterdir())


def test_checkpoint_zero_bytes_truncated_and_missing_cuda(world, capsys):
    import torch

    root, _ = world
    run = _run(root, "r1")
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(b"")
    err = assert_clear_error(cli(capsys, "merge", root, "--run", "r1", "--no-progress"), "latest.pt")
    assert "empty (0 bytes)" in err and "_use_new_zipfile" not in err and "backups" not in err.split("hint:")[1]
    torch.save({"model": {"w": torch.zeros(20000)}, "kind": "workbench.train.checkpoint"}, latest)
    latest.write_bytes(latest.read_bytes()[:30000])
    err = assert_clear_error(cli(capsys, "merge", root, "--run", "r1", "--no-progress"), "latest.pt")
    assert "truncated or corrupt" in err and str(run / "checkpoints" / "backups") not in err
    if not torch.cuda.is_available():
        err = assert_clear_error(cli(capsys, "merge", root, "--run", "r1", "--device", "cuda", "--no-progress"))
        assert "CUDA is not available" in err and "--device cpu" in err


# ------------------------------------------------------------------------------------------------ full disk
def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_extraction_is_a_clear_error_and_resumes(world, capsys, monkeypatch):
    root, _ = world
    shutil.rmtree(root / "aligned" / "src")
    real = Path.write_bytes

    def full_for_faces(self, data):
        if self.parent.name == "src" and ".tmp-" in self.name:
            _enospc()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_for_faces)
    err = assert_clear_error(cli(capsys, "extract", root, "--side", "src", "--workers", "0", "--quiet"),
                             "disk full", str(root / "aligned" / "src"))
    assert "more is needed" in err and "free" in err
    assert not faces_of(root)
    monkeypatch.undo()
    rc, out, _ = cli(capsys, "extract", root, "--side", "src", "--workers", "0", "--quiet")
    assert rc == 0 and "faces written:       2" in out, out


def _tiny_tmpfs(path: Path) -> bool:
    """Mount a 1 MB tmpfs where the machine allows it (root in a container); else the test simulates ENOSPC."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch):
    import torch

    from workbench.errors import DiskFullError
    from workbench.train.checkpoint import save_checkpoint

    disk = tmp_path / "disk"
    mounted = _tiny_tmpfs(disk)
    try:
        if not mounted:
            disk.mkdir(exist_ok=True)
            real_save = torch.save

            def save_until_full(obj, f, *args, **kwargs):
                real_save({"partial": torch.zeros(1000)}, f)
                _enospc()

            monkeypatch.setattr(torch, "save", save_until_full)
        (disk / "latest.pt").write_bytes(b"old checkpoint")
        with pytest.raises(DiskFullError) as info:
            save_checkpoint(disk / "latest.pt", {"model": {"w": torch.zeros(1_000_000)}})
        text = str(info.value)
        assert text.startswith("disk full: about 4.0 MB more is needed") and f"[{disk}]" in text, text
        assert "hint:" in text
        assert (disk / "latest.pt").read_bytes() == b"old checkpoint"  # nothing lost
        assert [p.name for p in disk.iterdir()] == ["latest.pt"]  # no partial temp file
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------------------------------------ launching
def test_a_launch_in_progress_blocks_a_second_and_hands_its_lock_to_the_child(tmp_path):
    """Two launches at the same instant: the run lock is taken before the checks and inherited by the trainer."""
    from workbench.errors import TrainingError
    from workbench.train.runs import LOCK_FD_ENV, RunLock, start, trainer_pid

    run = tmp_path / "models" / "r1"
    launching = RunLock(run)
    launching.acquire()  # the first launch, between its checks and its child taking over
    with pytest.raises(TrainingError, match="already running"):
        start(run, object())  # refused before any option is even looked at
    assert sorted(p.name for p in run.iterdir()) == ["trainer.lock"]
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from workbench.train.runs import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('ok', flush=True); time.sleep(30)", str(run)],
        env={**os.environ, LOCK_FD_ENV: str(launching._fd), "PYTHONPATH": str(Path(__file__).parents[1])},
        pass_fds=(launching._fd,), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        launching.release()  # the launcher returns; the child still holds the lock
        assert trainer_pid(run) == child.pid
        with pytest.raises(TrainingError, match="already running"):
            RunLock(run).acquire()
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while trainer_pid(run) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trainer_pid(run) is None  # the kernel released it with the process


# ------------------------------------------------------------------------------------------------ journal, app
def test_changed_detection_options_reprocess_the_frames(world, capsys):
    root, _ = world
    args = ("extract", root, "--side", "src", "--workers", "0", "--quiet")
    rc, out, _ = cli(capsys, *args)
    assert rc == 0 and "(0 processed, 2 already done)" in out, out  # same options: the journal says done
    before = {p.name: p.stat().st_mtime_ns for p in faces_of(root)}
    rc, out, _ = cli(capsys, *args, "--min-face", "60")
    assert rc == 0 and "(2 processed, 0 already done)" in out, out  # other options: processed again
    after = {p.name: p.stat().st_mtime_ns for p in faces_of(root)}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    rc, out, _ = cli(capsys, *args, "--min-face", "60")
    assert rc == 0 and "(0 processed, 2 already done)" in out, out


def test_app_uploads_only_take_files_uploaded_through_the_page(world, data_file):
    from workbench.app.context import AppContext
    from workbench.app.tab_extract import upload_reference
    from workbench.app.tab_project import upload_media

    root, outside = world
    ctx = AppContext(root.parent / "workspace")
    secret = outside / "victim" / "config.json"
    for out in (upload_media(ctx, str(root), "src", str(secret)), upload_media(ctx, str(root), "dst", "/etc/hostname"),
                upload_reference(ctx, str(root), str(data_file(PHOTO)))):
        assert out["status"].startswith("⚠️") and "not uploaded through the page" in out["status"], out
    assert not (root / "media" / "reference").exists()
    assert json.loads((root / "workbench.json").read_text())["src_media"] == "media/src/photos"
