"""The run folder: the only interface between a background trainer and anyone who watches it.

Layout of ``RUN`` (usually ``PROJECT/models/<name>``)::

    config.json           options + faceset paths (written by the launcher)
    status.json           replaced atomically: state, step, it/s, losses, ETA, last save/error, pid, ...
    metrics.jsonl         append-only: training losses and held-out SSIM/PSNR over time
    previews/latest.png   preview grid, plus a history previews/step_000500.png
    checkpoints/latest.pt checkpoint (temp file + rename); checkpoints/backups/ rotating autobackups
    commands/             drop a file named pause, resume, save, preview or stop; the trainer deletes it
    trainer.log           the background process's stdout/stderr (for humans; never parsed)
    trainer.lock          held (flock) by the live trainer, so a second start is refused

Readers here never parse logs and never import torch, so a UI can poll them cheaply.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, TrainingError
from ..fileutil import atomic_write_json, read_jsonl

CONFIG_NAME = "config.json"
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.jsonl"
LOG_NAME = "trainer.log"
LOCK_NAME = "trainer.lock"
PREVIEWS_DIR = "previews"
CHECKPOINTS_DIR = "checkpoints"
COMMANDS_DIR = "commands"
LATEST_CKPT = "latest.pt"
BACKUPS_DIR = "backups"
CONFIG_SCHEMA_VERSION = 1

COMMANDS = ("pause", "resume", "save", "preview", "stop")
STATES = ("new", "starting", "running", "paused", "saving", "stopped", "error", "finished", "corrupt")
# A run name is one plain folder name: it can never climb out of PROJECT/models or name an absolute path.
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# start() hands its held run lock to the child trainer through this inherited file descriptor.
LOCK_FD_ENV = "WORKBENCH_RUN_LOCK_FD"
ACTIVE_STATES = frozenset({"starting", "running", "paused", "saving"})
STARTING_GRACE_SECONDS = 60.0  # a trainer launched this long ago may still be starting (no lock yet)


# ----------------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------------
def check_run_name(name: str) -> str:
    """Return ``name`` if it is a plain run name (letters, digits, ``-_.``, up to 64); else raise ConfigError.

    Checked before anything touches the disk, so ``../../elsewhere`` or ``/abs/path`` never become run folders.
    """
    text = str(name)
    if not RUN_NAME_RE.match(text) or text in (".", ".."):
        raise ConfigError(f"invalid run name {text!r}: a run name is a plain folder name", hint=(
            "use letters, digits, '-', '_' or '.' (up to 64, starting with a letter or digit); "
            "runs always live in PROJECT/models/"))
    return text


def run_folder(models_dir: str | Path, name: str) -> Path:
    """``PROJECT/models/name`` for a checked plain run name; refused if a link (the run folder or ``models``
    itself) makes it leave the project."""
    models_dir = Path(models_dir)
    path = models_dir / check_run_name(name)
    project_root = models_dir.absolute().parent.resolve()
    if project_root not in path.resolve().parents:
        raise ConfigError(f"run folder '{name}' is a link that leaves the project", path,
                          "replace the link by a real folder inside PROJECT/models")
    return path


def checkpoint_path(run_dir: str | Path) -> Path:
    """``RUN/checkpoints/latest.pt``."""
    return Path(run_dir) / CHECKPOINTS_DIR / LATEST_CKPT


def backups_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / BACKUPS_DIR


def default_facesets(run_dir: str | Path) -> tuple[Path, Path] | None:
    """``PROJECT/aligned/src`` and ``aligned/dst`` when ``run_dir`` is ``PROJECT/models/<name>``."""
    run_dir = Path(run_dir).resolve()
    root = run_dir.parent.parent
    if run_dir.parent.name == "models" and (root / "workbench.json").is_file():
        return root / "aligned" / "src", root / "aligned" / "dst"
    return None


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """What the launcher tells the trainer: options, faceset folders and session limits."""

    options: Any  # TrainOptions (kept untyped here so this module does not import torch)
    src_dir: Path
    dst_dir: Path
    pretrained: Path | None = None
    max_steps: int | None = None
    max_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": CONFIG_SCHEMA_VERSION,
            "options": self.options.to_dict(),
            "src_dir": str(self.src_dir),
            "dst_dir": str(self.dst_dir),
            "pretrained": None if self.pretrained is None else str(self.pretrained),
            "max_steps": self.max_steps,
            "max_seconds": self.max_seconds,
            "written": time.time(),
        }


def write_run_config(run_dir: str | Path, config: RunConfig) -> Path:
    """Write ``RUN/config.json`` atomically."""
    return atomic_write_json(Path(run_dir) / CONFIG_NAME, config.to_dict())


def read_run_config(run_dir: str | Path) -> RunConfig:
    """Read ``RUN/config.json``; raises TrainingError (missing/corrupt) or ConfigError (bad options)."""
    from .options import TrainOptions

    path = Path(run_dir) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TrainingError("the run folder has no config.json", path.parent,
                            "start runs with `workbench train` or workbench.train.start()") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read config.json ({exc})", path, "fix or delete the file") from exc
    try:
        version = int(data.get("schema_version", 0))
        options = TrainOptions.from_dict(data.get("options", {}))
        src_dir, dst_dir = Path(data["src_dir"]), Path(data["dst_dir"])
        pretrained = Path(data["pretrained"]) if data.get("pretrained") else None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"config.json is incomplete or malformed ({exc.__class__.__name__}: {exc})", path,
                            "delete it and start the run again (its checkpoint is kept)") from exc
    if version > CONFIG_SCHEMA_VERSION:
        raise TrainingError(f"config.json has schema {version}, newer than this workbench ({CONFIG_SCHEMA_VERSION})",
                            path, "upgrade the workbench package")
    return RunConfig(options=options, src_dir=src_dir, dst_dir=dst_dir, pretrained=pretrained,
                     max_steps=data.get("max_steps"), max_seconds=data.get("max_seconds"))


# ----------------------------------------------------------------------------------------------
# status.json
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStatus:
    """A snapshot of ``status.json`` plus whether the trainer process is alive.

    ``state`` is what the trainer last wrote (new|starting|running|paused|saving|stopped|error|finished);
    ``stale`` is True when it claims to be active but its process is gone (killed, crashed machine).
    """

    run_dir: Path
    state: str = "new"
    step: int = 0
    target_steps: int = 0
    it_per_s: float = 0.0
    losses: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    eta_seconds: float | None = None
    last_save_step: int | None = None
    last_save_time: float | None = None
    last_error: str | None = None
    pid: int | None = None
    alive: bool = False
    collapse_events: tuple = ()
    metrics: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    effective_resolution: int | None = None
    device: str | None = None
    preview_step: int | None = None
    started: float | None = None
    updated: float | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def stale(self) -> bool:
        """The file says the trainer is active but no process holds the run."""
        return self.state in ACTIVE_STATES and not self.alive

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES and self.alive

    def state_text(self, alive: bool | None = None, now: float | None = None) -> str:
        """The state in words for a person: a just-launched trainer that holds no lock yet (less than
        :data:`STARTING_GRACE_SECONDS` ago) is "starting"; an active state with no live process is
        "crashed (process gone)". ``alive`` overrides the lock check (e.g. a launcher's process handle)."""
        if self.state == "corrupt":  # status.json could not be read: never shown as a fresh run
            return f"corrupt ({self.last_error})" if self.last_error else "corrupt"
        alive = self.alive if alive is None else alive
        if self.state == "starting" and not alive and self.started:
            if (time.time() if now is None else now) - self.started < STARTING_GRACE_SECONDS:
                return "starting"
        return "crashed (process gone)" if self.state in ACTIVE_STATES and not alive else self.state

    def step_text(self) -> str:
        """``step 120`` or ``step 120 / 500``."""
        return f"step {self.step}" + (f" / {self.target_steps}" if self.target_steps else "")

    def detail_parts(self) -> list[str]:
        """The measured facts after the state, in display order (every front end shows the same ones): speed,
        src/dst loss, held-out SSIM and PSNR, the identity score ("looks like the source"), ETA, device."""
        parts = []
        if self.it_per_s:
            parts.append(f"{self.it_per_s:.2f} it/s")
        parts += [f"loss {k} {v:.4f}" for k, v in self.losses.items()
                  if k in ("src", "dst") and isinstance(v, (int, float))]
        metrics = dict(self.metrics)
        if "ssim_src" in metrics:
            parts.append(f"held-out SSIM src {metrics.get('ssim_src', 0):.3f} / dst {metrics.get('ssim_dst', 0):.3f}")
        if "psnr_src" in metrics:
            parts.append(f"PSNR {metrics.get('psnr_src', 0):.1f} / {metrics.get('psnr_dst', 0):.1f} dB")
        if isinstance(metrics.get("id_closer_to_src"), (int, float)):
            parts.append(f"looks like the source {metrics['id_closer_to_src']:.2f} "
                         f"(median distance {metrics.get('id_distance_src', float('nan')):.3f})")
        if self.eta_seconds:
            parts.append(f"ETA {_fmt_seconds(self.eta_seconds)}")
        if self.device:
            parts.append(f"device {self.device}")
        return parts

    def summary(self) -> str:
        """One human line, e.g. for a CLI (the app and the notebook widgets show the same parts)."""
        if self.state == "corrupt":
            return f"{self.name}: {self.state_text()}"
        parts = [f"{self.name}: {self.state_text()}", self.step_text(), *self.detail_parts()]
        if self.last_error:
            parts.append(f"error: {self.last_error.splitlines()[0]}")
        return ", ".join(parts)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def write_status(run_dir: str | Path, status: dict[str, Any]) -> None:
    """Replace ``status.json`` atomically (called by the trainer)."""
    atomic_write_json(Path(run_dir) / STATUS_NAME, {**status, "updated": time.time()})


EVAL_SERIES = ("ssim_src", "ssim_dst", "psnr_src", "psnr_dst", "id_closer_to_src", "id_distance_src", "id_distance_dst")


def metric_series(rows: list[dict], kind: str = "train") -> dict[str, list[tuple[int, float]]]:
    """``metrics.jsonl`` rows (:func:`read_metrics`) -> ``{series: [(step, value), ...]}``, the one parser of them.

    ``kind="train"``: the training losses (``loss_src``, ``loss_dst``, ``loss_total``, ... named without the
    ``loss_`` prefix; the gradient norm is not a loss); ``kind="eval"``: the held-out :data:`EVAL_SERIES`
    (SSIM, PSNR and the identity score of src->dst swaps).
    Rows without a step and non-finite values are skipped.
    """
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        step = row.get("step")
        if row.get("kind") != kind or step is None:
            continue
        for key, value in row.items():
            if kind == "train":
                if not key.startswith("loss_") or key == "loss_grad_norm":
                    continue
                name = key[5:]
            elif key in EVAL_SERIES:
                name = key
            else:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.setdefault(name, []).append((int(step), float(value)))
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    # The writer renames a complete file into place, so a read sees the old or the new version; a
    # retry covers the rare platform (Windows) where the rename briefly makes the file unreadable.
    for _ in range(3):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            time.sleep(0.02)
    return None


def read_status(run_dir: str | Path) -> RunStatus:
    """Read ``RUN/status.json`` (state "new" when there is none yet)."""
    run_dir = Path(run_dir)
    path = run_dir / STATUS_NAME
    data = _read_json(path)
    running_pid = trainer_pid(run_dir)
    if data is None and path.exists() or data is not None and not isinstance(data, dict):
        # Unreadable or not an object: say so, never "new, step 0" for a run that may be well trained.
        return RunStatus(run_dir=run_dir, state="corrupt", alive=running_pid is not None,
                         last_error=f"status.json is corrupt or unreadable [{path}]; a running trainer rewrites it, "
                         "else delete it (the checkpoint is kept)")
    data = data or {}
    pid = data.get("pid")
    known = {f for f in RunStatus.__dataclass_fields__}
    values = {k: v for k, v in data.items() if k in known and k not in ("run_dir", "alive")}
    try:
        values["losses"] = MappingProxyType(dict(values.get("losses") or {}))
        values["metrics"] = MappingProxyType(dict(values.get("metrics") or {}))
        values["collapse_events"] = tuple(values.get("collapse_events") or ())
        values["step"] = int(values.get("step") or 0)
    except (TypeError, ValueError):
        return RunStatus(run_dir=run_dir, state="corrupt", alive=running_pid is not None,
                         last_error=f"status.json has malformed fields [{path}]")
    alive = running_pid is not None or (pid is not None and _lock_unsupported() and pid_alive(pid))
    return RunStatus(run_dir=run_dir, alive=alive, **values)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All rows of ``RUN/metrics.jsonl`` (a truncated last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / METRICS_NAME)


def latest_preview(run_dir: str | Path) -> Path | None:
    """``RUN/previews/latest.png`` if it exists."""
    path = Path(run_dir) / PREVIEWS_DIR / "latest.png"
    return path if path.is_file() else None


def preview_history(run_dir: str | Path) -> list[Path]:
    """The saved preview grids ``previews/step_*.png``, oldest first."""
    return sorted((Path(run_dir) / PREVIEWS_DIR).glob("step_*.png"))


def list_runs(project: Any) -> list[RunStatus]:
    """Status of every run folder under ``PROJECT/models`` (a Project, a project folder or a models folder)."""
    models = Path(getattr(project, "models_dir", project))
    if not models.name == "models" and (models / "models").is_dir():
        models = models / "models"
    if not models.is_dir():
        return []
    runs = [p for p in sorted(models.iterdir())
            if p.is_dir() and any(f.exists() for f in (p / CONFIG_NAME, p / STATUS_NAME, checkpoint_path(p)))]
    return [read_status(p) for p in runs]


def run_activity(status: RunStatus) -> float:
    """When a run last did something: the later of its status update and its checkpoint save (epoch seconds)."""
    ckpt = checkpoint_path(status.run_dir)
    saved = ckpt.stat().st_mtime if ckpt.is_file() else 0.0
    return max(float(status.updated or 0.0), saved)


def latest_run(project: Any, *, require_checkpoint: bool = False) -> RunStatus | None:
    """The run a command uses when none is named (merge, export provenance, train-status/train-cmd, the app).

    Rule: among the project's runs (:func:`list_runs`), the one with the most recent activity
    (:func:`run_activity`: the later of its last status update and its last checkpoint save); ties go to the
    name that sorts last. With ``require_checkpoint`` only runs that have a saved model count (what merging
    and export provenance need). None when no run qualifies.
    """
    runs = list_runs(project)
    if require_checkpoint:
        runs = [r for r in runs if checkpoint_path(r.run_dir).is_file()]
    if not runs:
        return None
    return max(runs, key=lambda r: (run_activity(r), r.name))


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------
def send_command(run_dir: str | Path, name: str) -> Path:
    """Drop a command file (pause, resume, save, preview, stop) for the trainer to pick up.

    The trainer polls ``RUN/commands/`` between steps (and while paused), acts on the files in the order
    they were written and deletes them. Commands left in a folder with no live trainer are discarded by
    the next :func:`start` (a stale "stop" must not end the new session at once).
    """
    if name not in COMMANDS:
        raise TrainingError(f"unknown trainer command '{name}'", hint=f"use one of {', '.join(COMMANDS)}")
    folder = Path(run_dir) / COMMANDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    atomic_write_json(path, {"command": name, "sent": time.time()})
    return path


def take_commands(run_dir: str | Path) -> list[str]:
    """Pop the pending commands, oldest first (used by the trainer). Unknown files are removed."""
    folder = Path(run_dir) / COMMANDS_DIR
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue  # a temp file of an atomic write in progress
        with contextlib.suppress(FileNotFoundError):
            entries.append((path.stat().st_mtime_ns, path.name, path))
    names = []
    for _, name, path in sorted(entries):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        command = name.rsplit("_", 1)[-1].rsplit(".", 1)[0]  # "pause", "123_pause" or "pause.txt"
        if command in COMMANDS:
            names.append(command)
    return names


# ----------------------------------------------------------------------------------------------
# the live-trainer lock
# ----------------------------------------------------------------------------------------------
def _lock_unsupported() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return True
    return False


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and has not finished (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie: finished, waiting to be reaped
    return True


class RunLock:
    """An exclusive lock on a run folder, held by the trainer for its lifetime.

    It is an OS file lock (``flock``), so the kernel releases it when the process dies, even by
    SIGKILL; a stale pid in status.json can never block a new start.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def _adopt_inherited(self) -> int | None:
        """The lock fd handed down by :func:`start` (already locked by the launcher), if it is this file's."""
        value = os.environ.pop(LOCK_FD_ENV, None)
        if value is None or not value.isdigit():
            return None
        fd = int(value)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return None
        return fd if same else None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        inherited = self._adopt_inherited()
        if inherited is not None:
            os.ftruncate(inherited, 0)
            os.pwrite(inherited, str(os.getpid()).encode(), 0)  # the offset is shared with the launcher
            self._fd = inherited
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError as exc:
            os.close(fd)
            pid = trainer_pid(self.path.parent)
            raise TrainingError(
                f"a trainer is already running on this run folder (pid {pid})", self.path.parent,
                "stop it first (workbench train-cmd PROJECT stop, or send_command(run_dir, 'stop')), or use another --run name",
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_holder(path: str | Path) -> int | None:
    """The pid written by the live process that holds ``path``'s OS lock (0 when it wrote none), or None when
    nobody holds it or the OS has no flock. Serves the run lock and the job server's locks."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        return None
    finally:
        os.close(fd)  # also drops the shared lock taken to test it


def trainer_pid(run_dir: str | Path) -> int | None:
    """The pid of the live trainer holding ``run_dir``, or None when no trainer holds it."""
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return None
    try:
        import fcntl  # noqa: F401 - only whether the OS has flock
    except ImportError:  # no flock (Windows): fall back on the pid written in status.json
        data = _read_json(Path(run_dir) / STATUS_NAME) or {}
        pid = data.get("pid")
        return pid if pid and data.get("state") in ACTIVE_STATES and pid_alive(pid) else None
    return lock_holder(path)


# ----------------------------------------------------------------------------------------------
# launching
# ----------------------------------------------------------------------------------------------
class TrainerHandle:
    """A background trainer started by :func:`start`. The run folder remains the interface."""

    def __init__(self, run_dir: Path, process: subprocess.Popen):
        self.run_dir = run_dir
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; returns its exit code (raises subprocess.TimeoutExpired)."""
        return self.process.wait(timeout)

    def status(self) -> RunStatus:
        return read_status(self.run_dir)

    def send(self, command: str) -> Path:
        return send_command(self.run_dir, command)

    def stop(self, timeout: float | None = 60.0) -> int:
        """Ask the trainer to save and stop, then wait for it."""
        send_command(self.run_dir, "stop")
        return self.wait(timeout)

    def __repr__(self) -> str:
        return f"TrainerHandle(pid={self.pid}, run_dir='{self.run_dir}', alive={self.is_alive()})"


def prepare_run(
    run_dir: str | Path, options: Any, *, src: str | Path | None = None, dst: str | Path | None = None,
    pretrained: str | Path | None = None, max_steps: int | None = None, max_seconds: float | None = None,
    _lock_held: bool = False,
) -> RunConfig:
    """Check the inputs and write ``RUN/config.json`` (shared by :func:`start` and the foreground CLI).

    Raises:
        TrainingError: a trainer already runs there, the facesets are missing or too small, or the
            run's checkpoint was made with other model options.
    """
    from .checkpoint import check_checkpoint_compatible
    from .data import check_faceset_folder

    run_dir = Path(run_dir)
    if max_steps is not None and (isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1):
        raise ConfigError(f"the number of steps must be a whole number >= 1, got {max_steps!r}", run_dir,
                          "pass --steps N with N >= 1, or leave it out to train until stopped")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"the time limit must be > 0, got {max_seconds!r}", run_dir,
                          "pass --minutes M with M > 0, or leave it out")
    pid = None if _lock_held else trainer_pid(run_dir)
    if pid is not None:
        raise TrainingError(
            f"a trainer is already running on this run folder (pid {pid})", run_dir,
            "stop it first (send_command(run_dir, 'stop') or `workbench train-cmd PROJECT stop`) or pick another run name",
        )
    if src is None or dst is None:
        previous = None
        if (run_dir / CONFIG_NAME).exists():
            with contextlib.suppress(Exception):
                previous = read_run_config(run_dir)
        defaults = (previous.src_dir, previous.dst_dir) if previous else default_facesets(run_dir)
        if defaults is None:
            raise TrainingError("no facesets given for this run", run_dir,
                                "pass src= and dst= folders of aligned faces, or put the run in PROJECT/models/<name>")
        src = src if src is not None else defaults[0]
        dst = dst if dst is not None else defaults[1]
    src, dst = Path(src).resolve(), Path(dst).resolve()
    for folder, side in ((src, "src"), (dst, "dst")):
        check_faceset_folder(folder, side, options.batch_size)
    if checkpoint_path(run_dir).exists():
        check_checkpoint_compatible(checkpoint_path(run_dir), options)
    config = RunConfig(options, src, dst, Path(pretrained).resolve() if pretrained else None, max_steps, max_seconds)
    run_dir.mkdir(parents=True, exist_ok=True)
    take_commands(run_dir)  # no trainer holds the folder: commands still lying there are stale
    write_run_config(run_dir, config)
    return config


def spawn_detached(run_dir: Path, args: list[str], env: dict[str, str] | None = None,
                   pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """Run ``python ARGS`` detached (new session), output appended to ``RUN/trainer.log``.

    Shared by the face trainer and the XSeg trainer (``workbench.segment``): closing the notebook, browser
    or app does not stop it, and it is never a fork of a kernel that may hold CUDA. ``pass_fds`` are inherited
    (the face trainer hands its run lock to the child this way).
    """
    child_env = {k: v for k, v in os.environ.items() if k != LOCK_FD_ENV}  # a lock is handed over explicitly only
    package_root = str(Path(__file__).resolve().parents[2])  # so `-m workbench...` imports this very copy
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH")) if p)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        child_env.update(env)
    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    if pass_fds:
        kwargs["pass_fds"] = pass_fds
    with open(run_dir / LOG_NAME, "ab") as log:
        return subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=child_env, close_fds=True, **kwargs)


def start(
    run_dir: str | Path, options: Any, *, src: str | Path | None = None, dst: str | Path | None = None,
    pretrained: str | Path | None = None, max_steps: int | None = None, max_seconds: float | None = None,
    env: dict[str, str] | None = None, nproc: int = 1,
) -> TrainerHandle:
    """Start training in a separate, detached process and return at once.

    Writes ``RUN/config.json``, then runs ``python -m workbench.train RUN`` with ``subprocess.Popen``
    in a new session (closing the notebook, browser or app does not stop it; never a fork of a
    kernel that may hold CUDA). A run folder with a checkpoint resumes from it.

    Args:
        run_dir: the run folder (e.g. ``PROJECT/models/tiny``); created if needed.
        options: :class:`TrainOptions`.
        src, dst: folders of aligned faces; default ``PROJECT/aligned/src|dst`` for a run in
            ``PROJECT/models/<name>``, or the folders of the run's previous config.
        pretrained: a pretrained run folder or checkpoint to initialise a new run from (§3.6).
        max_steps, max_seconds: end this session after so many steps / seconds (state "stopped").
        env: extra environment variables for the child.
        nproc: processes (GPUs) on this machine; above 1 the child is ``torchrun --standalone
            --nproc_per_node=N -m workbench.train RUN`` (DDP; ``batch_size`` is the global batch).

    Returns:
        A :class:`TrainerHandle` (``pid``, ``is_alive()``, ``wait()``, ``status()``, ``stop()``).
    """
    run_dir = Path(run_dir).resolve()
    # Hold the run lock from the checks until the child trainer owns it: two launches at the same instant
    # cannot both pass the "already running" check. One process inherits the locked descriptor itself.
    launch_lock = RunLock(run_dir)
    launch_lock.acquire()
    try:
        if nproc < 1 or options.batch_size % nproc:
            raise TrainingError(f"batch size {options.batch_size} does not split over {nproc} processes",
                                hint=f"use a batch size that is a multiple of {nproc}")
        return _start_locked(run_dir, options, launch_lock, src=src, dst=dst, pretrained=pretrained,
                             max_steps=max_steps, max_seconds=max_seconds, env=env, nproc=nproc)
    finally:
        launch_lock.release()


def _start_locked(run_dir: Path, options: Any, lock: RunLock, *, src: str | Path | None, dst: str | Path | None,
                  pretrained: str | Path | None, max_steps: int | None, max_seconds: float | None,
                  env: dict[str, str] | None, nproc: int) -> TrainerHandle:
    prepare_run(run_dir, options, src=src, dst=dst, pretrained=pretrained, max_steps=max_steps,
                max_seconds=max_seconds, _lock_held=True)
    previous = _read_json(run_dir / STATUS_NAME)
    previous = previous if isinstance(previous, dict) else {}
    write_status(run_dir, {**{k: v for k, v in previous.items() if k in ("step", "collapse_events")},
                           "state": "starting", "pid": None, "last_error": None, "started": time.time()})
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    child_env = dict(env or {})
    inherited: tuple[int, ...] = ()
    if nproc == 1 and lock._fd is not None and os.name != "nt":
        # torchrun would hold the inherited lock in its launcher, so only a direct child adopts it.
        child_env[LOCK_FD_ENV] = str(lock._fd)
        inherited = (lock._fd,)
    else:
        lock.release()
    process = spawn_detached(run_dir, [*launcher, "-m", "workbench.train", str(run_dir)], child_env,
                             pass_fds=inherited)
    if lock._fd is not None:
        os.ftruncate(lock._fd, 0)
        os.pwrite(lock._fd, str(process.pid).encode(), 0)  # the child owns the lock now; report its pid
    return TrainerHandle(run_dir, process)


def wait_for_state(run_dir: str | Path, states: str | tuple[str, ...], timeout: float = 60.0,
                   poll: float = 0.1) -> RunStatus:
    """Poll ``status.json`` until its state is one of ``states`` (raises TimeoutError)."""
    states = (states,) if isinstance(states, str) else tuple(states)
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(run_dir)
        if status.state in states:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_dir} stayed in state {status.state!r}, expected {states}")
        time.sleep(poll)
