"""Warm queries over HTTP against a running `clipsearch serve`, beside the cold CLI query.

    python benchmarks/bench_serve.py [--vectors 10000] [--queries 200] [--against main]

An index of --vectors synthetic unit vectors for ViT-B-32 (random init, the
compute of the real model) is served by `clipsearch serve` in its own process.
Reported in one run, for this checkout and for --against (another revision,
served from a temporary git worktree, same index): warm HTTP latency p50/p95
with one client and with 4 concurrent clients, queries/s with 4 clients, one
client's text-search p50/p95 while another uploads real phone photos (search by
example image) in a loop, and the `clipsearch query` process when the server
answers for it; once, the cold `clipsearch query` process without a server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, ROOT, cli, median_seconds, photo_set, vit_b_32_dir


def served_index(count: int) -> Path:
    from search import Library, ModelSpec

    folder = CACHE / f"serve-{count}"
    if (folder / "catalog.sqlite").exists():
        return folder
    lib = Library.open(str(folder), ModelSpec.create(f"local-dir:{vit_b_32_dir()}", None),
                       create=True)
    meta = lib._session.identity_meta()  # loads the model: the identity it records
    vectors = np.random.default_rng(0).normal(size=(count, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = lib._catalog
    with catalog.transaction():
        for i, vector in enumerate(vectors):
            catalog.put_file(f"/photos/{i:07d}.jpg", 1, 1, f"fp{i}", vector, None)
        catalog.record_model(meta, 512)
        catalog.bump_generation()
    lib.query(["warm-up"], k=10)  # saves the FAISS file and the traced text tower
    lib.close()
    return folder


def ask(url: str, i: int) -> float:
    query = urllib.parse.urlencode({"q": f"a photo of thing number {i}", "k": 10})
    start = time.perf_counter()
    with urllib.request.urlopen(f"{url}/api/search?{query}", timeout=30) as response:
        json.load(response)
    return time.perf_counter() - start


def upload(client: Any, url: str, image: bytes) -> None:
    """One search by example image (a multipart upload) through an httpx client."""
    answer = client.post(f"{url}/api/search", data={"k": "10"},
                         files={"image": ("photo.jpg", image, "image/jpeg")})
    answer.raise_for_status()


def while_uploading(url: str, queries: int, images: list[bytes]) -> dict[str, float]:
    """Text-search latencies of one client while another uploads `images` in a loop."""
    import httpx

    stop = threading.Event()
    uploaded: list[float] = []

    def upload_loop() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                start = time.perf_counter()
                upload(client, url, images[len(uploaded) % len(images)])
                uploaded.append(time.perf_counter() - start)

    uploader = threading.Thread(target=upload_loop)
    uploader.start()
    try:
        while not uploaded:
            time.sleep(0.05)
        began = time.perf_counter()
        texts = sorted(ask(url, 20_000 + i) for i in range(queries))
        seconds = time.perf_counter() - began
        count = len(uploaded)
    finally:
        stop.set()
        uploader.join()
    return {"p50up": texts[len(texts) // 2], "p95up": texts[int(len(texts) * 0.95) - 1],
            "uploads": count / seconds, "upload_p50": sorted(uploaded)[len(uploaded) // 2]}


def measure(command: list[str], index: Path, queries: int,
            images: list[bytes]) -> dict[str, float]:
    """Serve ``index`` with ``command`` (a checkout's cli.py), then time warm queries."""
    server = subprocess.Popen([*command, "serve", "--index", str(index), "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    state = index / "serve.json"
    try:
        while not state.exists():
            if server.poll() is not None:
                raise SystemExit(f"serve ended: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.1)
        url = json.loads(state.read_text())["url"]
        for i in range(10):
            ask(url, -i)  # warm-up
        # An upload needs the model itself: once it answers, the model has loaded (text
        # queries meanwhile go through the ONNX text tower, beside the loading model).
        import httpx

        with httpx.Client(timeout=120) as client:
            upload(client, url, images[0])
        one = sorted(ask(url, i) for i in range(queries))
        per_client = queries // 4
        many: list[float] = []
        start = time.perf_counter()
        clients = [threading.Thread(target=lambda c=c: many.extend(
            ask(url, 10_000 * c + i) for i in range(per_client))) for c in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        rate = 4 * per_client / (time.perf_counter() - start)
        many.sort()
        uploading = while_uploading(url, queries, images)
        via_server = median_seconds([*command, "query", "a dog", "--index", str(index)], 5)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    return {"p50": one[len(one) // 2], "p95": one[int(len(one) * 0.95) - 1],
            "p50x4": many[len(many) // 2], "p95x4": many[int(len(many) * 0.95) - 1],
            "rate": rate, "via_server": via_server, **uploading}


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """``revision`` of this repository in a temporary git worktree (removed afterwards)."""
    folder = Path(tempfile.mkdtemp(prefix="clipsearch-bench-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder),
                    revision], check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
                       check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--against", default="main",
                        help="git revision to compare with, served from a temporary worktree")
    args = parser.parse_args()
    index = served_index(args.vectors)
    images = [path.read_bytes() for path in sorted(photo_set(8).glob("*.jpg"))]
    cold = median_seconds(cli("query", "a dog", "--index", str(index)), 5)
    rows = {"this checkout": measure(cli(), index, args.queries, images)}
    with checkout(args.against) as other:
        rows[args.against] = measure([sys.executable, str(other / "cli.py")], index,
                                     args.queries, images)
    print(f"{args.vectors} vectors, ViT-B-32 (random init), this machine's cores, "
          f"{args.queries} queries per figure")
    print(f"cold `clipsearch query` process, no server (median of 5): {cold:.2f} s")
    print(f"{'server':<16} {'1 client p50':>13} {'p95':>8} {'4 clients p50':>14} {'p95':>8} "
          f"{'q/s':>6} {'query via server':>17}")
    for name, r in rows.items():
        print(f"{name:<16} {1000 * r['p50']:>10.1f} ms {1000 * r['p95']:>5.1f} ms "
              f"{1000 * r['p50x4']:>11.1f} ms {1000 * r['p95x4']:>5.1f} ms {r['rate']:>6.0f} "
              f"{r['via_server']:>15.2f} s")
    print("one client's text searches while another uploads 3-16 MP photos in a loop:")
    print(f"{'server':<16} {'p50':>9} {'p95':>9} {'uploads/s':>10} {'upload p50':>11}")
    for name, r in rows.items():
        print(f"{name:<16} {1000 * r['p50up']:>6.1f} ms {1000 * r['p95up']:>6.1f} ms "
              f"{r['uploads']:>10.1f} {1000 * r['upload_p50']:>8.0f} ms")


if __name__ == "__main__":
    main()
