"""The training benchmark's side-by-side harness, checked against a stand-in DeepFaceLab (tests/fake_dfl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.bench import train as bench_train
from workbench.errors import WorkbenchError
from workbench.machine import SPEED_FLAGS, describe_machine, machine_line
from workbench.train import preset

FAKE_DFL = Path(__file__).parent / "fake_dfl"
REPO = Path(__file__).resolve().parents[1]


def test_machine_names_cpu_flags_and_bf16():
    m = describe_machine()
    assert m.cores >= 1 and m.cpu_model
    assert set(m.flags) <= set(SPEED_FLAGS)
    assert m.native_bf16 == ("avx512_bf16" in m.flags or "amx_bf16" in m.flags)
    line = machine_line(m)
    assert m.cpu_model in line and f"{m.cores} cores" in line and "load average" in line
    assert ("bf16 native" in line) == m.native_bf16


@pytest.mark.parametrize("vendor,family,model,expected", [
    ("AuthenticAMD", 26, 2, "AMD family 26 model 2 (Zen 5)"),  # Turin, full 512-bit datapath
    ("AuthenticAMD", 25, 17, "AMD family 25 model 17 (Zen 4)"),  # Genoa
    ("AuthenticAMD", 25, 1, "AMD family 25 model 1 (Zen 3)"),  # Milan
    ("AuthenticAMD", 23, 49, "AMD family 23 model 49 (Zen 2)"),  # Rome
    ("GenuineIntel", 6, 143, "Intel family 6 model 143"),  # Sapphire Rapids: the model name says enough
])
def test_machine_line_names_the_core_generation(vendor, family, model, expected):
    from workbench.machine import Machine, _cpuinfo

    text = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            "model name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f\n\n"
            "processor\t: 1\nvendor_id\t: Other\ncpu family\t: 99\nmodel\t\t: 0\n")
    name, flags, generation = _cpuinfo(text)
    assert (flags, generation) == (("avx2", "fma", "avx512f"), expected)
    line = machine_line(Machine(cpu_model="AMD EPYC", cores=2, flags=flags, gpu="", generation=generation))
    assert line.startswith(f"machine: AMD EPYC [{expected}], 2 cores usable, flags avx2 fma avx512f (bf16 emulated)")
    assert _cpuinfo("")[2] == ""  # no /proc/cpuinfo (macOS, Windows): no generation rather than a guess


def test_reference_configs_match_deepfacelab():
    quick = preset(bench_train.CONFIGS[0].preset, **bench_train.CONFIGS[0].options)
    # DFL's Quick96: df-ud 96, 128/64/64/16, batch 4, RMSprop 2e-4 with lr_dropout 0.3
    assert (quick.archi, quick.resolution, quick.ae_dims, quick.e_dims, quick.d_dims, quick.d_mask_dims) == (
        "df-ud", 96, 128, 64, 64, 16)
    assert (quick.batch_size, quick.optimizer, quick.lr, quick.lr_dropout) == (4, "rmsprop", 2e-4, 0.3)
    assert bench_train.CONFIGS[0].dfl_model == "Quick96"
    for config in bench_train.CONFIGS[1:]:
        ours = preset(config.preset, **config.options)
        theirs = config.dfl_options
        assert config.dfl_model == "SAEHD"
        for name in ("archi", "resolution", "ae_dims", "e_dims", "d_dims", "d_mask_dims", "batch_size"):
            assert getattr(ours, name) == theirs[name], name
        assert ours.optimizer == "adabelief" and theirs["adabelief"] is True
        assert ours.lr_dropout == 1.0 and theirs["lr_dropout"] == "n"
        assert ours.masked_training and theirs["masked_training"]
        assert not ours.eyes_mouth_prio and not theirs["eyes_mouth_prio"]


def test_not_a_dfl_checkout_is_refused(tmp_path, capsys):
    from workbench.bench.__main__ import main

    assert main(["train", "--smoke", "--dfl", str(tmp_path), "--dfl-python", sys.executable]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path) in err and "main.py" in err
    with pytest.raises(WorkbenchError, match="--dfl-python"):
        bench_train.main(["--smoke", "--dfl", str(FAKE_DFL)])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[-1].startswith("Z"))  # a zombie is gone


def _row(dfl: list[dict]) -> dict:
    return {"name": "cfg", "device": "cpu", "precision": "fp32", "threads": 2, "s_per_it": 0.5, "s_per_it_min": 0.4,
            "s_per_it_max": 0.6, "cpu_s_per_it": 0.9, "peak_mb": 100.0, "gflops": 10.0, "data_share": 0.1,
            "it_per_s": 2.0, "steps": 8, "dfl": dfl}


def test_table_without_dfl_has_no_ratio(capsys):
    bench_train.print_table([_row([])], "machine: test")
    out = capsys.readouterr().out
    assert "ours/DFL" not in out and "DFL s/it" not in out and "--dfl PATH" in out
    bench_train.print_table([_row([{"onednn": "0", "s_per_it": 2.0, "cpu_s_per_it": 3.0, "ratio": 0.25}])], "m")
    out = capsys.readouterr().out
    assert "ours/DFL" in out and " 0.25 ok" in out
    row = _row([])
    row["split"] = {"conv backward": 50.0, "conv forward": 25.0, "optimizer": 15.0, "batch": 5.0, "other": 5.0}
    bench_train.print_table([row], "m")
    out = capsys.readouterr().out
    assert "where our step's CPU time goes" in out and "50 ( 50%)" in out and "15 ( 15%)" in out


@pytest.mark.slow
def test_side_by_side_against_standin_dfl(tmp_path):
    report = tmp_path / "report"
    env = dict(os.environ, FAKE_DFL_REPORT=str(report), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "workbench.bench", "train", "--smoke", "--dfl", str(FAKE_DFL), "--dfl-python",
         sys.executable, "--steps", "2", "--rounds", "2", "--warmup", "1", "--threads", "1", "--precision", "fp32",
         "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    row = rows[0]
    assert row["steps"] == 4 and row["s_per_it_min"] <= row["s_per_it"] <= row["s_per_it_max"]
    assert [d["onednn"] for d in row["dfl"]] == ["0", "1"]
    split = row["split"]  # the profile of our step: every part measured, convolutions and the update not empty
    assert tuple(split) == bench_train.SPLIT_PARTS and all(v >= 0 for v in split.values())
    assert split["conv backward"] > 0 and split["conv forward"] > 0 and split["optimizer"] > 0
    for d in row["dfl"]:
        assert d["s_per_it"] > 0 and d["ratio"] == pytest.approx(row["s_per_it"] / d["s_per_it"])
        assert d["batch_size"] == bench_train.SMOKE.dfl_options["batch_size"]
    for setting in ("0", "1"):
        seen = json.loads(Path(f"{report}.{setting}.json").read_text())
        assert seen["onednn"] == setting and seen["cpu_only"] is True
        assert seen["iters"] == 1 + 2 * 2  # warm-up + rounds x steps, every one a train_one_iter() call
        for name, value in seen["options"].items():
            assert value == bench_train.SMOKE.dfl_options[name], name
        assert len(seen["src_faces"]) == 16 and len(seen["src_meta"]) == 16
        meta = seen["src_meta"][0]
        assert meta["face_type"] == "full_face" and np.asarray(meta["landmarks"]).shape == (68, 2)
        assert meta["source_rect"] == [0, 0, 32, 32]
        assert not _alive(seen["worker_pid"])  # the side's worker processes do not outlive the benchmark


def test_gpu_sweep_is_liae_ud_256_at_batch_8_to_32_and_mfu_uses_the_dense_peak():
    assert [c.options["batch_size"] for c in bench_train.GPU_SWEEP] == [8, 16, 32]
    for config in bench_train.GPU_SWEEP:
        opts = preset(config.preset, **config.options)
        assert (opts.archi, opts.resolution, opts.ae_dims, opts.e_dims, opts.d_dims, opts.d_mask_dims) == (
            "liae-ud", 256, 256, 64, 64, 22)
        assert bench_train._config(bench_train.ALL_CONFIGS.index(config), False) is config  # --_serve finds it
    peak = bench_train.dense_peak_tflops
    assert peak("NVIDIA H200", "bf16") == pytest.approx(989.4)
    assert peak("NVIDIA A100-SXM4-80GB", "bf16") == 312.0  # not the A10's figure
    assert peak("NVIDIA A10", "fp16") == 125.0
    assert peak("Tesla T4", "fp16") == 65.0 and peak("Tesla T4", "bf16") is None  # no bf16 tensor cores
    assert peak("Some Future GPU", "bf16") is None


def test_table_shows_mfu_and_compile_on_cuda(capsys):
    fast = {**_row([]), "device": "cuda:0", "precision": "bf16", "gflops": 445_000.0, "compile": True, "mfu": 0.45}
    unknown = {**_row([]), "device": "cuda:0", "precision": "fp16", "mfu": None}
    bench_train.print_table([fast, unknown], "machine: test")
    out = capsys.readouterr().out
    assert "MFU" in out and "TFLOP/s" in out and ">= 40 %" in out
    lines = [line for line in out.splitlines() if line.startswith("cfg")]
    assert "cfg +compile" in lines[0] and lines[0].rstrip().endswith("45.0%") and " 445.0 " in lines[0]
    assert lines[1].rstrip().endswith("-") and "+compile" not in lines[1]
    bench_train.print_table([_row([])], "machine: test")
    assert "MFU" not in capsys.readouterr().out  # CPU rows: no chip peak, no column


@pytest.mark.slow
def test_compiled_side_runs_and_counts_the_same_work(tmp_path):
    """--compile y trains through torch.compile and still counts the FLOPs (on the eager module)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "workbench.bench", "train", "--smoke", "--steps", "1", "--rounds", "1", "--warmup", "1",
         "--threads", "1", "--precision", "fp32", "--compile", "n,y", "--profile-steps", "0", "--json"],
        capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["compile"] for r in rows] == [False, True]
    eager, compiled = (r["gflops"] * r["s_per_it"] for r in rows)  # GFLOP per step
    assert eager > 0 and compiled == pytest.approx(eager, rel=1e-6)
    assert all(r["mfu"] is None for r in rows)  # CPU: no MFU
