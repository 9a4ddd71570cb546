"""A build in object storage against the same build on the local disk, in one run.

An S3-compatible server on localhost (moto's ThreadedMotoServer, as the tests use) holds the
source and the output; the baseline builds the same source from and to the local disk. Both
run on this machine's cores with the same settings; the ratio is copies/s in the store over
copies/s on the disk (median of the rounds). A real store adds network latency the local
server has not, which the requests a worker keeps in flight (storage.IN_FLIGHT) hide.
Also: the peak memory of listing a folder of many objects, streamed (balancer.common.storage)
against s3fs' whole listing.

    python bench/store_speed.py [--originals 200] [--rounds 3] [--objects 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from balancer import BuildSettings, build
from balancer.common.parallel import RunOptions
from balancer.common.storage import location
from bench.corpus import make_corpus

SETTINGS = BuildSettings(nmin=200, transforms="crop,rotate,cutout,width,zoom")


def serve() -> tuple[object, dict]:
    """The local S3 server, and the environment that reaches it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    return server, env


def timed(src, out, run: RunOptions) -> tuple[float, int]:
    """(seconds, copies written) of one build."""
    start = time.perf_counter()
    result = build(src, out, SETTINGS, run=run)
    copies = sum(c["copies"] for c in result.record["counts"].values())
    return time.perf_counter() - start, copies


def listing_peak(folder: str, streamed: bool) -> float:
    """MiB at the peak while a folder's entries are listed."""
    root = location(folder)
    tracemalloc.start()
    if streamed:
        names = root.entries()
    else:
        names = root.fs.ls(root.path, detail=True)
        root.fs.invalidate_cache(root.path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(names) > 0
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=200, help="source images (3 classes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=20000, help="for the listing's memory")
    args = parser.parse_args()
    server, _ = serve()
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bench")
    work = Path(tempfile.mkdtemp(prefix="store-speed-"))
    n = args.originals
    src = make_corpus(work / "src", sizes=[n // 2, n // 3, n - n // 2 - n // 3])
    fs.put(f"{src}/", "bench/src", recursive=True)
    run = RunOptions(progress=False)
    disk, store = [], []
    for r in range(args.rounds):
        seconds, copies = timed(src, work / f"out-{r}", run)
        disk.append(copies / seconds)
        seconds, copies = timed("s3://bench/src", f"s3://bench/out-{r}", run)
        store.append(copies / seconds)
        shutil.rmtree(work / f"out-{r}")
    d, s = statistics.median(disk), statistics.median(store)
    print(
        f"{copies} copies of {n} originals (500x375 JPEG), {run.workers or os.cpu_count()} workers"
    )
    print(f"local disk:            {d:7.1f} copies/s")
    print(f"S3 (local server):     {s:7.1f} copies/s   {s / d:.2f} x the disk")
    names = {f"bench/many/{i:07d}.jpg": b"x" for i in range(args.objects)}
    fs.pipe(names)
    streamed = listing_peak("s3://bench/many", streamed=True)
    whole = listing_peak("s3://bench/many", streamed=False)
    print(
        f"listing {args.objects:,} objects: streamed {streamed:.1f} MiB peak, "
        f"s3fs' whole listing {whole:.1f} MiB ({whole / streamed:.1f} x)"
    )
    shutil.rmtree(work)
    server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
