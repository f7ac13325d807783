"""The One Cycle policy (Smith & Topin 2017, "Super-Convergence"), as torch's OneCycleLR.

Linear warm-up from LRMIN = max_lr / div_factor to max_lr at ``peak_epoch``, then linear decay
back to LRMIN at the last step: no annihilation phase below LRMIN. Stepped once per batch.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR


def one_cycle(
    optimizer: torch.optim.Optimizer,
    max_lr: float,
    epochs: int,
    steps_per_epoch: int,
    peak_epoch: float,
    div_factor: float,
) -> OneCycleLR:
    """OneCycleLR peaking at ``peak_epoch`` and ending at ``max_lr / div_factor``.

    Args:
        max_lr: peak learning rate.
        peak_epoch: epoch (may be fractional) at which the LR peaks; 0 < peak_epoch < epochs.
        div_factor: LRMIN = max_lr / div_factor is both the start and the end LR.

    The schedule has ``epochs * steps_per_epoch`` steps: step 0 has LR = LRMIN, step
    ``round(peak_epoch * steps_per_epoch) - 1`` has LR = max_lr and the last step LRMIN again.
    Adam's beta1 is cycled inversely (0.95 -> 0.85 -> 0.95), torch's default.
    """
    total = epochs * steps_per_epoch
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total,
        pct_start=peak_epoch / epochs,
        anneal_strategy="linear",
        div_factor=div_factor,
        final_div_factor=1.0,  # end at initial_lr = max_lr / div_factor: no annihilation
        three_phase=False,
    )
