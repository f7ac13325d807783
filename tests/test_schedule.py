import pytest
import torch

from resnet9.schedule import one_cycle


def _lrs(max_lr=0.01, epochs=24, steps=98, peak=5, div=10.0):
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=max_lr / div)
    sched = one_cycle(opt, max_lr, epochs, steps, peak, div)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_starts_at_lrmin_peaks_at_the_peak_epoch_and_ends_at_lrmin():
    lrs = _lrs()
    assert lrs[0] == pytest.approx(0.001)
    assert lrs.index(max(lrs)) == 5 * 98 - 1
    assert lrs[5 * 98 - 1] == pytest.approx(0.01)
    assert max(lrs) == pytest.approx(0.01)
    assert lrs[-1] == pytest.approx(0.001)  # no annihilation below LRMIN
    assert min(lrs) == pytest.approx(0.001)


def test_linear_up_then_linear_down():
    lrs = _lrs(epochs=4, steps=10, peak=1)
    up, down = torch.tensor(lrs[:10]), torch.tensor(lrs[9:])
    assert torch.allclose(up.diff(), up.diff()[0].expand(9), rtol=1e-4)
    assert torch.allclose(down.diff(), down.diff()[0].expand(30), rtol=1e-4)
    assert (up.diff() > 0).all() and (down.diff() < 0).all()


def test_fractional_peak_epoch():
    lrs = _lrs(epochs=10, steps=10, peak=2.5)
    assert lrs.index(max(lrs)) == 24
