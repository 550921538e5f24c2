"""Training: DF and LIAE autoencoders in a background process that anyone can watch.

Launch and watch (the run folder is the only interface; see :mod:`workbench.train.runs`)::

    from workbench.train import preset, start, read_status, send_command, latest_preview
    handle = start("project/models/tiny", preset("tiny"))     # returns at once; a detached process trains
    read_status("project/models/tiny").summary()              # state, step, it/s, losses, ETA ...
    send_command("project/models/tiny", "stop")               # saves and stops

In-process (a notebook running 50 steps with its own callback, same code path)::

    trainer = Trainer(preset("tiny"), src_dir, dst_dir, callbacks=[my_callback])
    trainer.run(steps=50)

Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m workbench.train RUN_DIR`` (see README).

Names are imported lazily so that the run-folder readers do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # options
    "TrainOptions": "options", "OPTION_HELP": "options", "OPTION_SPECS": "options", "PRESETS": "options", "preset": "options",
    "MODEL_FIELDS": "options",
    # run folder protocol (no torch)
    "start": "runs", "TrainerHandle": "runs", "send_command": "runs", "read_status": "runs", "RunStatus": "runs",
    "read_metrics": "runs", "latest_preview": "runs", "preview_history": "runs", "list_runs": "runs",
    "read_run_config": "runs", "prepare_run": "runs", "trainer_pid": "runs", "wait_for_state": "runs",
    "checkpoint_path": "runs", "COMMANDS": "runs", "latest_run": "runs", "run_activity": "runs",
    # training
    "Trainer": "trainer", "Callback": "callback", "TrainResult": "callback", "resolve_device": "device",
    "train": "foreground", "RunDirWriter": "writer", "ProgressLine": "writer",
    # checkpoints
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "checkpoint_summary": "checkpoint",
    # latent tools and the merger's predictor
    "load_model": "latent", "load_predictor": "latent", "Predictor": "latent", "latent_code": "latent",
    "decode_code": "latent", "interpolate": "latent", "reconstruct_both": "latent",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
