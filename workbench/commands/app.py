"""`workbench app [PROJECT]`: the browser workbench on http://127.0.0.1:PORT.

Binds 127.0.0.1 unless ``--host`` says otherwise; a public share link only with an explicit ``--share``.
Without PROJECT it opens (creating it first if needed) the demo project ``./workbench-demo``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import CONSENT_RULE

DEMO_FOLDER = "workbench-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "app", help="open the browser workbench (Gradio) on 127.0.0.1",
        description="Open the browser workbench: every stage of the pipeline, live while training runs. "
        "It binds 127.0.0.1 and serves files only from the project folder. " + CONSENT_RULE,
    )
    p.add_argument("project", nargs="?", help=f"project folder (default: the demo project ./{DEMO_FOLDER}, "
                                              "created on first use)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to your network)")
    p.add_argument("--share", action="store_true", default=False,
                   help="also create a public gradio.live link (never on unless given)")
    p.add_argument("--workspace", help="folder in which the page may create/open projects "
                                       "(default: the project's parent folder)")
    p.add_argument("--max-upload-mb", type=int, default=500, help="upload size limit in MB (default 500)")
    p.add_argument("--open-browser", action="store_true", help="open a browser tab")
    p.set_defaults(func=run)


def _demo_project(folder: Path) -> Path | None:
    """The demo project folder, built with workbench.demo when available; None for the empty state."""
    try:
        from ..demo import build_demo_project
    except ImportError:
        return None
    print(f"preparing the demo project in {folder} (generated faces; nothing is downloaded) ...")
    return build_demo_project(folder).root


def run(args: argparse.Namespace) -> int:
    from ..project import Project

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.project:
        root: Path | None = Project.open(args.project).root
    else:
        root = _demo_project(Path.cwd() / DEMO_FOLDER)
    workspace = Path(args.workspace).expanduser().resolve() if args.workspace else None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: anyone who can reach this machine can use the app "
              "(and read the project's files)")
    if args.share:
        print("warning: --share creates a PUBLIC link to this app and its project files")
    print(CONSENT_RULE)
    from ..app.ui import launch_app

    launch_app(root, host=args.host, port=args.port, share=args.share, workspace=workspace,
               max_upload_mb=args.max_upload_mb, inbrowser=args.open_browser)
    return 0
