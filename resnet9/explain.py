"""Grad-CAM (Selvaraju et al. 2017) with captum's LayerGradCam, and the torchinfo summary."""

from __future__ import annotations

import re

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn


def gradcam(model: nn.Module, layer: nn.Module, images: torch.Tensor,
            targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM heatmaps for ``targets`` at ``layer``, upsampled to the input size.

    Args:
        images: (N, 3, H, W) float32, normalized, on the model's device.
        targets: (N,) int64 class indices to explain (usually the predictions).

    Returns:
        (N, H, W) float32 on the CPU, each map ReLU'd and scaled to [0, 1] (all-zero maps stay 0).
    """
    model.eval()
    cam = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), "bilinear")[:, 0]
    cam = cam.detach().float().cpu()
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).clamp(0, 1)


def summary(model: nn.Module, device: torch.device) -> str:
    """torchinfo's layer-by-layer summary for one (1, 3, 32, 32) input, as text."""
    from torchinfo import summary as torchinfo_summary
    from torchinfo.enums import Units

    stats = torchinfo_summary(model, input_size=(1, 3, 32, 32), device=device, verbose=0,
                              col_names=("output_size", "num_params", "mult_adds"))
    # torchinfo 1.8 formats its unit enum as "(Units.MEGABYTES)" on Python >= 3.11: print "(M)".
    return re.sub(r"\(Units\.(\w+)\)", lambda m: f"({Units[m.group(1)].value})", str(stats)) + "\n"
