from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from resnet9 import engine, runtime
from resnet9.model import ResNet9, ResNet9Config
from resnet9.precision import Precision
from resnet9.schedule import one_cycle

CPU = torch.device("cpu")


def _loader(n=32, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    ds = torch.utils.data.TensorDataset(torch.randn(n, 3, 32, 32, generator=g),
                                        torch.randint(0, 10, (n,), generator=g))
    return torch.utils.data.DataLoader(ds, batch_size=batch)


def _net():
    torch.manual_seed(0)
    return ResNet9(ResNet9Config(width_multiplier=0.125))


def _loop(net, loader, epochs, criterion=None, lr=1e-4, max_lr=1e-3, ema=None):
    """A TrainLoop on ``loader`` (train and test) under a One Cycle policy peaking after 1 epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    return engine.TrainLoop(
        net=net, optimizer=opt, scheduler=one_cycle(opt, max_lr, epochs, len(loader), 1, 10),
        criterion=criterion or nn.CrossEntropyLoss(), train_loader=loader, test_loader=loader,
        device=CPU, epochs=epochs, precision=Precision("fp32", "cpu"), ema=ema)


def test_tta_averages_the_logits_of_the_image_and_its_mirror():
    net, loader = _net().eval(), _loader()
    plain, mirrored_views, labels = engine.predict_views(net, loader, CPU, mirror=True)
    tta = engine.flip_tta(plain, mirrored_views)
    x = torch.cat([b[0] for b in loader])
    with torch.no_grad():
        mirrored = net(torch.flip(x, dims=[3]))
    assert torch.allclose(tta, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(tta, plain)
    assert torch.equal(labels, torch.cat([b[1] for b in loader]))


def test_predict_views_gives_plain_and_mirrored_logits_in_one_pass():
    net, loader = _net().eval(), _loader()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    plain, mirrored, labels = engine.predict_views(net, loader, CPU, mirror=True)
    assert len(calls) == 2 * len(loader)  # each batch: the images and their mirrors, once
    x = torch.cat([b[0] for b in loader])
    with torch.no_grad():
        assert torch.allclose(plain, net(x), atol=1e-5)
        assert torch.allclose(mirrored, net(torch.flip(x, dims=[3])), atol=1e-5)
    assert torch.equal(labels, torch.cat([b[1] for b in loader]))
    assert engine.predict_views(net, loader, CPU)[1] is None


def test_score_is_cross_entropy_and_top1():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    loss, acc = engine.score(logits, labels)
    assert acc == pytest.approx(2 / 3)
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item())


def test_fit_records_history_and_every_step_lr():
    loader = _loader()
    result = engine.fit(_loop(_net(), loader, 3))
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert len(result.lrs) == 3 * len(loader)
    assert result.lrs[0] == pytest.approx(1e-4) and max(result.lrs) == pytest.approx(1e-3)
    h = result.history[-1]
    assert 0 <= h.train_acc <= 1 and 0 <= h.test_acc <= 1 and h.seconds > 0


def test_nan_loss_stops_with_epoch_step_and_lr():
    calls = {"n": 0}

    def poisoned(logits, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(logits, y)
        return loss * float("nan") if calls["n"] == 6 else loss

    with pytest.raises(engine.TrainingDiverged, match=r"loss is nan at epoch 2, step 2 \(lr "):
        engine.fit(_loop(_net(), _loader(), 2, poisoned, lr=1e-3))


def test_nan_loss_is_found_at_its_step_when_losses_are_read_back_in_groups():
    loader = _loader()
    calls, seen = {"n": 0}, []

    def poisoned(logits, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(logits, y)
        return loss * float("inf") if calls["n"] == 3 else loss

    loop = _loop(_net(), loader, 2, poisoned, lr=1e-3)
    with pytest.raises(engine.TrainingDiverged, match=r"loss is inf at epoch 1, step 3 "), \
            mock.patch.object(engine, "loss_sync_every", lambda device: len(loader)):
        engine.train_one_epoch(loop, 0, on_step=seen.append)
    assert calls["n"] == len(loader)  # the group ran to its end before the read-back
    assert len(seen) == 2 and all(np.isfinite(seen))  # the steps before the bad one


def test_losses_read_back_in_groups_reach_on_step_in_order():
    def run(sync_every):
        seen = []
        with mock.patch.object(engine, "loss_sync_every", lambda device: sync_every):
            out = engine.train_one_epoch(_loop(_net(), _loader(), 2, lr=1e-3), 0,
                                         on_step=seen.append)
        return seen, out

    each, out_each = run(1)
    grouped, out_grouped = run(3)
    assert len(each) == len(_loader()) and grouped == each and out_grouped == out_each


def test_seeded_training_is_deterministic_on_cpu():
    def run():
        runtime.seed_everything(3)
        net = ResNet9(ResNet9Config(width_multiplier=0.125))
        engine.fit(_loop(net, _loader(), 2, lr=1e-3))
        return net.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ema_decay_warms_up_then_holds():
    from resnet9.recipe import ema as make_ema
    net = nn.Linear(1, 1, bias=False)
    ema = make_ema(net, 0.5)
    expected = None
    for n in range(12):  # update n (0-based) copies when n == 0, else d = min(0.5, (1+n)/(10+n))
        with torch.no_grad():
            net.weight.fill_(float(n + 1))
        ema.update_parameters(net)
        d = min(0.5, (1 + n) / (10 + n))
        expected = float(n + 1) if n == 0 else d * expected + (1 - d) * (n + 1)
        assert ema.module.weight.item() == pytest.approx(expected)
    assert expected != 12.0  # from update 8 on the decay is 0.5: it lags the weights


def test_ema_weights_differ_from_the_raw_weights_and_are_the_ones_evaluated():
    from resnet9.recipe import ema as make_ema

    net, loader = _net(), _loader()
    ema = make_ema(net, 0.9)
    loop = _loop(net, loader, 2, lr=1e-3, max_lr=1e-2, ema=ema)
    assert loop.evaluated is ema.module and loop.stepped is net
    result = engine.fit(loop)
    raw, avg = net.state_dict(), ema.module.state_dict()
    assert not torch.allclose(raw["fc.weight"], avg["fc.weight"])
    assert not torch.allclose(raw["prep.1.running_mean"], avg["prep.1.running_mean"])
    loss, acc = engine.score(*engine.predict(ema.module, loader, CPU))
    assert result.history[-1].test_loss == pytest.approx(loss)
    raw_loss, _ = engine.score(*engine.predict(net, loader, CPU))
    assert raw_loss != pytest.approx(loss)


def test_no_weight_decay_on_bn_and_bias(committed_params_file):
    from resnet9 import params
    from resnet9.recipe import optimizer

    recipe = params.load("recipe", path=committed_params_file).model_copy(
        update={"weight_decay": 5e-4, "decay_bn_and_bias": False})
    opt = optimizer(_net(), 1e-3, recipe)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and all(p.ndim == 4 or p.ndim == 2
                                                    for p in decayed["params"])
    assert plain["weight_decay"] == 0 and all(p.ndim == 1 for p in plain["params"])
    assert len(decayed["params"]) == 9  # 8 convolutions and the FC weight


def test_adamw_decays_the_weights_apart_from_the_gradient(committed_params_file):
    """recipe.optimizer adamw: torch's AdamW, whose decay (Loshchilov & Hutter) shrinks a
    weight whose gradient is zero by lr x decay, where Adam's L2 term would move it by ~lr."""
    from resnet9 import params
    from resnet9.recipe import optimizer

    recipe = params.load("recipe", path=committed_params_file).model_copy(
        update={"optimizer": "adamw", "weight_decay": 0.1, "decay_bn_and_bias": False})
    weight = nn.Parameter(torch.ones(2, 2))
    bias = nn.Parameter(torch.ones(2))
    holder = nn.Module()
    holder.weight, holder.bias = weight, bias
    opt = optimizer(holder, 0.01, recipe)
    assert isinstance(opt, torch.optim.AdamW)
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    opt.step()
    assert torch.allclose(weight, torch.full((2, 2), 1 - 0.01 * 0.1))  # decoupled decay only
    assert torch.equal(bias, torch.ones(2))  # 1-D: no decay with decay_bn_and_bias false


def test_a_skipped_fp16_step_advances_the_schedule_without_a_warning(recwarn):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # small: fp16 is slow on a CPU
    loop = _loop(net, _loader(), 2)
    loop.precision = Precision("fp16", "cpu", init_scale=2.0**40)  # the first steps overflow
    engine.train_one_epoch(loop, 0)
    assert loop.precision.scaler.get_scale() < 2.0**40  # steps were skipped ...
    assert loop.scheduler.last_epoch == len(_loader())  # ... and the schedule advanced anyway
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_fit_calls_each_callback_in_order_after_each_epoch():
    calls = []
    first = lambda epoch, result: calls.append(("first", epoch, len(result.history)))  # noqa: E731
    second = lambda epoch, result: calls.append(("second", epoch, len(result.history)))  # noqa: E731
    engine.fit(_loop(_net(), _loader(), 2), callbacks=[first, second], show=False)
    assert calls == [("first", 0, 1), ("second", 0, 1), ("first", 1, 2), ("second", 1, 2)]
