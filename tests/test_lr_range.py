import numpy as np
import pytest
import torch

from resnet9 import PipelineError, lr_range
from resnet9.model import ResNet9, ResNet9Config


def _curve():
    lrs = np.logspace(-7, 1, 81)
    x = np.log10(lrs)
    # flat, a descent centred at 1e-3, a minimum near 1e-1, then divergence
    losses = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) ** 2 * 3, 0)
    return lrs, losses


def test_steepest_descent_pick():
    lrs, losses = _curve()
    pick = lr_range.pick_max_lr(lrs, losses, "steepest")
    assert pick.max_lr == pytest.approx(1e-3, rel=0.3)
    assert pick.max_lr == pick.steepest_lr
    assert pick.min_loss_lr == pytest.approx(lrs[np.argmin(losses)])


def test_min_loss_fraction_pick():
    lrs, losses = _curve()
    pick = lr_range.pick_max_lr(lrs, losses, "min_loss_fraction", fraction=0.1)
    assert pick.max_lr == pytest.approx(0.1 * lrs[np.argmin(losses)])


def test_too_few_points():
    with pytest.raises(PipelineError, match="only 3 usable points"):
        lr_range.pick_max_lr(np.array([1e-3, 1e-2, 1e-1, 1.0]),
                             np.array([1.0, 0.5, np.nan, 0.4]), "steepest")


def test_range_test_scans_exponentially_and_restores_the_model():
    torch.manual_seed(0)
    net = ResNet9(ResNet9Config(width_multiplier=0.125))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-7)
    lrs, losses = lr_range.range_test(net, opt, torch.nn.CrossEntropyLoss(), loader,
                                      torch.device("cpu"), 1e-6, 1e-1, 10, "exp")
    assert lrs[0] == pytest.approx(1e-6)
    ratios = lrs[1:] / lrs[:-1]
    assert np.allclose(ratios, ratios[0])
    assert np.isfinite(losses).all()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_range_test_accepts_a_device_loader():
    from resnet9.loaders import DeviceLoader
    from resnet9.data import Split

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), np.arange(64) % 10)
    net = ResNet9(ResNet9Config(width_multiplier=0.125))
    loader = DeviceLoader(split, 16, "cpu", generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-7)
    lrs, losses = lr_range.range_test(net, opt, torch.nn.CrossEntropyLoss(), loader,
                                      torch.device("cpu"), 1e-6, 1e-1, 8, "exp")
    assert len(lrs) == 8 and np.isfinite(losses).all()
