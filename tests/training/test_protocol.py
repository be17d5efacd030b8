"""The authors' protocol (training.protocol): the per-layer lr/decay multipliers of their prototxts,
applied alike by every algorithm, and Caffe's BatchNorm moving average; each against a hand
computation."""

import pytest
import torch
from torch import nn

from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.functional import ParamLayout
from training.models import create_model
from training.norm import CaffeBatchNorm, use_caffe_moving_average
from training.protocol import ParamMultipliers, Protocol, model_family


def table(name: str) -> dict[str, tuple[float, float]]:
    model = create_model(name, num_classes=10)
    return {n: (lr, decay) for n, lr, decay in ParamMultipliers.of(model).table}


# --- the rule tables, against the authors' 5parts / geoanimal prototxts -------------------------

def test_lenet_biases_lr_x2_and_ip1_decay_x250():
    t = table("lenet")
    assert t["features.0.bias"] == t["features.5.bias"] == (2.0, 1.0)    # conv1, conv2
    assert t["features.10.bias"] == (1.0, 1.0)                            # conv3: no param spec
    assert t["features.0.weight"] == t["features.10.weight"] == (1.0, 1.0)
    assert t["classifier.weight"] == (1.0, 250.0)                         # ip1
    assert t["classifier.bias"] == (2.0, 0.0)


@pytest.mark.parametrize("name", ["bn-lenet", "gn-lenet"])
def test_normalised_lenets_only_stop_decaying_the_ip1_bias(name):
    t = table(name)
    assert t.pop("classifier.bias") == (1.0, 0.0)
    assert set(t.values()) == {(1.0, 1.0)}


def test_resnet20_decays_conv_and_fc_weights_twice_and_never_biases():
    t = table("resnet20")
    assert t["features.0.weight"] == t["classifier.weight"] == (1.0, 2.0)
    assert t["features.0.bias"] == t["classifier.bias"] == (1.0, 0.0)
    assert t["features.1.weight"] == t["features.1.bias"] == (1.0, 1.0)   # BN scale/shift
    assert table("gn-resnet20") == t


def test_alexnet_doubles_every_bias_lr_but_the_last_layers():
    t = table("alexnet")
    assert t["features.0.bias"] == t["classifier.0.bias"] == (2.0, 1.0)
    assert t["classifier.3.bias"] == t["classifier.3.weight"] == (1.0, 1.0)


def test_googlenet_and_external_models_double_bias_lr_without_decay():
    t = table("googlenet")
    assert {v for n, v in t.items() if n.endswith("bias")} == {(2.0, 0.0)}
    assert {v for n, v in t.items() if n.endswith("weight")} == {(1.0, 1.0)}
    external = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert model_family(external) == "generic"
    got = {n: (lr, d) for n, lr, d in ParamMultipliers.of(external).table}
    assert got == {"0.weight": (1.0, 1.0), "0.bias": (2.0, 0.0), "1.weight": (1.0, 1.0),
                   "1.bias": (1.0, 1.0), "3.weight": (1.0, 1.0), "3.bias": (2.0, 0.0)}


def test_vectors_follow_the_engines_flat_layout():
    model = create_model("lenet", num_classes=10, in_channels=1, image_size=8)
    mult, layout = ParamMultipliers.of(model), ParamLayout.of(model)
    assert mult.lr.shape == mult.decay.shape == (layout.size,)
    lr, decay = layout.views(mult.lr), layout.views(mult.decay)
    assert torch.all(decay["classifier.weight"] == 250) and torch.all(lr["classifier.bias"] == 2)
    assert torch.all(lr["features.0.weight"] == 1) and torch.all(decay["classifier.bias"] == 0)


def test_bad_settings_say_how_to_fix_them():
    with pytest.raises(ValueError, match="layer_multipliers must be one of"):
        Protocol(layer_multipliers="prototxt")
    with pytest.raises(ValueError, match="bn_average must be one of"):
        TrainConfig(bn_average="torch")
    with pytest.raises(ValueError, match="bn_fraction"):
        TrainConfig(bn_fraction=1.0)
    with pytest.raises(ValueError, match="unknown model family"):
        ParamMultipliers.of(nn.Linear(2, 2), "vgg")


