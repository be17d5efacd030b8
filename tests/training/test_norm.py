"""BatchNorm -> GroupNorm conversion: every BN flavour, learned affine kept, valid group counts."""

import copy
import warnings

import pytest
import timm
import torch
from timm.layers import BatchNormAct2d, GroupNormAct
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from training.models import create_model
from training.norm import batch_norm_names, convert_bn_to_gn, default_num_groups


class MyBatchNorm(nn.BatchNorm2d):
    """A user subclass: exact-type matchers (Opacus) miss it."""


def _bns(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def _standardized(n: int, c: int, groups: int, hw: int = 4) -> torch.Tensor:
    """Input whose every (sample, group) has mean 0 and biased variance 1 (GN leaves it alone)."""
    x = torch.randn(n, groups, c // groups * hw * hw, dtype=torch.float64)
    x = (x - x.mean(-1, keepdim=True)) / x.var(-1, unbiased=False, keepdim=True).sqrt()
    return x.reshape(n, c, hw, hw)


def test_default_num_groups_is_largest_divisor_up_to_32():
    assert default_num_groups(64) == 32
    assert default_num_groups(48) == 24
    assert default_num_groups(10) == 10
    assert default_num_groups(37) == 1      # prime above 32
    assert default_num_groups(12, max_groups=5) == 4


def test_learned_affine_is_preserved_exactly():
    bn = nn.BatchNorm2d(8, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2.0, 8))
        bn.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    bn.eval()      # running stats mean 0 / var 1: BN is the affine map x / sqrt(1 + eps) * w + b
    x = _standardized(3, 8, groups=4)
    expected = bn(x)
    gn = convert_bn_to_gn(copy.deepcopy(bn), num_groups=4)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 4
    torch.testing.assert_close(gn(x), expected, rtol=0, atol=1e-12)


def test_root_batchnorm_returns_a_new_module_with_dtype_mode_and_grad_flags():
    bn = nn.BatchNorm1d(6, eps=1e-3, dtype=torch.float64).eval()
    bn.weight.requires_grad_(False)
    gn = convert_bn_to_gn(bn)
    assert isinstance(gn, nn.GroupNorm) and gn is not bn
    assert gn.weight.dtype == torch.float64 and gn.eps == 1e-3 and not gn.training
    assert not gn.weight.requires_grad and gn.bias.requires_grad
    assert gn.num_groups == 6


def test_every_batchnorm_flavour_and_subclass_is_replaced():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), MyBatchNorm(16),
        nn.Sequential(nn.SyncBatchNorm(16), nn.BatchNorm2d(16, affine=False)),
        nn.Flatten(), nn.ModuleList([nn.BatchNorm1d(16)]),
    )
    bn3d = nn.BatchNorm3d(4)
    out = convert_bn_to_gn(model)
    assert out is model and not _bns(model)
    assert not model[2][1].affine                        # affine=False carried over
    assert isinstance(convert_bn_to_gn(nn.Sequential(bn3d))[0], nn.GroupNorm)


def test_channels_not_divisible_fall_back_with_one_warning():
    model = nn.Sequential(nn.BatchNorm2d(64), nn.BatchNorm2d(48), nn.BatchNorm2d(10))
    with pytest.warns(UserWarning, match=r"2 layer\(s\).*1 \(48 ch -> 24 groups\)"):
        convert_bn_to_gn(model, num_groups=32)
    assert [m.num_groups for m in model] == [32, 24, 10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = convert_bn_to_gn(nn.Sequential(nn.BatchNorm2d(48)))
    assert default[0].num_groups == 24


def test_shared_batchnorm_stays_shared():
    bn = nn.BatchNorm2d(4)
    model = nn.Sequential(bn, nn.ReLU(), bn)
    convert_bn_to_gn(model)
    assert model[0] is model[2] and isinstance(model[0], nn.GroupNorm)


def test_timm_batchnormact_keeps_activation_and_drop():
    layer = BatchNormAct2d(8, act_layer=nn.SiLU, drop_layer=nn.Dropout)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
    gn = convert_bn_to_gn(nn.Sequential(layer))[0]
    assert isinstance(gn, GroupNormAct)
    assert gn.act is layer.act and isinstance(gn.act, nn.SiLU) and gn.drop is layer.drop
    assert torch.equal(gn.weight, layer.weight)
    x = torch.randn(2, 8, 3, 3)
    expected = nn.functional.silu(nn.functional.group_norm(x, 8, layer.weight, layer.bias))
    torch.testing.assert_close(gn.eval()(x), expected)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_timm_models_are_fully_converted_and_run(name):
    model = timm.create_model(name, pretrained=False, num_classes=3)
    acts = sum(isinstance(m, BatchNormAct2d) for m in model.modules())
    params_before = sum(p.numel() for p in model.parameters())
    model = convert_bn_to_gn(model)
    assert not _bns(model)
    assert sum(isinstance(m, GroupNormAct) for m in model.modules()) == acts
    assert sum(p.numel() for p in model.parameters()) == params_before
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_bn_lenet_converted_with_two_groups_is_gn_lenet():
    converted = convert_bn_to_gn(create_model("bn-lenet", num_classes=10), num_groups=2)
    reference = create_model("gn-lenet", num_classes=10)
    assert str(converted) == str(reference)


def test_lazy_and_invalid_arguments_raise():
    with pytest.raises(ValueError, match="forward pass"):
        convert_bn_to_gn(nn.Sequential(nn.LazyBatchNorm2d()))
    with pytest.raises(ValueError, match="num_groups"):
        convert_bn_to_gn(nn.BatchNorm2d(4), num_groups=0)


def test_better_than_opacus_fix():
    """Opacus matches exact types, skips timm layers and drops the learned scale/shift."""
    validator = pytest.importorskip("opacus.validators").ModuleValidator
    model = nn.Sequential(nn.Conv2d(3, 8, 1), MyBatchNorm(8), nn.BatchNorm2d(8),
                          BatchNormAct2d(8))
    with torch.no_grad():
        model[2].weight.fill_(3.0)
    theirs = validator.fix(copy.deepcopy(model))
    ours = convert_bn_to_gn(copy.deepcopy(model))
    assert len(_bns(theirs)) == 2                       # subclass and timm layer left as BN
    assert not torch.equal(theirs[2].weight, model[2].weight)   # learned scale reset to 1
    assert not _bns(ours) and torch.equal(ours[2].weight, model[2].weight)
    assert isinstance(ours[3], GroupNormAct)


def test_batch_norm_names_are_every_batchnorm_flavours_values():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4),
                          nn.Sequential(MyBatchNorm(4, affine=False), BatchNormAct2d(4)),
                          nn.GroupNorm(2, 4))
    names = batch_norm_names(model)
    assert names.params == {"1.weight", "1.bias", "2.1.weight", "2.1.bias"}
    assert names.buffers == {f"{m}.{b}" for m in ("1", "2.0", "2.1")
                             for b in ("running_mean", "running_var", "num_batches_tracked")}
    assert not batch_norm_names(convert_bn_to_gn(model))
