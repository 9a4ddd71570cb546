"""A build in object storage against the same build on the local disk, in one run.

An S3-compatible server on localhost (moto's ThreadedMotoServer, as the tests use) holds the
source and the output; the baseline builds the same source from and to the local disk. Both
run on this machine's cores with the same settings; the ratio is copies/s in the store over
copies/s on the disk (median of the rounds). A real store adds network latency the local
server has not, which the requests a worker keeps in flight (parallel.IN_FLIGHT) hide.
Also, in the same run: one worker with 4 requests in flight against 1 (what the overlap of
reads, renders and puts gives), the local server's own rate for puts of that size (the
ceiling a build there can reach), and the peak memory of listing a folder of many objects,
streamed (balancer.common.storage) against s3fs' whole listing.

    python -m bench.store_speed [--originals 150] [--rounds 3] [--objects 10000]
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
from balancer.common import parallel
from balancer.common.parallel import RunOptions
from balancer.common.storage import location
from bench.corpus import make_corpus

REQUESTS = [0]  # answered by the server (counted in its threads: near enough for a rate)
SETTINGS = BuildSettings(nmin=200, transforms="crop,rotate,cutout,width,zoom")


def serve(latency: float) -> tuple[object, dict]:
    """The local S3 server, each answer `latency` seconds late (a network's round trip, which
    costs no CPU), and the environment that reaches it."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class Distant(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)

            def late(environ: dict, start_response: object) -> object:
                REQUESTS[0] += 1
                time.sleep(latency)
                return app(environ, start_response)

            self._server = make_server(
                self._ip_address, self._port, late, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Distant(ip_address="127.0.0.1", port=0, verbose=False)
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
    parser.add_argument("--originals", type=int, default=150, help="source images (3 classes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds each request waits (a network)"
    )
    parser.add_argument("--objects", type=int, default=10000, help="for the listing's memory")
    args = parser.parse_args()
    server, _ = serve(args.latency)
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bench")
    work = Path(tempfile.mkdtemp(prefix="store-speed-"))
    n = args.originals
    src = make_corpus(work / "src", sizes=[n // 2, n // 3, n - n // 2 - n // 3])
    fs.put(f"{src}/", "bench/src", recursive=True)
    run, one = RunOptions(progress=False), RunOptions(workers=1, progress=False)
    rates: dict[str, list[float]] = {"disk": [], "store": [], "one": [], "one-serial": []}
    served = []  # requests per second the store build sent
    for r in range(args.rounds):
        for key, where, how in (
            ("disk", (src, work / f"out-{r}"), run),
            ("store", ("s3://bench/src", f"s3://bench/out-{r}"), run),
            ("one", ("s3://bench/src", f"s3://bench/one-{r}"), one),
        ):
            before = REQUESTS[0]
            seconds, copies = timed(*where, how)
            rates[key].append(copies / seconds)
            if key == "store":
                served.append((REQUESTS[0] - before, seconds))
        parallel.IN_FLIGHT = 1
        seconds, copies = timed("s3://bench/src", f"s3://bench/serial-{r}", one)
        rates["one-serial"].append(copies / seconds)
        parallel.IN_FLIGHT = 4
        shutil.rmtree(work / f"out-{r}")
    m = {k: statistics.median(v) for k, v in rates.items()}
    requests, seconds = served[len(served) // 2]
    size = sum(f.stat().st_size for f in src.rglob("*.jpg")) // n
    puts = {f"bench/ceiling/{i:06d}.jpg": os.urandom(size) for i in range(copies)}
    start = time.perf_counter()
    fs.pipe(puts)
    ceiling = len(puts) / (time.perf_counter() - start)
    print(
        f"{copies} copies of {n} originals (500x375 JPEG, {size // 1024} KiB), median of "
        f"{args.rounds}; the server answers {args.latency * 1000:.0f} ms late"
    )
    print(f"local disk, 2 workers:        {m['disk']:7.1f} copies/s")
    print(
        f"S3 (local server), 2 workers: {m['store']:7.1f} copies/s   "
        f"{m['store'] / m['disk']:.2f} x the disk"
    )
    print(
        f"S3, 1 worker, 4 in flight:    {m['one']:7.1f} copies/s   "
        f"{m['one'] / m['one-serial']:.2f} x 1 in flight ({m['one-serial']:.1f})"
    )
    print(
        f"the store build: {requests / copies:.1f} requests a copy, {requests / seconds:.0f} "
        f"requests/s; the server's own rate ({size // 1024} KiB puts, 32 at a time from one "
        f"process): {ceiling:.0f}/s, so the build drives it at {requests / seconds / ceiling:.2f} x"
    )
    many = {f"bench/many/{i:07d}.jpg": b"x" for i in range(args.objects)}
    fs.pipe(many)
    streamed = listing_peak("s3://bench/many", streamed=True)
    whole = listing_peak("s3://bench/many", streamed=False)
    print(
        f"listing {args.objects:,} objects: streamed {streamed:.1f} MiB peak "
        f"({streamed * 2**20 / args.objects:.0f} bytes an object), s3fs' whole listing "
        f"{whole:.1f} MiB ({whole / streamed:.1f} x)"
    )
    shutil.rmtree(work)
    server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
