"""Every CIFAR model of every shipped config trains at its shipped hyperparameters without
diverging (Caffe's xavier initialisation; He made GoogLeNet reach NaN in 4 steps)."""

import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from training.models import create_model
from training.models_cifar import GoogLeNetCifar, LeNet

CONFIGS = sorted(Path(__file__).parents[2].joinpath("pipelines", "configs").glob("*.toml"))
SHAPES = {"cifar10": (3, 32), "digits": (1, 8)}   # (channels, image size) of each dataset


def shipped_models() -> list[tuple[str, str, int, int, float, float, float]]:
    """(config, model, channels, image size, lr, momentum, weight decay), one per distinct
    model and setting; external (timm/torchvision) models are not the paper's CIFAR ones."""
    cases: dict[tuple, str] = {}
    for path in CONFIGS:
        config = tomllib.loads(path.read_text())
        dataset = config["dataset"]["name"]
        if dataset not in SHAPES:
            continue
        channels, size = SHAPES[dataset]
        size = config["dataset"].get("image_size", size)
        train = config["train"]
        for experiment in config.get("experiments", []):
            for model in experiment["models"]:
                key = (model, channels, size, train["lr"], train.get("momentum", 0.9),
                       train.get("weight_decay", 5e-4))
                cases.setdefault(key, path.stem)
    return sorted((stem, *key) for key, stem in cases.items())


CASES = shipped_models()


def test_the_shipped_configs_name_the_paper_models():
    names = {case[1] for case in CASES}
    assert {"lenet", "bn-lenet", "gn-lenet", "googlenet", "resnet20", "alexnet"} <= names


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_trains_50_iterations_at_the_shipped_lr_without_diverging(case):
    _, name, channels, size, lr, momentum, weight_decay = case
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(0)
    batch = 8 if name.endswith(("googlenet", "resnet20")) else 16   # keep the test quick
    for it in range(50):
        x = torch.randn(batch, channels, size, size, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss), f"{name}: loss {loss.item()} at iteration {it}"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_weights_follow_caffes_xavier_filler():
    model = LeNet(10)
    conv = model.features[0]
    bound = (3.0 / conv.weight[0].numel()) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.all(model.classifier.bias == 0)
    googlenet = GoogLeNetCifar(10)
    assert torch.all(googlenet.features[0].bias == 0.2)      # bvlc_googlenet's conv bias
