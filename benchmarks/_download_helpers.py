"""Helpers for bench_download.py: distinct real-photo JPEGs, and a local image server.

The photos are the real ones scikit-image and scikit-learn ship (no network): each benchmark
image is a random crop / flip / brightness change of one of them, scaled so its long side is
640 px (Flickr's ``url_z`` size) and saved as a quality-90 JPEG. Deterministic for a seed.

Run as a script, this module is the image server: it loads a folder of JPEGs into memory and
serves them from a multi-threaded HTTP/1.1 server (keep-alive for clients that ask for it) on
127.0.0.1, in its own process so it does not share a GIL with the client being measured.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

_SKIMAGE = ("chelsea", "astronaut", "coffee", "rocket", "hubble_deep_field",
            "immunohistochemistry", "retina", "camera", "moon", "coins", "brick", "grass",
            "gravel")
_SKLEARN = ("china.jpg", "flower.jpg")
LONG_SIDE = 640


def source_photos() -> list[Image.Image]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(getattr(skdata, name)()) for name in _SKIMAGE]
    photos += [Image.fromarray(load_sample_image(name)) for name in _SKLEARN]
    return [p.convert("RGB") for p in photos]


def variant(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (55-100% of each side), maybe mirrored, re-lit, long side 640 px."""
    w, h = photo.size
    cw, ch = (int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = photo.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.8, 1.2)))
    scale = LONG_SIDE / max(cw, ch)
    return im.resize((max(1, round(cw * scale)), max(1, round(ch * scale))),
                     Image.Resampling.LANCZOS)


def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` distinct JPEGs in ``folder`` (reused when already made with this seed)."""
    marker = folder / f".done-{count}-{seed}"
    paths = [folder / f"img_{i:06d}.jpg" for i in range(count)]
    if marker.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = source_photos()
    seen: set[str] = set()
    for path in paths:
        while True:
            buf = io.BytesIO()
            variant(photos[int(rng.integers(len(photos)))], rng).save(buf, "JPEG", quality=90)
            digest = hashlib.sha256(buf.getvalue()).hexdigest()
            if digest not in seen:
                break
        seen.add(digest)
        path.write_bytes(buf.getvalue())
    marker.touch()
    return paths


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # img2dataset opens a new connection per image


def serve(folder: Path, processes: int = 1) -> None:
    """Serve every *.jpg of ``folder`` from memory at /<name>; print the port, run forever.

    ``processes`` > 1 forks that many servers accepting on the one listening socket, so the
    server is not the bottleneck (one Python process is at 2 x 16 client threads).
    """
    files = {f"/{p.name}": p.read_bytes() for p in sorted(folder.glob("*.jpg"))}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the client says Connection: close
        disable_nagle_algorithm = True  # else header and body writes wait on delayed ACKs

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = _Server(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    children = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:  # a child: serve on the inherited socket until the parent ends it
            try:
                httpd.serve_forever()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    httpd.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
