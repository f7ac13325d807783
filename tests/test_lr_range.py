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
    pick = lr_range.pick_max_lr(lrs, losses, "min_loss_fraction", factor=0.1)
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


def test_valley_is_half_way_down_the_longest_decreasing_run():
    # 0-2 flat noise, 3-12 a descent with one bump at 8, then divergence
    losses = np.array([2.3, 2.31, 2.29, 2.2, 2.0, 1.8, 1.6, 1.5, 1.55, 1.3, 1.2, 1.1, 1.0,
                       1.4, 3.0])
    # longest strictly decreasing subsequence: 2.31 (1), 2.29 ... 1.0 (12), skipping the bump:
    # 11 points, ending at 12; fastai's start = 12 - 11 = 1, pick = 1 + int(11/3) + int(11/6) = 5
    assert lr_range.valley_index(losses) == 5


def test_valley_rule_leaves_out_fastais_ends():
    lrs, losses = _curve()
    pick = lr_range.pick_max_lr(lrs, losses, "valley")
    first, last = len(lrs) // 10, len(lrs) - 5
    expected = lrs[first:last][lr_range.valley_index(losses[first:last])]
    assert pick.max_lr == expected
    assert lrs[first] < pick.max_lr < pick.min_loss_lr  # on the way down, before the minimum


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule 'slide'"):
        lr_range.pick_max_lr(*_curve(), "slide")


def test_rules_are_the_params_choices():
    from typing import get_args

    from resnet9.params import LrFindParams

    assert lr_range.RULES == get_args(LrFindParams.model_fields["rule"].annotation)
    for rule in lr_range.RULES:  # each one is implemented
        lr_range.pick_max_lr(*_curve(), rule)


def _tiny_test(smooth_f: float, diverge_th: float) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    net = ResNet9(ResNet9Config(width_multiplier=0.125))
    x, y = torch.randn(96, 3, 32, 32), torch.randint(0, 10, (96,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-7)
    return lr_range.range_test(net, opt, torch.nn.CrossEntropyLoss(), loader,
                               torch.device("cpu"), 1e-4, 10, 30, "exp",
                               smooth_f=smooth_f, diverge_th=diverge_th)


def test_smooth_replays_torch_lr_finder_on_raw_losses(one_thread):
    lrs, smoothed = _tiny_test(lr_range.SMOOTH_F, 1.5)
    raw_lrs, raw = _tiny_test(0.0, 1e9)
    assert len(raw) == 30 and len(smoothed) < 30  # the library's stop: the loss diverged
    replayed = lr_range.smooth(raw, lr_range.SMOOTH_F, 1.5)
    assert len(replayed) == len(smoothed)
    np.testing.assert_allclose(replayed, smoothed, rtol=1e-12)
    np.testing.assert_array_equal(raw_lrs[:len(lrs)], lrs)


def test_average_curves_keeps_the_steps_all_reached():
    lrs = np.logspace(-5, 0, 6)
    lrs_avg, mean = lr_range.average_curves([(lrs, np.arange(6.0)), (lrs[:4], np.ones(4))])
    np.testing.assert_array_equal(lrs_avg, lrs[:4])
    np.testing.assert_array_equal(mean, [0.5, 1.0, 1.5, 2.0])
    with pytest.raises(ValueError, match="different LR schedules"):
        lr_range.average_curves([(lrs, np.ones(6)), (lrs * 2, np.ones(6))])


def test_repeat_seeds_start_with_the_seed_and_never_overlap_between_seeds():
    assert lr_range.repeat_seeds(7, 1) == [7]
    a, b = lr_range.repeat_seeds(0, 3), lr_range.repeat_seeds(1, 3)
    assert a[0] == 0 and len(set(a) | set(b)) == 6


def test_the_shipped_settings_pick_steadily_on_the_recorded_spec_curves(committed_params_file):
    """params.yaml's lr_find settings applied to the raw range-test curves recorded at the spec
    for their range (benchmarks/results/lr_find/, 5+ seeds, each folder one CPU and precision)
    pick values near the 2.6e-3 the factor aims at, at most 3 steps of the LR grid apart
    (1.42x). Issue 19's goal, 1.25x, held on the first curves (an Intel Xeon, fp32: 1.12x) and
    not on the later ones (bf16 on a Xeon with AMX, bf16 and fp32 on an AMD EPYC: 1.42x each):
    docs/accuracy.md, "The LR range test's pick across seeds"."""
    import pandas as pd

    from resnet9 import params

    from conftest import ROOT

    p = params.load("lr_find", path=committed_params_file)
    results = ROOT / "benchmarks" / "results" / "lr_find"

    def same_range(runs: pd.DataFrame) -> bool:
        return bool(((runs.start_lr == p.start_lr) & (runs.end_lr == p.end_lr)
                     & (runs.num_iter == p.num_iter)).all())

    recorded = {f: pd.read_csv(f / "runs.csv") for f in sorted(results.iterdir())
                if (f / "runs.csv").exists()}
    folders = {f: runs for f, runs in recorded.items() if same_range(runs)}
    assert folders, f"no recorded curves for the shipped range in {results}"
    for folder, runs in folders.items():
        picks = []
        for curve in sorted(folder.glob("seed*.csv")):
            raw = pd.read_csv(curve)
            smoothed = lr_range.smooth(raw.loss.to_numpy(), p.smooth_f)
            lrs = raw.lr.to_numpy()[:len(smoothed)]
            picks.append(lr_range.pick_max_lr(lrs, smoothed, p.rule, p.factor).max_lr)
        assert len(picks) >= 5, folder
        step = lrs[1] / lrs[0]  # the recorded LR grid: exponential, so one ratio throughout
        assert max(picks) / min(picks) <= step ** 3 * (1 + 1e-6), (folder.name, picks)
        assert 2e-3 <= float(np.median(picks)) <= 3.2e-3, (folder.name, picks)
