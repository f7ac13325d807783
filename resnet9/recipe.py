"""The training recipe, from validated params to torch objects: network, Adam, EMA, loss.

Shared by the lr_find, train, evaluate and analyze stages so that the LR range test sees the
same network, optimizer and loss as training does (the batches come from
:mod:`resnet9.loaders`).
"""

from __future__ import annotations

import torch
from torch import nn

from resnet9.model import ResNet9, ResNet9Config
from resnet9.params import ModelParams, RecipeParams


def build_model(model_params: ModelParams, device: torch.device) -> ResNet9:
    """A freshly initialised ResNet-9 of the configured width, on ``device``, channels_last."""
    net = ResNet9(ResNet9Config(width_multiplier=model_params.width_multiplier,
                                logit_scale=model_params.logit_scale))
    return net.to(device, memory_format=torch.channels_last)


def optimizer(model: nn.Module, lr: float, recipe: RecipeParams) -> torch.optim.Optimizer:
    """Adam at learning rate ``lr`` with ``recipe.weight_decay``: ``torch.optim.Adam``'s L2 term
    (the spec) or, with ``recipe.optimizer: adamw``, ``torch.optim.AdamW``'s decoupled decay
    (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization").

    With ``recipe.decay_bn_and_bias`` false the 1-D parameters (BatchNorm scales and shifts,
    the FC bias) get no weight decay, as in Goyal et al. 2017 and airbench.
    """
    adam = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    decay = recipe.weight_decay
    if recipe.decay_bn_and_bias or decay == 0:
        return adam(model.parameters(), lr=lr, weight_decay=decay)
    params = list(model.parameters())
    return adam([
        {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ], lr=lr)


def ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BN buffers, or None if decay is 0.

    torch's ``AveragedModel``; after the n-th update ``ema = d * ema + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))``, the ``num_updates`` warm-up of TensorFlow's
    ``tf.train.ExponentialMovingAverage``. The warm-up keeps a short run from being dominated by
    the initial weights; at decay 0.99 it ends after 890 updates (9 epochs of the spec run), and
    the weights it shaped count less than 1e-6 at the end of a 24-epoch run.
    """
    if decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def warmed_up_ema(averaged: list[torch.Tensor], current: list[torch.Tensor],
                      num_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # BN's num_batches_tracked: a count
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        # A tensor, not a Python float: no read-back from the device at each step.
        d = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay)
        weight = (1 - d).to(averaged[0].dtype)
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)

    return AveragedModel(model, multi_avg_fn=warmed_up_ema, use_buffers=True)


def criterion(recipe: RecipeParams) -> nn.CrossEntropyLoss:
    """CrossEntropyLoss (log-softmax + NLL) with the configured label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
