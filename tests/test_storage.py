"""Folders in object storage: an S3-compatible server on localhost (moto's ThreadedMotoServer,
port 0) and memory://, against the same commands on a local disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    GATE,
    ONE,
    assert_one_line_error,
    make_folder,
    run_cli,
    run_process,
    textured,
    tree_digest,
    wait_until,
    write_image,
)

from balancer import BuildSettings, build
from balancer.common import imageio
from balancer.common.parallel import RunOptions
from balancer.common.storage import LOCK_NAME, Remote, location, parse_options
from balancer.source import scan

SETTINGS = BuildSettings(nmin=8, transforms="crop,rotate,cutout")
BUILD = ["--nmin", "8", "--transforms", "crop,rotate,cutout", "-q"]
# What balance.json says of where and when: the rest of it is the same wherever it was built.
WHERE = {"source", "estimated_bytes", "newest_source_mtime_ns", "newest_source_ctime_ns"}


@pytest.fixture(scope="module")
def s3():
    """An S3-compatible server on a free port of localhost, reached the way a user reaches
    one: AWS_ENDPOINT_URL and credentials in the environment (which the Dask workers and the
    commands this starts inherit)."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fresh_workers()
    try:
        yield env
    finally:
        server.stop()
        fresh_workers()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fresh_workers() -> None:
    """joblib keeps its pool's workers between calls: stop them, so the next ones start with
    this environment (a command's workers always start after the environment it was given)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


@pytest.fixture
def bucket(s3) -> str:
    """A new, empty bucket: s3://<name>."""
    import s3fs

    name = f"b{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"


def upload(folder: Path, url: str) -> None:
    """Every file under `folder` as an object under `url`."""
    target = location(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            (target / path.relative_to(folder).as_posix()).write_bytes(path.read_bytes())


def objects(url: str) -> dict[str, str]:
    """{name relative to url: sha256} of every object under it."""
    root = location(url)
    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in root.walk_files()
    }


def same_record(store: str, local: Path) -> None:
    """balance.json in the store is the local one but for where the source was and when."""
    remote = json.loads((location(store) / "balance.json").read_bytes())
    here = json.loads((local / "balance.json").read_bytes())
    assert {k: v for k, v in remote.items() if k not in WHERE | {"created"}} == {
        k: v for k, v in here.items() if k not in WHERE | {"created"}
    }


def assert_same_build(store: str, local: Path) -> None:
    """Object for object, the local build's files: every image and manifest.csv byte for byte
    (nothing else in the store: no journal, no lock), balance.json but for the source."""
    found, expected = objects(store), tree_digest(local)
    assert sorted(found) == sorted(expected)
    assert {k: v for k, v in found.items() if k != "balance.json"} == {
        k: v for k, v in expected.items() if k != "balance.json"
    }
    same_record(store, local)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """A source of two classes (gray, alpha and EXIF-free JPEG/PNG) and its local build."""
    root = tmp_path_factory.mktemp("photos")
    src = make_folder(root / "src", {"cat": 6, "dog": 2}, size=40)
    write_image(src / "dog" / "gray.png", textured(30, 44, channels=1, seed=3))
    write_image(src / "cat" / "alpha.png", textured(36, 28, channels=4, seed=4))
    build(src, root / "local", SETTINGS, run=ONE)
    return src, root / "local"


