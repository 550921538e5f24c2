"""The command line: every stage is listed, and bad input gives one clear line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

from workbench.cli import COMMAND_MODULES, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_stage():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMAND_MODULES:
        assert name.replace("_", "-") in result.stdout  # module export_model -> command export-model
    assert "consent" in result.stdout.lower()


def test_errors_are_one_clear_message(tmp_path, capsys):
    assert main(["extract", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a workbench project" in err and str(tmp_path) in err and "hint:" in err
    result = run_cli("new", str(tmp_path / "p"), "--src", str(tmp_path / "missing.mp4"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "media not found" in result.stderr and "missing.mp4" in result.stderr


def test_new_then_extract_a_photo_folder(tmp_path, data_dir):
    project = tmp_path / "p"
    assert main(["new", str(project), "--src", str(data_dir / "stills" / "biden"), "--face-size", "128"]) == 0
    assert main(["extract", str(project), "--side", "src", "--workers", "0", "--quiet"]) == 0
    assert len(list((project / "aligned" / "src").glob("*.jpg"))) == 2
    assert main(["sort", str(project), "--side", "src", "--by", "blur", "--keep", "1", "--quiet"]) == 0
    assert len(list((project / "aligned" / "src_trash").glob("*.jpg"))) == 1


def test_every_subcommand_help_renders():
    # help texts come from option tables (OPTION_HELP, FIELD_HELP); a stray '%' used to crash argparse
    for name in (*(m.replace("_", "-") for m in COMMAND_MODULES), "train-status", "train-cmd"):
        result = run_cli(name, "--help")
        assert result.returncode == 0, (name, result.stderr[-2000:])
        assert "usage: workbench" in result.stdout and "Traceback" not in result.stderr


def test_help_and_light_commands_do_not_import_torch_or_gradio(tmp_path):
    # `workbench --help`, `train-status` and `train-cmd` must start in a second, not after importing torch
    code = (
        "import sys\n"
        "from workbench.cli import build_parser, main\n"
        "from workbench.project import create_project\n"
        "build_parser().format_help()\n"
        f"create_project({str(tmp_path / 'p')!r})\n"
        f"assert main(['train-status', {str(tmp_path / 'p')!r}]) == 0\n"
        f"assert main(['train-cmd', {str(tmp_path / 'p')!r}, 'stop']) == 2\n"
        "print(sorted(m for m in ('torch', 'gradio', 'pandas', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
