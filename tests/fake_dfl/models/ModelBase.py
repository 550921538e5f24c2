"""Stand-in model base: asks its options through the prompts, as DFL does, and does fixed numpy work per step."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from core.interact import interact as io


class ModelBase:
    OPTIONS = {}  # name -> DFL default

    def __init__(self, is_training=False, saved_models_path=None, training_data_src_path=None,
                 training_data_dst_path=None, force_model_name=None, cpu_only=False, no_preview=False,
                 silent_start=False, **kwargs):
        io.input_skip_pending()
        self.options = {}
        self.default_options = {}
        for name, default in self.OPTIONS.items():
            value = self.load_or_def_option(name, default)
            ask = io.input_bool if isinstance(default, bool) else (io.input_int if isinstance(default, int)
                                                                   else io.input_str)
            self.options[name] = ask(name, value)
        self.batch_size = self.options.get("batch_size", 4)
        self.iter = 0
        self.rng = np.random.default_rng(0)
        # like DFL's sample generators: a daemon worker process that would outlive a careless driver
        self.worker = multiprocessing.Process(target=time.sleep, args=(3600,), daemon=True)
        self.worker.start()
        self.report = {
            "model_name": force_model_name, "cpu_only": cpu_only, "options": self.options,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "worker_pid": self.worker.pid,
            "src_faces": sorted(p.name for p in Path(training_data_src_path).glob("*.jpg")),
            "src_meta": [json.loads(p.read_text()) for p in sorted(Path(training_data_src_path).glob("*.json"))],
        }
        self._write_report()

    def load_or_def_option(self, name, def_value):
        return self.options.get(name, self.default_options.get(name, def_value))

    def get_batch_size(self):
        return self.batch_size

    def train_one_iter(self):
        a = self.rng.random((160, 160))
        np.linalg.svd(a @ a.T)
        self.iter += 1
        self._write_report()
        return self.iter, 0.0

    def _write_report(self):
        path = os.environ.get("FAKE_DFL_REPORT")
        if path:
            self.report["iters"] = self.iter
            Path(f"{path}.{self.report['onednn']}.json").write_text(json.dumps(self.report))
