"""Loading a hub classifier without network fails at once, with no retry (clean/classifiers.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flickr_mammal.clean import classifiers
from flickr_mammal.clean.classifiers import ClassifierUnavailable, load_classifier


class _Hub:
    """A hub that answers every request 503 (the hub client retries those) and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hub.requests += 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_Hub]:
    server = _Hub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any retry of the hub client fails the test (it sleeps before each retry)."""
    from huggingface_hub.utils import _http

    def retried(seconds: float) -> None:
        raise AssertionError(f"the hub client retried (sleep {seconds}s)")

    monkeypatch.setattr(_http.time, "sleep", retried)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends


def test_unreachable_hub_fails_with_one_line_and_no_retry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_backoff: None) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ClassifierUnavailable, match="unreachable") as err:
        load_classifier("pnasnet5large")
    assert "\n" not in str(err.value) and "--classifier-weights" in str(err.value)


def test_failing_hub_is_asked_once(hub: _Hub, no_backoff: None) -> None:
    with pytest.raises(ClassifierUnavailable, match="answered 503"):
        load_classifier("pnasnet5large")
    assert hub.requests == 1


def test_offline_mode_asks_nothing(hub: _Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ClassifierUnavailable, match="HF_HUB_OFFLINE"):
        load_classifier("pnasnet5large")
    assert hub.requests == 0


def test_cached_weights_load_without_the_hub(hub: _Hub, tmp_path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    cfg = timm.models.get_pretrained_cfg("resnet10t")
    repo = cfg.hf_hub_id.partition("@")[0]
    snapshot = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(commit)
    files = snapshot / "snapshots" / commit
    files.mkdir(parents=True)
    torch.manual_seed(0)
    weights = timm.create_model("resnet10t", pretrained=False).state_dict()
    save_file(weights, str(files / "model.safetensors"))
    model = load_classifier("resnet10t")
    assert hub.requests == 0
    assert torch.equal(model.state_dict()["fc.weight"], weights["fc.weight"])
    assert classifiers._hub_cached_file(cfg.hf_hub_id, None) == files / "model.safetensors"
