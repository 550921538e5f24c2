"""`workbench train`, `train-status`, `train-cmd` on a minimal project folder."""

from __future__ import annotations

import json

import pytest
from train_fixtures import make_faceset, one_torch_thread  # noqa: F401  (fixtures)

from workbench.cli import main
from workbench.train import load_checkpoint, read_status

FAST = ["--archi", "df-ud", "--resolution", "32", "--ae-dims", "32", "--e-dims", "8", "--d-dims", "8",
        "--d-mask-dims", "8", "--batch-size", "4", "--metrics-samples", "2", "--loader-workers", "0",
        "--channels-last", "n", "--preview-every", "2"]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "workbench.json").write_text(json.dumps({"schema_version": 1, "name": "t"}))
    make_faceset(root / "aligned" / "src", 6, seed=1)
    make_faceset(root / "aligned" / "dst", 6, seed=2)
    return root


def test_train_foreground_resume_and_status(project, capsys):
    assert main(["train", str(project), "--run", "t1", "--steps", "3", *FAST]) == 0
    run = project / "models" / "t1"
    assert read_status(run).state == "stopped" and load_checkpoint(run)["step"] == 3
    # a second plain start would overwrite the model: refused with advice
    assert main(["train", str(project), "--run", "t1", "--steps", "2", *FAST]) == 2
    assert "--resume" in capsys.readouterr().err
    # resume keeps the run's options (overrides allowed), continues the step count
    assert main(["train", str(project), "--run", "t1", "--resume", "--steps", "2", "--lr", "1e-4"]) == 0
    assert load_checkpoint(run)["step"] == 5 and load_checkpoint(run)["options"]["lr"] == 1e-4
    # a model option that contradicts the checkpoint names the field and the fix
    assert main(["train", str(project), "--run", "t1", "--resume", "--steps", "1", "--ae-dims", "64"]) == 2
    err = capsys.readouterr().err
    assert "ae_dims" in err and "--ae-dims 32" in err
    capsys.readouterr()
    assert main(["train-status", str(project)]) == 0
    assert "t1: stopped, step 5" in capsys.readouterr().out
    assert main(["train-status", str(project), "--run", "t1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 5
    # no trainer runs on t1: the command is refused, and no command file is left for a later session
    assert main(["train-cmd", str(project), "save", "--run", "t1"]) == 2
    assert "no trainer is running on run 't1'" in capsys.readouterr().err
    assert not (run / "commands" / "save").exists()


def test_train_rejects_bad_options(project, capsys):
    with pytest.raises(SystemExit):
        main(["train", str(project), "--masked-training", "maybe"])
    assert main(["train", str(project), "--resolution", "100"]) == 2
    assert "multiple of" in capsys.readouterr().err
