"""The training recipe, from validated params to torch objects: network, Adam, loss, loaders.

Shared by the lr_find, train, evaluate and analyze stages so that the LR range test sees the
same network, optimizer, loss and augmentation as training does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resnet9 import artifacts, augment, data, engine
from resnet9.model import ResNet9, ResNet9Config
from resnet9.params import ModelParams, ParamsError, TrainParams

MODEL_FILE = Path("data/model.pt")
LR_FIND_METRICS = Path("metrics/lr_find.json")
SUGGESTED_MAX_LR = "suggested_max_lr"  # the LR range test's pick, a key of LR_FIND_METRICS
TRAIN_METRICS = Path("metrics/train.json")


def build_model(model_params: ModelParams, device: torch.device) -> ResNet9:
    """A freshly initialised ResNet-9 of the configured width, on ``device``, channels_last."""
    net = ResNet9(ResNet9Config(width_multiplier=model_params.width_multiplier))
    return net.to(device, memory_format=torch.channels_last)


def optimizer(model: nn.Module, lr: float, weight_decay: float,
              decay_bn_and_bias: bool = True) -> torch.optim.Adam:
    """``torch.optim.Adam`` with L2 ``weight_decay`` at learning rate ``lr``.

    With ``decay_bn_and_bias=False`` the 1-D parameters (BatchNorm scales and shifts, the FC
    bias) get no weight decay, as in Goyal et al. 2017 and airbench.
    """
    if decay_bn_and_bias or weight_decay == 0:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    params = list(model.parameters())
    return torch.optim.Adam([
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
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


def criterion(train_params: TrainParams) -> nn.CrossEntropyLoss:
    """CrossEntropyLoss (log-softmax + NLL) with the configured label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=train_params.label_smoothing)


def augment_backend(train_params: TrainParams, device: torch.device) -> str:
    """``albumentations`` or ``torch``; ``auto`` picks torch on CUDA only."""
    if train_params.augment_backend != "auto":
        return train_params.augment_backend
    return "torch" if device.type == "cuda" else "albumentations"


def train_loader(split: data.Split, train_params: TrainParams, device: torch.device,
                 generator: torch.Generator):
    """Shuffled, augmented batches ``(x, y)`` of ``train_params.batch_size``.

    With the ``torch`` backend a :class:`resnet9.batch_augment.DeviceLoader` (dataset on the
    device, batched augmentation); otherwise a DataLoader running albumentations per image.

    Raises:
        ParamsError: ``train.batch_size`` exceeds the number of training images.
    """
    if train_params.batch_size > len(split):
        raise ParamsError(f"train.batch_size: {train_params.batch_size} is larger than the "
                          f"{len(split)} training images; expected at most {len(split)}")
    if augment_backend(train_params, device) == "torch":
        from resnet9.batch_augment import DeviceLoader

        return DeviceLoader(split, train_params.batch_size, device, shuffle=True, augment=True,
                            generator=generator, pad_mode=train_params.pad_mode)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    dataset = data.AugmentedDataset(split, augment.train_transform(train_params.pad_mode, seed))
    return engine.make_loader(
        dataset, train_params.batch_size, shuffle=True, generator=generator,
        num_workers=engine.resolve_num_workers(train_params.num_workers, device),
        pin_memory=device.type == "cuda")


def test_loader(split: data.Split, batch_size: int, device: torch.device,
                num_workers: int | str = "auto"):
    """Normalized test batches, in dataset order (kept on the device on CUDA)."""
    if device.type == "cuda":
        from resnet9.batch_augment import DeviceLoader

        return DeviceLoader(split, batch_size, device, shuffle=False, augment=False)
    dataset = data.AugmentedDataset(split, augment.test_transform())
    return engine.make_loader(dataset, batch_size, shuffle=False,
                              num_workers=engine.resolve_num_workers(num_workers, device),
                              pin_memory=device.type == "cuda")


def resolve_max_lr(train_params: TrainParams, lr_find_metrics: Path = LR_FIND_METRICS) -> float:
    """``train.max_lr``, or the LR range test's pick (``suggested_max_lr``) when it is ``auto``.

    Raises:
        ParamsError: ``auto`` but ``metrics/lr_find.json`` is missing or has no
            ``suggested_max_lr``.
    """
    if train_params.max_lr != "auto":
        return float(train_params.max_lr)
    try:
        return float(artifacts.read_json(lr_find_metrics)[SUGGESTED_MAX_LR])
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise ParamsError(
            f"train.max_lr: 'auto' needs the LR range test's result in {lr_find_metrics} "
            f"({type(err).__name__}: {err}); run `dvc repro lr_find` or set a number"
        ) from None


def load_trained(path: Path | str, device: torch.device) -> tuple[ResNet9, dict]:
    """The trained network from ``data/model.pt`` in eval mode, and the file's metadata.

    Raises:
        PipelineError: the file is missing (run the train stage).
    """
    path = Path(path)
    if not path.is_file():
        raise data.DataError(f"{path}: not found; run `dvc repro train` first")
    saved = artifacts.load_torch(path)
    net = build_model(ModelParams(**saved["model_params"]), device)
    net.load_state_dict(saved["state_dict"])
    return net.eval(), saved
