"""Model registry: names, norms, output shapes, parameter counts against the paper's prototxts."""

import pytest
import torch
from torch import nn

from training.models import check_model_name, create_model, has_batch_norm, list_models, model_spec
from training.models_cifar import pool_size


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_has_the_paper_models():
    names = list_models()
    for name in ("lenet", "bn-lenet", "gn-lenet", "alexnet", "googlenet", "resnet20"):
        assert name in names


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="gn-lenet"):
        create_model("vgg-imaginary", num_classes=10)


# Hand-computed from the authors' Caffe prototxts (3x32x32 input, 10 classes).
@pytest.mark.parametrize("name,expected", [
    ("lenet", 3 * 32 * 25 + 32 + 32 * 32 * 25 + 32 + 32 * 64 * 25 + 64 + 1024 * 10 + 10),
    ("bn-lenet", 3 * 32 * 25 + 32 * 32 * 25 + 32 * 64 * 25 + 1024 * 10 + 10),
    ("gn-lenet", 3 * 32 * 25 + 32 * 32 * 25 + 32 * 64 * 25 + 1024 * 10 + 10),
    ("alexnet", 765_738),
    ("resnet20", 280_938),
])
def test_parameter_counts_match_the_prototxts(name, expected):
    assert _params(create_model(name, num_classes=10)) == expected


def test_googlenet_is_googlenet_sized_with_a_1x1_last_map():
    model = create_model("googlenet", num_classes=10).eval()
    assert 5.9e6 < _params(model) < 6.1e6     # GoogLeNet's ~6M minus the 1000-way head
    assert model.features[:-1](torch.zeros(1, 3, 32, 32)).shape == (1, 1024, 1, 1)


@pytest.mark.parametrize("name", ["lenet", "bn-lenet", "gn-lenet", "alexnet", "googlenet",
                                  "resnet20", "gn-resnet20"])
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 16), (1, 8)])
def test_forward_shape_on_cifar_and_digits_sizes(name, channels, size):
    model = create_model(name, num_classes=7, in_channels=channels, image_size=size)
    out = model(torch.randn(4, channels, size, size))
    assert out.shape == (4, 7)
    out.sum().backward()   # trainable end to end


def test_lenet_norm_variants_follow_the_paper():
    bn = create_model("bn-lenet", num_classes=10)
    gn = create_model("lenet", num_classes=10, norm="gn")
    plain = create_model("lenet", num_classes=10)
    bns = [m for m in bn.modules() if isinstance(m, nn.BatchNorm2d)]
    gns = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert len(bns) == 3 and all(not m.affine for m in bns)
    assert len(gns) == 3 and all(m.num_groups == 2 and not m.affine for m in gns)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in plain.modules()) == 2
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in plain.modules())


def test_resnet20_defaults_to_batchnorm_and_gn_prefix_switches():
    assert any(isinstance(m, nn.BatchNorm2d) for m in create_model("resnet20", num_classes=10)
               .modules())
    gn = create_model("gn-resnet20", num_classes=10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert model_spec("gn-resnet20").name == "resnet20"
    assert model_spec("alexnet").lr == 0.001


def test_conflicting_prefix_and_norm_raise():
    with pytest.raises(ValueError, match="already fixes"):
        create_model("bn-lenet", num_classes=10, norm="gn")
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("lenet", num_classes=10, norm="ln")


def test_seed_makes_identical_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("lenet", num_classes=10, seed=5)
    after = torch.rand(1)
    b = create_model("lenet", num_classes=10, seed=5)
    assert before == after
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_caffe_ceil_mode_pool_sizes():
    assert pool_size(32, 3, 2) == 16    # floor mode would give 15
    assert pool_size(8, 3, 2) == 4
    assert pool_size(2, 3, 2) == 1


def test_timm_and_torchvision_models_by_name():
    timm_model = create_model("timm:resnet18", num_classes=5, in_channels=1, norm="gn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in timm_model.modules())
    assert timm_model(torch.randn(2, 1, 32, 32)).shape == (2, 5)
    tv = create_model("torchvision:googlenet", num_classes=5, in_channels=1).eval()
    assert tv(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    with pytest.raises(KeyError, match="resnet18"):
        create_model("torchvision:not_a_model", num_classes=5)


def test_norm_prefix_applies_to_timm_and_torchvision_names():
    gn = create_model("gn-timm:resnet18", num_classes=5, in_channels=1)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in gn.modules())
    bn = create_model("bn-timm:resnet18", num_classes=5, in_channels=1)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    with pytest.raises(ValueError, match="already fixes"):
        create_model("gn-timm:resnet18", num_classes=5, norm="bn")
    with pytest.raises(KeyError, match="unknown model 'bn-vgg-imaginary'"):
        create_model("bn-vgg-imaginary", num_classes=10)
    with pytest.raises(KeyError, match="unknown model 'timm:resnet18'"):
        model_spec("timm:resnet18")


def test_check_model_name_accepts_what_create_model_builds():
    for name in ("gn-lenet", "BN-LeNet", "resnet20", "timm:resnet18", "gn-timm:resnet18",
                 "torchvision:googlenet", "bn-torchvision:resnet18"):
        check_model_name(name)           # no KeyError, and nothing is built or downloaded
    for bad in ("gn-lenett", "gn-", "resnet", "lenet:timm"):
        with pytest.raises(KeyError, match=f"unknown model '{bad}'; known:"):
            check_model_name(bad)


def test_has_batch_norm_tells_by_the_name():
    assert has_batch_norm("bn-lenet") and has_batch_norm("resnet20")
    assert has_batch_norm("gn-resnet20") is False and has_batch_norm("lenet") is False
    assert has_batch_norm("bn-timm:resnet18") and has_batch_norm("gn-timm:resnet18") is False
    assert has_batch_norm("timm:resnet18") is None        # known once built
