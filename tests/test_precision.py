"""recipe.precision: the choice per device, and the GradScaler step path on the CPU."""

import numpy as np
import pytest
import torch
from torch import nn

from resnet9 import engine, lr_range, precision
from resnet9.params import ParamsError, parse, read
from resnet9.precision import Precision
from resnet9.schedule import one_cycle

CPU = torch.device("cpu")


def small_net() -> nn.Module:
    """Two layers in ResNet-9's pattern (conv-BN-ReLU, then pool and FC): (N, 3, 32, 32) float32
    -> (N, 10) logits. Small, because fp16 is slow on a CPU and the scaler's path is the same."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("setting, device_type, capability, expected", [
    ("auto", "cuda", (9, 0), "bf16"),   # H100, H200
    ("auto", "cuda", (8, 0), "bf16"),   # A100
    ("auto", "cuda", (8, 6), "bf16"),   # RTX 30xx
    ("auto", "cuda", (8, 9), "bf16"),   # RTX 40xx, L4
    ("auto", "cuda", (7, 5), "fp16"),   # T4 (Colab), RTX 20xx
    ("auto", "cuda", (7, 0), "fp16"),   # V100
    ("auto", "cuda", (6, 0), "fp16"),   # P100
    ("auto", "cpu", None, "fp32"),
    ("auto", "mps", None, "fp32"),
    ("fp16", "cuda", (9, 0), "fp16"),   # an explicit choice wins over the capability
    ("fp32", "cuda", (9, 0), "fp32"),
    ("bf16", "cpu", None, "bf16"),
])
def test_choice_per_device_and_capability(setting, device_type, capability, expected):
    assert precision.choose(setting, device_type, capability) == expected


@pytest.mark.parametrize("setting, cpu_bf16, expected", [
    ("auto", True, "bf16"),    # AVX512-BF16 or AMX: oneDNN's native bf16
    ("auto", False, "fp32"),   # emulated bf16 is many times slower than fp32
    ("fp32", True, "fp32"),    # an explicit choice wins over the CPU
    ("bf16", False, "bf16"),
])
def test_auto_on_the_cpu_follows_native_bf16(setting, cpu_bf16, expected):
    assert precision.choose(setting, "cpu", None, cpu_bf16) == expected
    assert precision.choose(setting, "mps", None, cpu_bf16) == ("fp32" if setting == "auto"
                                                                else setting)


def test_the_native_bf16_probe_is_guarded(monkeypatch):
    """torch's probes are private: missing or failing ones read as no native bf16."""
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert precision.cpu_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: 1 / 0, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_native_bf16() is True  # AMX alone counts
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)
    assert precision.resolve("auto", CPU).name == "bf16"
    assert precision.explain("auto", precision.resolve("auto", CPU)) == \
        "bf16 (auto: this CPU runs bf16 natively)"
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    assert precision.explain("auto", precision.resolve("auto", CPU)) == \
        "fp32 (auto: this CPU has no native bf16, AVX512-BF16 or AMX)"
    assert precision.explain("fp32", precision.resolve("fp32", CPU)) == "fp32 (recipe.precision)"
    assert precision.cpu_capability()["native_bf16"] is False


def test_bad_settings_are_named(committed_params_file):
    with pytest.raises(ValueError, match="'fp8'"):
        precision.choose("fp8", "cuda", (9, 0))
    with pytest.raises(ValueError, match="capability"):
        precision.choose("auto", "cuda", None)
    with pytest.raises(ParamsError, match=r"recipe.precision: 'half' is not allowed"):
        parse("recipe", {**read(committed_params_file)["recipe"], "precision": "half"})


def test_resolve_on_this_cpu_follows_its_bf16_and_fp32_has_a_disabled_scaler():
    amp = precision.resolve("auto", CPU)
    assert amp.name == ("bf16" if precision.cpu_native_bf16() else "fp32")
    assert not amp.scaler.is_enabled()
    assert not precision.resolve("fp32", CPU).scaler.is_enabled()
    assert precision.resolve("fp16", CPU).scaler.is_enabled()  # the scaler follows fp16 only
    assert not precision.resolve("bf16", CPU).scaler.is_enabled()


def _train(amp: Precision, steps: int = 6):
    """The small net trained for ``steps`` Adam steps on one repeated batch."""
    torch.manual_seed(0)
    net = small_net()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    loader = [(x, y)] * steps
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = one_cycle(opt, 3e-3, 1, steps, 0.3, 10)
    losses: list[float] = []
    loop = engine.TrainLoop(net=net, optimizer=opt, scheduler=sched,
                            criterion=nn.CrossEntropyLoss(), train_loader=loader,
                            test_loader=loader, device=CPU, epochs=1, precision=amp)
    engine.train_one_epoch(loop, 0, on_step=losses.append)
    return net, losses


def test_disabled_scaler_trains_exactly_like_plain_fp32():
    amp = Precision("fp32", "cpu")
    assert not amp.scaler.is_enabled()
    net, losses = _train(amp)
    torch.manual_seed(0)
    plain = small_net()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(plain.parameters(), lr=3e-3)
    sched = one_cycle(opt, 3e-3, 1, 6, 0.3, 10)
    plain.train()
    x = x.contiguous(memory_format=torch.channels_last)  # as train_one_epoch feeds it
    for _ in range(6):
        loss = nn.functional.cross_entropy(plain(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 plain.state_dict().values()))
    assert losses[-1] < losses[0]


def test_fp16_with_a_forced_scale_trains_and_stays_finite():
    amp = Precision("fp16", "cpu", init_scale=2.0**8)  # small enough that no step overflows
    net, losses = _train(amp)
    assert amp.scaler.is_enabled()
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert amp.scaler.get_scale() == 2.0**8  # no overflow: the scale held (growth is 2000 steps)


# A skipped optimizer step still steps the One Cycle scheduler (the schedule counts every
# batch, skipped or not), and torch warns about exactly that.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_overflowing_scale_skips_steps_and_backs_off():
    torch.manual_seed(0)
    initial = small_net().state_dict()
    amp = Precision("fp16", "cpu", init_scale=2.0**40)  # the scaled fp16 gradients overflow
    net, losses = _train(amp, steps=3)
    assert amp.scaler.get_scale() < 2.0**40  # halved at each skipped step
    assert np.isfinite(losses).all()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    # The first step overflowed, so it was skipped: weights at 2**40 do not move on step 1.
    weights = {k: v for k, v in net.state_dict().items() if v.is_floating_point()}
    assert any(not torch.equal(initial[k], v) for k, v in weights.items())  # later steps ran


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_lr_range_test_runs_at_each_precision(name):
    torch.manual_seed(0)
    net = small_net()
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-7)
    lrs, losses = lr_range.range_test(net, opt, nn.CrossEntropyLoss(), loader, CPU,
                                      1e-6, 1e-1, 8, "exp", Precision(name, "cpu", 2.0**8))
    assert len(lrs) == 8 and np.isfinite(losses).all()


def test_predict_runs_under_the_precision_and_returns_float32():
    torch.manual_seed(0)
    net = small_net()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loader = [(x, y)]
    fp32, _ = engine.predict(net, loader, CPU)
    bf16, labels = engine.predict(net, loader, CPU, Precision("bf16", "cpu"))
    assert bf16.dtype == torch.float32 and torch.equal(labels, y)
    assert not torch.equal(fp32, bf16)  # really ran in bf16 ...
    assert torch.allclose(fp32, bf16, atol=0.1, rtol=0.1)  # ... and agrees to bf16's precision
