"""ResNet-9 for CIFAR-10, after David Page's DAWNBench network ("How to train your ResNet", 2018).

PrepLayer conv3x3(64)-BN-ReLU; Layer1 conv3x3(128)-MaxPool2-BN-ReLU + ResBlock(128);
Layer2 conv3x3(256)-MaxPool2-BN-ReLU; Layer3 conv3x3(512)-MaxPool2-BN-ReLU + ResBlock(512);
MaxPool(4); FC(10). Convolutions carry no bias (BatchNorm follows each one). At width 1.0 the
network has 6,573,130 parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from resnet9.cifar10 import IMAGE_SIZE, NUM_CLASSES


INPUT_SIZE = (IMAGE_SIZE, IMAGE_SIZE)  # (H, W) of the network's input, in pixels


@dataclass(frozen=True)
class ResNet9Config:
    """``width_multiplier`` scales every channel count (1.0 = 64-128-256-512); the logits are
    multiplied by ``logit_scale`` (1.0 = the spec; Page's DAWNBench network uses 0.125)."""

    width_multiplier: float = 1.0
    logit_scale: float = 1.0
    num_classes: int = NUM_CLASSES
    in_channels: int = 3

    def channels(self, base: int) -> int:
        """Channels of a layer whose spec width is ``base``; at least 1."""
        return max(1, round(base * self.width_multiplier))


class ConvBlock(nn.Sequential):
    """conv3x3 (no bias) - [MaxPool2] - BatchNorm - ReLU. (N, c_in, H, W) -> (N, c_out, H', W')."""

    def __init__(self, c_in: int, c_out: int, pool: bool = False):
        layers = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two ConvBlocks with an identity shortcut: ``x + conv_bn_relu(conv_bn_relu(x))``. Shape kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.res = nn.Sequential(ConvBlock(channels, channels), ConvBlock(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class ResidualLayer(nn.Module):
    """A pooling ConvBlock followed by a ResBlock added to its output (Layer1 and Layer3)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBlock(c_in, c_out, pool=True)
        self.res = ResBlock(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(x))


class ResNet9(nn.Module):
    """ResNet-9. Input (N, 3, 32, 32) float32, normalized; output (N, num_classes) logits.

    The network returns logits: the softmax of the spec is the log-softmax inside
    ``nn.CrossEntropyLoss``, which is numerically stabler than a softmax layer here.
    Shapes at width 1.0: prep (N, 64, 32, 32), layer1 (N, 128, 16, 16), layer2 (N, 256, 8, 8),
    layer3 (N, 512, 4, 4), pool (N, 512, 1, 1), fc (N, 10), times ``config.logit_scale``.
    """

    def __init__(self, config: ResNet9Config = ResNet9Config()):
        super().__init__()
        self.config = config
        c = config.channels
        self.prep = ConvBlock(config.in_channels, c(64))
        self.layer1 = ResidualLayer(c(64), c(128))
        self.layer2 = ConvBlock(c(128), c(256), pool=True)
        self.layer3 = ResidualLayer(c(256), c(512))
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(c(512), config.num_classes)
        self.logit_scale = float(config.logit_scale)  # a plain float: TorchScript reads it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        logits = self.fc(torch.flatten(self.pool(x), 1))
        # a constant, not a parameter: the count stays 6,573,130; 1.0 leaves the graph as it was
        return logits if self.logit_scale == 1.0 else logits * self.logit_scale


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary(model: nn.Module, device: torch.device) -> str:
    """torchinfo's layer-by-layer summary for one (1, 3, *INPUT_SIZE) float32 input, as text."""
    from torchinfo import summary as torchinfo_summary
    from torchinfo.enums import Units

    stats = torchinfo_summary(model, input_size=(1, 3, *INPUT_SIZE), device=device, verbose=0,
                              col_names=("output_size", "num_params", "mult_adds"))
    # torchinfo 1.8 formats its unit enum as "(Units.MEGABYTES)" on Python >= 3.11: print "(M)".
    return re.sub(r"\(Units\.(\w+)\)", lambda m: f"({Units[m.group(1)].value})", str(stats)) + "\n"