def test_a_build_in_s3_is_object_for_object_the_local_build(photos, bucket):
    src, local = photos
    upload(src, f"{bucket}/src")
    run_cli("balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, check=True)
    assert_same_build(f"{bucket}/out", local)
    # from a local source into the store, and from the store onto a local disk: the same
    run_cli("balancer", "build", src, "--out", f"{bucket}/from-disk", *BUILD, check=True)
    assert_same_build(f"{bucket}/from-disk", local)
    here = local.parent / f"from-store-{bucket[5:]}"
    run_cli("balancer", "build", f"{bucket}/src", "--out", here, *BUILD, check=True)
    assert tree_digest(here).keys() == tree_digest(local).keys()
    assert {k: v for k, v in tree_digest(here).items() if k != "balance.json"} == {
        k: v for k, v in tree_digest(local).items() if k != "balance.json"
    }
    report = run_cli("balancer", "verify", f"{bucket}/out", "--replay", "--json", check=True)
    assert json.loads(report.stdout)["ok"] is True


def test_a_killed_build_in_s3_resumes_to_the_same_objects(photos, bucket, tmp_path):
    """Killed (SIGKILL) with exactly 5 of its images put: its lock object and journal stay;
    a plain build is refused, `--resume` takes over the dead command's lock, proves the
    objects there by the journal and ends with the uninterrupted build's objects."""
    src, local = photos
    upload(src, f"{bucket}/src")
    release = tmp_path / "release"
    path = os.pathsep.join(p for p in (str(GATE), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "BALANCED_AUG_STORE_GATE": f"5{os.pathsep}{release}",
    }
    args = ["build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, "-j", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from balancer.cli import main; main()", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        images = lambda: [n for n in objects(f"{bucket}/out") if "/" in n and n[0] != "."]  # noqa: E731
        wait_until(lambda: len(images()) >= 5, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
    left = objects(f"{bucket}/out")
    assert len(images()) == 5 and LOCK_NAME in left
    assert any(n.startswith(".manifest.csv.journal/") for n in left)
    assert json.loads((location(f"{bucket}/out") / "balance.json").read_bytes())["status"] == (
        "running"
    )
    refused = run_cli("balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD)
    assert_one_line_error(refused, "--resume")
    mine = location(f"{bucket}/out") / ".manifest.csv.journal" / "notes.txt"
    mine.write_bytes(b"a user's note, where the journal is")
    resume = ["build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, "--resume"]
    assert_one_line_error(run_cli("balancer", *resume), ".manifest.csv.journal/notes.txt")
    assert mine.read_bytes() == b"a user's note, where the journal is"
    mine.unlink()
    run_cli(
        "balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, "--resume",
        check=True,
    )  # fmt: skip
    assert_same_build(f"{bucket}/out", local)


def test_a_second_writer_is_refused_by_the_lock_object(photos, bucket):
    """A lock object of a live command (this test's own process, another token) refuses a
    build and names its holder; nothing is written. A user's object in an output is never
    removed: --overwrite refuses it by the record's listing."""
    src, _ = photos
    upload(src, f"{bucket}/src")
    lock = location(f"{bucket}/out") / LOCK_NAME
    holder = {"tool": "balanced-aug", "host": "elsewhere", "pid": os.getpid(), "token": "t"}
    lock.write_bytes(json.dumps(holder).encode())
    proc = run_cli("balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD)
    assert_one_line_error(proc, "in use by process", "elsewhere", LOCK_NAME)
    assert list(objects(f"{bucket}/out")) == [LOCK_NAME]
    lock.unlink()
    run_cli("balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, check=True)
    before = objects(f"{bucket}/out")
    (location(f"{bucket}/out") / "cat" / "mine.jpg").write_bytes(b"a user's photo")
    proc = run_cli(
        "balancer", "build", f"{bucket}/src", "--out", f"{bucket}/out", *BUILD, "--overwrite"
    )
    assert_one_line_error(proc, "cat/mine.jpg", "nothing was changed")
    after = objects(f"{bucket}/out")
    assert after.pop("cat/mine.jpg") == hashlib.sha256(b"a user's photo").hexdigest()
    assert after == before


def test_the_lock_is_a_conditional_put(bucket):
    """Of two creates of one object, the second is refused by the store itself (S3's
    If-None-Match: 412), whatever the first wrote; memory:// refuses it too."""
    for root in (location(bucket), location(f"memory://c{uuid.uuid4().hex[:8]}")):
        lock = root / "out" / LOCK_NAME
        assert lock.create(b"first") is True
        assert lock.create(b"second") is False
        assert lock.read_bytes() == b"first"


def test_a_replaced_object_is_named_by_its_etag_when_read(bucket, tmp_path):
    """A read checks the object's size and ETag against the scan's; verify names an object
    whose bytes are not the listed ones."""
    src = make_folder(tmp_path / "src", {"a": 3, "b": 1}, size=24)
    upload(src, f"{bucket}/src")
    found = scan(f"{bucket}/src", workers=1, progress=False)
    image = found.images["a"][0]
    obj = location(f"{bucket}/src") / image.path
    assert imageio.read_bytes(obj, expect=image.stamp) == (src / image.path).read_bytes()
    data = bytearray(obj.read_bytes())
    data[-3] ^= 0xFF  # same size, other bytes: a new ETag
    obj.write_bytes(bytes(data))
    with pytest.raises(imageio.SourceChanged, match="ETag"):
        imageio.read_bytes(obj, expect=image.stamp)
    build(f"{bucket}/src", f"{bucket}/out", BuildSettings(nmin=3, transforms="flip"), run=ONE)
    copy = next(n for n in objects(f"{bucket}/out") if "__aug" in n)
    (location(f"{bucket}/out") / copy).write_bytes(b"not the copy")
    report = run_cli("balancer", "verify", f"{bucket}/out", "--json")
    assert report.returncode == 1
    assert (
        f"file differs from the one written (size or sha256): {copy}"
        in json.loads(report.stdout)["problems"]
    )


def test_a_dask_cluster_builds_the_same_objects_reading_and_writing_the_store(photos, bucket):
    """Two Dask worker processes, each reading the originals and putting the files itself
    (only the plan and the rows pass through the scheduler): the local build's objects."""
    pytest.importorskip("distributed")
    src, local = photos
    upload(src, f"{bucket}/src")
    build(
        f"{bucket}/src",
        f"{bucket}/out",
        SETTINGS,
        run=RunOptions(workers=2, backend="dask", progress=False),
    )
    assert_same_build(f"{bucket}/out", local)


def test_memory_urls_for_the_companion_commands(photos, tmp_path):
    """memory:// (this process's own store, so the work stays in this process): stats,
    preview, split and build, each as on a disk."""
    src, local = photos
    root = f"memory://t{uuid.uuid4().hex[:8]}"
    upload(src, f"{root}/src")
    stats = json.loads(run_cli("balancer", "stats", f"{root}/src", "--json", check=True).stdout)
    assert {k: v["count"] for k, v in stats["classes"].items()} == {"cat": 7, "dog": 3}
    run_cli("balancer", "preview", f"{root}/src", "-o", f"{root}/sheet.png", "-q", check=True)
    sheet = imageio.decode((location(root) / "sheet.png").read_bytes()).image
    assert sheet.shape[0] > 100 and sheet.std() > 0
    run_cli("balancer", "split", f"{root}/src", "--out", f"{root}/split", "-q", check=True)
    run_cli("balancer", "split", src, "--out", tmp_path / "split", "-q", check=True)
    assert objects(f"{root}/split").keys() == tree_digest(tmp_path / "split").keys()
    run_cli("balancer", "build", f"{root}/src", "--out", f"{root}/out", *BUILD, check=True)
    assert_same_build(f"{root}/out", local)
    inside = run_cli("balancer", "build", f"{root}/src", "--out", f"{root}/src/out", *BUILD)
    assert_one_line_error(inside, "lies inside the source folder")
    around = run_cli("balancer", "build", f"{root}/src", "--out", root, *BUILD, "--overwrite")
    assert_one_line_error(around, "contains the source folder")
    assert not location(f"{root}/src/out").exists() and "src/cat/cat_000.jpg" in objects(root)
    linked = run_cli("balancer", "build", src, "--out", f"{root}/linked", *BUILD, "--link")
    assert_one_line_error(linked, "--link")
    assert not location(f"{root}/linked").exists()
    # a recipe in the store, materialized: the same objects again
    run_cli("balancer", "build", f"{root}/src", "--out", f"{root}/recipe", *BUILD, "--recipe-only")
    assert sorted(objects(f"{root}/recipe")) == ["balance.json", "manifest.csv"]
    verified = run_cli("balancer", "verify", f"{root}/recipe", "--json", check=True)
    assert json.loads(verified.stdout)["recipe"] is True
    run_cli("balancer", "materialize", f"{root}/recipe", "-q", check=True)
    assert_same_build(f"{root}/recipe", local)


def test_storage_options_and_missing_extras_are_one_line():
    assert parse_options(["anon=true", "profile=dev", 'client_kwargs={"a": 1}']) == {
        "anon": True,
        "profile": "dev",
        "client_kwargs": {"a": 1},
    }
    proc = run_cli("balancer", "stats", "memory://x", "--storage-option", "novalue")
    assert_one_line_error(proc, "KEY=VALUE")
    proc = run_cli("balancer", "stats", "memory://nothing-here")
    assert_one_line_error(proc, "source folder not found: memory:///nothing-here")
    if not _installed("gcsfs"):
        proc = run_process("balancer", "stats", "gs://bucket/photos")
        assert_one_line_error(proc, "gs://", "balanced-aug[gcs]")
    assert isinstance(location("s3://b/p") if _installed("s3fs") else Remote(None, "b"), Remote)
    assert location("file:///tmp/x") == Path("/tmp/x")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_a_stores_listing_is_walked_folder_by_folder(tmp_path):
    """Entries come one folder at a time, sorted, with their kind from the listing."""
    root = location(f"memory://w{uuid.uuid4().hex[:8]}")
    for name in ["b/2.png", "a/1.png", "a/sub/3.png", ".hidden/x"]:
        (root / name).write_bytes(b"x")
    assert root.entries() == [(".hidden", "dir"), ("a", "dir"), ("b", "dir")]
    assert [f.relative_to(root).as_posix() for f in root.walk_files()] == [
        ".hidden/x",
        "a/1.png",
        "a/sub/3.png",
        "b/2.png",
    ]
    assert np.array_equal(np.frombuffer((root / "a/1.png").read_bytes(), np.uint8), [120])


TINY = ["--model", "tiny", "--weights", "none", "--image-size", "32", "--epochs", "2", "-q"]


@pytest.mark.slow
def test_a_tiny_fit_reads_and_writes_s3_as_a_local_one(bucket, tmp_path):
    """`train fit` from a balanced folder in the store into a run folder in the store: the
    history and scores of the same fit on a local disk, the run folder's objects those of
    the local one (no resume state left behind, metrics.json listing them); evaluate and
    predict read the run and the images from the store."""
    src = make_folder(tmp_path / "src", {"a": 8, "b": 4}, size=32)
    build(src, tmp_path / "balanced", BuildSettings(nmin=8, transforms="flip,rotate"), run=ONE)
    upload(tmp_path / "balanced", f"{bucket}/balanced")
    run_cli("trainer", "fit", f"{bucket}/balanced", "--out", f"{bucket}/run", *TINY, check=True)
    run_cli("trainer", "fit", tmp_path / "balanced", "--out", tmp_path / "run", *TINY, check=True)
    run = location(f"{bucket}/run")
    assert sorted(objects(f"{bucket}/run")) == sorted(tree_digest(tmp_path / "run"))
    assert (run / "history.csv").read_bytes() == (tmp_path / "run" / "history.csv").read_bytes()
    remote = json.loads((run / "metrics.json").read_bytes())
    local = json.loads((tmp_path / "run" / "metrics.json").read_bytes())
    assert (remote["accuracy"], remote["macro_f1"]) == (local["accuracy"], local["macro_f1"])
    assert set(remote["files"]) == set(objects(f"{bucket}/run")) - {"metrics.json"}
    for name, listed in remote["files"].items():
        assert listed["sha256"] == hashlib.sha256((run / name).read_bytes()).hexdigest()
    upload(src, f"{bucket}/test")
    scored = run_cli("trainer", "evaluate", f"{bucket}/run", f"{bucket}/test", "--json", check=True)
    here = run_cli("trainer", "evaluate", tmp_path / "run", src, "--json", check=True)
    assert json.loads(scored.stdout)["macro_f1"] == json.loads(here.stdout)["macro_f1"]
    assert "metrics.json" in objects(f"{bucket}/run/eval-test")
    predicted = run_cli("trainer", "predict", f"{bucket}/run", f"{bucket}/test/a", check=True)
    local_pred = run_cli("trainer", "predict", tmp_path / "run", src / "a", check=True)
    assert predicted.stdout == local_pred.stdout and predicted.stdout.count("\n") == 9


def test_an_s3_listing_longer_than_a_page_is_streamed_whole(bucket):
    """S3 answers a listing 1,000 keys a page: every page is read, and only names kept."""
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.pipe({f"{bucket[5:]}/many/{i:05d}.png": b"x" for i in range(1003)})
    (location(bucket) / "many" / "sub" / "x.png").write_bytes(b"y")
    entries = location(f"{bucket}/many").entries()
    assert entries == [*((f"{i:05d}.png", "file") for i in range(1003)), ("sub", "dir")]


def test_a_store_that_refuses_is_one_line(tmp_path):
    """No credentials anywhere (botocore's NoCredentialsError, not an OSError): one line, no
    traceback, exit 1."""
    pytest.importorskip("s3fs")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = run_process("balancer", "stats", "s3://bucket/photos", env=env)
    assert_one_line_error(proc, "NoCredentialsError", "--storage-option")
