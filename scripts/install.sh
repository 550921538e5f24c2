#!/usr/bin/env bash
# Install Face-Swap Workbench on a fresh machine.
#   bash scripts/install.sh          # the library, CLI, notebooks and app
#   bash scripts/install.sh --test   # + test tools, and (as root with apt) chromium + ffmpeg for browser/video tests
# torch is pinned so pip does not pull a different build; on a CPU-only machine with a local CPU wheel
# this is the CPU build. Nothing here downloads model weights.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="[local]"  # jupyterlab for the notebooks (an extra, so Colab's own Jupyter is never upgraded)
if [[ "${1:-}" == "--test" ]]; then
  extras="[local,test]"
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # chromium: Playwright drives Debian's browser (never `playwright install`); ffmpeg: ffprobe for export tests.
    apt-get install -y -qq --no-install-recommends chromium ffmpeg fonts-dejavu-core >/dev/null
  else
    echo "note: not root or no apt-get: install chromium and ffmpeg yourself for the browser/ffprobe tests" >&2
  fi
fi
step() { printf '\n==> [%s] %s\n' "$1" "$2"; }  # progress: each step says what it installs
step 1/4 "torch 2.13.0 (pinned: an unpinned torch pulls GBs of CUDA wheels)"
python3 -m pip install --disable-pip-version-check --progress-bar on "torch==2.13.0"
step 2/4 "the workbench and its dependencies ${extras}"
python3 -m pip install --disable-pip-version-check --progress-bar on -e ".${extras}"
# MTCNN weights: the facenet-pytorch wheel carries them (facenet_pytorch/data/{pnet,rnet,onet}.pt). Its metadata
# pins torch<2.3 and torchvision, so it is installed WITHOUT dependencies; the workbench only reads the weight
# files (torch.load(weights_only=True)) and never imports the package.
step 3/4 "facenet-pytorch 2.6.0 without dependencies (the MTCNN weights)"
python3 -m pip install -q --disable-pip-version-check --no-deps "facenet-pytorch==2.6.0"
# YuNet (optional engine 'yunet', also the default engine's preferred fallback): wheels exist for Python <= 3.11.
step 4/4 "yuface (the YuNet detector, optional)"
if python3 -c 'import sys; sys.exit(0 if sys.version_info < (3, 12) else 1)'; then
  python3 -m pip install -q --disable-pip-version-check "yuface==2023.5.1"
else
  echo "note: yuface has no wheel for this Python; the 'yunet' engine is unavailable and 'auto' falls back to MTCNN" >&2
fi
