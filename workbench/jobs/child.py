"""``python -m workbench.jobs.child JOB ATTEMPT EXIT_FILE -- STAGE PROJECT ARGS...``: one job's process.

It runs the ``workbench`` CLI in this process (exactly what ``python -m workbench STAGE ...`` does) and then
writes the exit code to ``EXIT_FILE`` atomically (while it runs it holds an OS lock on ``EXIT_FILE.lock``), so a server started after this process's parent died
can still tell "finished with code N" from "killed before it could finish" (no file: re-queued).
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 5 or argv[3] != "--":
        print("usage: python -m workbench.jobs.child JOB ATTEMPT EXIT_FILE -- STAGE PROJECT ARGS...", file=sys.stderr)
        return 2
    job_id, attempt, exit_file, stage_argv = int(argv[0]), int(argv[1]), argv[2], argv[4:]
    from ..cli import main as cli_main
    from ..fileutil import atomic_write_json
    from .procs import hold_lock

    lock = hold_lock(exit_file + ".lock")  # held until this process ends: the server's proof that the job lives
    try:
        rc = int(cli_main(stage_argv) or 0)
    except SystemExit as exc:  # argparse errors
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    atomic_write_json(exit_file, {"job": job_id, "attempt": attempt, "rc": rc, "ended": time.time()})
    del lock  # released by the kernel at exit, after the exit file exists
    return rc


if __name__ == "__main__":
    sys.exit(main())
