"""Grad-CAM (Selvaraju et al. 2017) with captum's LayerGradCam."""

from __future__ import annotations

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