# --- one SGD step by hand, for every algorithm ----------------------------------------------

# values: a weight with decay x250, a bias with lr x2 and no decay, a bias with lr x2, decay x1
LR_MULT, DECAY_MULT = torch.tensor([1.0, 2.0, 2.0]), torch.tensor([250.0, 0.0, 1.0])
P0 = torch.tensor([1.0, 2.0, 3.0])
GRADS = torch.tensor([[1.0, 1.0, 2.0], [3.0, 0.0, 0.0]])


def step_ctx() -> StepContext:
    return StepContext(iteration=0, lr=0.1, lr_factor=1.0, num_partitions=2, momentum=0.9,
                       weight_decay=0.001, lr_mult=LR_MULT, decay_mult=DECAY_MULT)


def one_step(name: str, **params) -> torch.Tensor:
    algorithm = create_algorithm(name, **params)
    weights = P0.repeat(2, 1)
    algorithm.apply(algorithm.init(weights), weights, GRADS.clone(), step_ctx(), LocalComm(2))
    return weights


# mean gradient [2, 0.5, 1]; decayed: + 0.001 * [250*1, 0*2, 1*3] = [2.25, 0.5, 1.003];
# step 0.1 * [1, 2, 2] * that = [0.225, 0.1, 0.2006]
SYNCED = torch.tensor([0.775, 1.9, 2.7994])


@pytest.mark.parametrize(("name", "params"), [
    ("bsp", {}),
    ("gaia", {"t0": 0.0}),
    ("fedavg", {"iter_local": 1, "local_lr": "global"}),
    ("dgc", {"sparsity": 0.0, "warmup_epoch_iterations": 0}),
    ("dgc", {"sparsity": 0.0, "warmup_epoch_iterations": 0, "residual": "raw"}),
])
def test_one_synced_step_by_hand(name, params):
    assert torch.allclose(one_step(name, **params), SYNCED.repeat(2, 1), atol=1e-6)


def test_fedavg_local_step_by_hand():
    # per partition: [1, 1, 2] + [0.25, 0, 0.003] and [3, 0, 0] + [0.25, 0, 0.003], times
    # lr/N = 0.05 and [1, 2, 2]
    got = one_step("fedavg", iter_local=2)
    want = torch.tensor([[1 - 0.0625, 2 - 0.1, 3 - 0.2003], [1 - 0.1625, 2.0, 3 - 0.0003]])
    assert torch.allclose(got, want, atol=1e-6)


def test_without_multipliers_the_step_is_the_plain_one():
    ctx = StepContext(iteration=0, lr=0.1, lr_factor=1.0, num_partitions=2, momentum=0.9,
                      weight_decay=0.001)
    bsp, weights = create_algorithm("bsp"), P0.repeat(2, 1)
    bsp.apply(bsp.init(weights), weights, GRADS.clone(), ctx, LocalComm(2))
    assert torch.allclose(weights[0], P0 - 0.1 * (GRADS.mean(0) + 0.001 * P0))


def test_the_trainer_hands_the_models_multipliers_to_the_algorithm():
    def lenet() -> nn.Module:
        return create_model("lenet", num_classes=10, in_channels=1, image_size=8)

    gen = torch.Generator().manual_seed(0)
    train = [PartitionData(torch.randn(4, 1, 8, 8, generator=gen), torch.tensor([0, 1, 2, 3]))
             for _ in range(2)]
    cfg = TrainConfig(iterations=10, batch_size=8, lr=0.05, eval_every=10, progress=False,
                      layer_multipliers="caffe")
    trainer = Trainer(lenet, create_algorithm("bsp"), train, train[0], cfg)
    want = ParamMultipliers.of(lenet())
    assert torch.equal(trainer.context().lr_mult, want.lr)
    assert torch.equal(trainer.context().decay_mult, want.decay)
    p0 = trainer.stack.params[0].clone()
    x, y = next(trainer._batches)          # each batch is the whole partition
    grads = trainer.stack.gradients(x, y)   # LeNet has no buffers: no side effect
    trainer._batches = iter([(x, y)])
    trainer.step()
    step = 0.05 * want.lr * (grads.mean(0) + 5e-4 * want.decay * p0)
    assert torch.allclose(trainer.stack.params[0], p0 - step, atol=1e-6)
    assert not torch.allclose(trainer.stack.params[0],
                              p0 - 0.05 * (grads.mean(0) + 5e-4 * p0), atol=1e-6)


