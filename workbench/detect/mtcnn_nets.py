"""MTCNN's three cascaded networks (Zhang et al., 2016), written here in torch.

P-Net (12x12, fully convolutional, proposes windows), R-Net (24x24, refines) and O-Net (48x48, refines and
places 5 points). The layer names and shapes match the state dicts that the ``facenet-pytorch`` wheel ships in
``facenet_pytorch/data/{pnet,rnet,onet}.pt`` (converted from the original Caffe models), so those plain
tensors load with ``torch.load(weights_only=True)`` without importing facenet-pytorch (which needs torchvision).

Inputs are RGB in NCHW, normalised as ``(x - 127.5) / 128``. The Caffe models were trained on transposed
images, so R-Net and O-Net flatten their feature maps in (width, height) order: ``permute(0, 3, 2, 1)``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..errors import EngineUnavailableError

WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}


class PNet(nn.Module):
    """Proposal net: per 12x12 window (stride 2) a face probability and 4 box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refine net: a 24x24 crop -> face probability and 4 box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # Caffe's transposed flatten order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: a 48x48 crop -> face probability, 4 box offsets and 5 points (x0..x4, y0..y4 in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def mtcnn_weights_dir() -> Path:
    """``facenet_pytorch/data`` of the installed facenet-pytorch wheel, found without importing the package.

    Raises:
        EngineUnavailableError: the wheel is not installed or a weight file is missing.
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError(
            "the MTCNN weights (package facenet-pytorch) are not installed",
            hint="pip install --no-deps facenet-pytorch==2.6.0 (only its weight files are used; --no-deps "
            "because it pins old torch/torchvision versions)",
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name in WEIGHT_FILES.values():
        if not (folder / name).is_file():
            raise EngineUnavailableError(f"MTCNN weight file {name} is missing", folder / name,
                                         "pip install --force-reinstall --no-deps facenet-pytorch==2.6.0")
    return folder


def load_mtcnn_nets(folder: Path | None = None) -> tuple[PNet, RNet, ONet]:
    """The three nets with facenet-pytorch's weights (plain state dicts, ``weights_only=True``), in eval mode."""
    folder = mtcnn_weights_dir() if folder is None else Path(folder)
    nets = (PNet(), RNet(), ONet())
    for net, key in zip(nets, ("pnet", "rnet", "onet")):
        state = torch.load(folder / WEIGHT_FILES[key], map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        net.requires_grad_(False)
    return nets
