import pytest
import torch

from resnet9 import export
from resnet9.model import ResNet9, ResNet9Config, count_parameters


def test_spec_network_has_6573130_parameters():
    assert count_parameters(ResNet9()) == 6_573_130


def test_convolutions_have_no_bias():
    convs = [m for m in ResNet9().modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8
    assert all(c.bias is None for c in convs)


def test_layer_output_shapes_for_a_32x32_input():
    net = ResNet9().eval()
    shapes = {}
    for name in ("prep", "layer1", "layer2", "layer3", "pool", "fc"):
        getattr(net, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert shapes == {
        "prep": (2, 64, 32, 32),
        "layer1": (2, 128, 16, 16),
        "layer2": (2, 256, 8, 8),
        "layer3": (2, 512, 4, 4),
        "pool": (2, 512, 1, 1),
        "fc": (2, 10),
    }
    assert out.shape == (2, 10)


def test_residual_layers_add_the_resblock_to_the_conv_output():
    net = ResNet9(ResNet9Config(width_multiplier=0.125)).eval()
    x = torch.randn(1, 8, 32, 32)
    with torch.no_grad():
        h = net.layer1.conv(x)
        assert torch.allclose(net.layer1(x), h + net.layer1.res.res(h))


@pytest.mark.parametrize("width, channels", [(0.25, (16, 32, 64, 128)), (0.5, (32, 64, 128, 256))])
def test_width_multiplier_scales_channels(width, channels):
    net = ResNet9(ResNet9Config(width_multiplier=width))
    assert net.prep[0].out_channels == channels[0]
    assert net.layer3.conv[0].out_channels == channels[3]
    assert net.fc.in_features == channels[3]


def test_network_returns_logits_not_probabilities():
    net = ResNet9(ResNet9Config(width_multiplier=0.25)).eval()
    with torch.no_grad():
        out = net(torch.randn(4, 3, 32, 32))
    assert not torch.allclose(out.sum(1), torch.ones(4))
    assert (out < 0).any()


def test_logit_scale_multiplies_the_logits_and_adds_no_parameter():
    torch.manual_seed(0)
    plain = ResNet9(ResNet9Config(width_multiplier=0.125)).eval()
    scaled = ResNet9(ResNet9Config(width_multiplier=0.125, logit_scale=0.125)).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), plain(x) * 0.125)
    assert count_parameters(ResNet9(ResNet9Config(logit_scale=0.125))) == 6_573_130
    torch.testing.assert_close(export.script(scaled)(x), scaled(x))  # as the export stage