# --- Caffe's BatchNorm moving average -------------------------------------------------------

def caffe_average(batches: list[torch.Tensor], f: float = 0.999) -> torch.Tensor:
    """Caffe's own bookkeeping: S = f*S + x, C = f*C + 1, statistic S / C."""
    s, c = torch.zeros_like(batches[0]), 0.0
    for x in batches:
        s, c = f * s + x, f * c + 1
    return s / c


def test_running_statistics_after_two_batches_by_hand():
    bn = CaffeBatchNorm(1)
    bn(torch.tensor([[1.0], [3.0]]))       # mean 2, unbiased variance 2
    assert bn.running_mean.item() == 2.0 and bn.running_var.item() == 2.0   # weight 1: no pull to 0
    bn(torch.tensor([[5.0], [9.0]]))       # mean 7, unbiased variance 8
    assert bn.running_mean.item() == pytest.approx((0.999 * 2 + 7) / 1.999, rel=1e-6)
    assert bn.running_var.item() == pytest.approx((0.999 * 2 + 8) / 1.999, rel=1e-6)
    bn.eval()
    assert bn(torch.tensor([[4.50125]])).item() == pytest.approx(0.0, abs=1e-4)


def test_training_normalises_with_the_batch_like_any_batchnorm():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4)
    plain = nn.BatchNorm2d(3)
    nn.init.uniform_(plain.weight)
    caffe = use_caffe_moving_average(plain)   # a BN root: a new module, parameters kept
    assert isinstance(caffe, CaffeBatchNorm) and torch.equal(caffe.weight, plain.weight)
    assert torch.allclose(caffe(x), plain(x), atol=1e-6)
    assert not torch.allclose(caffe.running_mean, plain.running_mean)


def test_layers_it_cannot_swap_are_refused():
    with pytest.raises(ValueError, match="bn_average='pytorch'"):
        use_caffe_moving_average(nn.Sequential(nn.SyncBatchNorm(2)))


def bn_first() -> nn.Module:
    """A linear layer, then BatchNorm: the statistics its second batch sees depend on step 1."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 10))


@pytest.mark.parametrize("vectorize", [False, True])
def test_engine_running_mean_after_two_bsp_steps_by_hand(vectorize):
    gen = torch.Generator().manual_seed(1)
    train = [PartitionData(torch.randn(4, 1, 2, 2, generator=gen) * (k + 1) + k,
                           torch.tensor([0, 1, 2, 3])) for k in range(2)]
    cfg = TrainConfig(iterations=10, batch_size=8, lr=0.1, eval_every=10, progress=False,
                      bn_average="caffe", vectorize=vectorize)
    trainer = Trainer(bn_first, create_algorithm("bsp"), train, train[0], cfg)
    means, variances = [], []
    for _ in range(2):   # each batch is the whole partition; BSP averages over partitions
        linear = trainer.stack.layout.views(trainer.stack.params[0])
        hidden = [part.x.flatten(1) @ linear["1.weight"].T + linear["1.bias"] for part in train]
        means.append(torch.stack([h.mean(0) for h in hidden]).mean(0))
        variances.append(torch.stack([h.var(0) for h in hidden]).mean(0))
        trainer.step()
    assert torch.allclose(trainer.stack.buffers["2.running_mean"][0], caffe_average(means),
                          atol=1e-5)
    assert torch.allclose(trainer.stack.buffers["2.running_var"][0], caffe_average(variances),
                          atol=1e-5)


# --- where it is on -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10_alexnet", "cifar10_skewscout", "cifar10_tables",
                                  "flickr_mammal_continents"])
def test_the_paper_configs_train_with_the_authors_protocol(name):
    from training.study import load_study

    train = load_study(f"pipelines/configs/{name}.toml").train
    assert TrainConfig(**train).protocol == Protocol("caffe", "caffe")


def test_the_default_digits_study_keeps_pytorchs_conventions():
    from training.study import load_study

    assert TrainConfig(**load_study("pipelines/configs/default.toml").train).protocol == Protocol()
