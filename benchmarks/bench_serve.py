"""Warm queries over HTTP against a running `clipsearch serve`, beside the cold CLI query.

    python benchmarks/bench_serve.py [--vectors 10000] [--queries 200]

An index of --vectors synthetic unit vectors for ViT-B-32 (random init, the
compute of the real model) is served by `clipsearch serve` in its own process.
Reported in one run: the cold `clipsearch query` process without a server,
warm HTTP latency p50/p95 (one client), queries/s with 4 concurrent clients,
and the `clipsearch query` process when the server answers for it.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from common import CACHE, cli, median_seconds, vit_b_32_dir


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    index = served_index(args.vectors)
    query = cli("query", "a dog", "--index", str(index))
    cold = median_seconds(query, 5)
    server = subprocess.Popen(cli("serve", "--index", str(index), "--port", "0"),
                              stderr=subprocess.PIPE, text=True)
    state = index / "serve.json"
    try:
        while not state.exists():
            time.sleep(0.1)
        url = json.loads(state.read_text())["url"]
        for i in range(10):
            ask(url, -i)  # warm-up
        one = sorted(ask(url, i) for i in range(args.queries))
        per_client = args.queries // 4
        start = time.perf_counter()
        clients = [threading.Thread(target=lambda c=c: [ask(url, 10_000 * c + i)
                                                        for i in range(per_client)])
                   for c in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        rate = 4 * per_client / (time.perf_counter() - start)
        via_server = median_seconds(query, 5)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    print(f"{args.vectors} vectors, ViT-B-32 (random init), this machine's cores")
    print(f"cold `clipsearch query` process, no server (median of 5): {cold:.2f} s")
    print(f"warm HTTP /api/search, one client: p50 {1000 * one[len(one) // 2]:.1f} ms, "
          f"p95 {1000 * one[int(len(one) * 0.95) - 1]:.1f} ms ({args.queries} queries)")
    print(f"4 concurrent clients: {rate:.0f} queries/s")
    print(f"`clipsearch query` process answered by the server (median of 5): "
          f"{via_server:.2f} s ({cold / via_server:.1f}x faster than cold)")


if __name__ == "__main__":
    main()
