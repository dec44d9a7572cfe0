"""Finishing has its own processes (or threads): a busy default executor (where the engines'
calls run) does not hold it up, a finishing process that dies is replaced, the processes leave
signals to the worker and end with it; the worker claims three batches' worth of jobs by
default."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from PIL import Image

from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.imaging.metadata import read_parameters
from core.jobs import finishers
from core.jobs.finishing import store_images
from core.jobs.worker import WorkerConfig
from core.storage.local import LocalImageStore


@pytest.fixture(params=[None, 0], ids=["processes", "threads"])
def finishing(request: pytest.FixtureRequest) -> Iterator[int | None]:
    finishers.configure(request.param)
    yield request.param
    finishers.configure(None)


@pytest.mark.usefixtures("finishing")
async def test_finishing_does_not_wait_for_the_default_executor(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    engine_threads = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(engine_threads)
    release = threading.Event()
    busy = asyncio.create_task(asyncio.to_thread(release.wait, 30))  # the engine's long call
    try:
        params = Params("a cat", "", 64, 64, 4, 5.0, 2, 7, "fake", "m", "p", "v")
        job = StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "cli", params, 1, None, None)
        pictures = [Image.new("RGB", (64, 64), (i * 90, 40, 200)) for i in range(2)]
        store = LocalImageStore(tmp_path)
        stored = await asyncio.wait_for(store_images(store, job, None, pictures), timeout=20)
        assert not busy.done()  # finished while the default executor's only thread was taken
    finally:
        release.set()
        await busy
    assert [s.index for s in stored] == [1, 2]
    for s, picture in zip(stored, pictures, strict=True):
        data = await store.get(s.storage_key)
        assert "a cat" in (read_parameters(data) or "")
        assert Image.open(io.BytesIO(data)).size == picture.size


async def test_the_finishing_pool_is_one_process_per_core_and_shared() -> None:
    pool = finishers.pool()
    assert pool is finishers.pool()
    assert isinstance(pool, ProcessPoolExecutor)
    assert pool._max_workers == len(os.sched_getaffinity(0))  # the cores this process may use
    await finishers.warm()
    pids = {await finishers.run(os.getpid) for _ in range(8)}
    assert os.getpid() not in pids  # the work ran elsewhere


def test_zero_processes_means_threads_in_this_process() -> None:
    try:
        finishers.configure(0)
        pool = finishers.pool()
        assert isinstance(pool, ThreadPoolExecutor)
        assert pool._max_workers == len(os.sched_getaffinity(0))
        assert pool.submit(os.getpid).result() == os.getpid()
    finally:
        finishers.configure(None)
    assert isinstance(finishers.pool(), ProcessPoolExecutor)
    with pytest.raises(ValueError, match="0 or more"):
        finishers.configure(-1)


def _die_the_first_time(marker: str) -> int:
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(9)  # as the kernel's OOM killer would end it: no clean-up, no answer
    return os.getpid()


async def test_a_finishing_process_that_dies_is_replaced_and_the_image_tried_again(
    tmp_path: Path,
) -> None:
    await finishers.warm()
    broken = finishers.pool()
    pid = await finishers.run(_die_the_first_time, str(tmp_path / "died"))
    assert (tmp_path / "died").exists()  # the first try ran and its process died
    assert finishers.pool() is not broken
    assert pid != os.getpid()
    assert await finishers.run(os.getpid) != os.getpid()  # the new pool works


def _die() -> None:
    os._exit(9)


async def test_an_image_whose_process_dies_twice_fails_and_the_next_one_is_finished() -> None:
    await finishers.warm()
    with pytest.raises(BrokenProcessPool):
        await finishers.run(_die)
    assert await finishers.run(os.getpid) != os.getpid()


async def test_finishing_processes_leave_sigint_and_sigterm_to_the_worker() -> None:
    await finishers.warm()
    pids = {await finishers.run(os.getpid) for _ in range(8)}
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.3)
    for pid in pids:
        os.kill(pid, 0)  # still there (raises ProcessLookupError if not)
    assert await finishers.run(sum, [1, 2]) == 3


_KILLED_WORKER = """
import asyncio, os, sys
from core.jobs import finishers
async def main():
    await finishers.warm()
    pids = {await finishers.run(os.getpid) for _ in range(16)}
    print(" ".join(map(str, sorted(pids))), flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_finishing_processes_end_when_their_worker_is_killed() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WORKER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        pids = [int(p) for p in worker.stdout.readline().split()]
        assert pids
        assert worker.pid not in pids
    finally:
        worker.kill()
        worker.wait()
    deadline = time.monotonic() + 20
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
                # a zombie is gone too: its parent (the killed worker) no longer exists
                if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                    alive.discard(pid)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.1)
    assert not alive, f"finishing processes {alive} outlived their worker"


def test_three_batches_in_flight_by_default() -> None:
    assert WorkerConfig(max_batch=8).in_flight == 24
    assert WorkerConfig(max_batch=8, batches_in_flight=5).in_flight == 40
    assert WorkerConfig(max_batch=8, max_in_flight=10).in_flight == 16  # two claims at least
    assert WorkerConfig(max_batch=4, max_in_flight=12).in_flight == 12


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", 64), ("200000 100000\n", 2), ("150000 100000\n", 2), ("5000 100000", 1)],
)
def test_cores_are_capped_by_a_cgroup_cpu_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert finishers.cores(tmp_path / "cpu.max") == expected
    assert finishers.cores(tmp_path / "missing") == 64


@pytest.mark.parametrize(
    ("setting", "one_shot", "processes"),
    [(None, False, True), (None, True, False), ("2", True, True), ("0", False, False)],
)
def test_a_serving_worker_finishes_in_processes_and_a_one_shot_command_in_threads(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: str | None,
    one_shot: bool,
    processes: bool,
) -> None:
    from types import SimpleNamespace

    from core.bootstrap import build_worker
    from core.provenance import setup
    from core.settings import Settings

    monkeypatch.setenv("ONBRAND_DATA_DIR", str(tmp_path))
    if setting is not None:
        monkeypatch.setenv("ONBRAND_FINISHING_PROCESSES", setting)
    settings = Settings()  # type: ignore[call-arg]
    app = SimpleNamespace(
        settings=settings, db=None, engines=None, store=None, service=SimpleNamespace(presets={})
    )
    try:
        build_worker(app, one_shot=one_shot)  # type: ignore[arg-type]
        assert finishers.in_processes() is processes
    finally:
        finishers.configure(None)
        setup.configure(None)


async def test_a_finishing_process_logs_as_the_worker_does_and_its_errors_come_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A spoiled logo fails in a finishing process: the preset error reaches the worker with
    its message, and the process's log line is the worker's JSON, naming the generation."""
    import json
    import logging

    from core.brand.preset_files import load_preset
    from core.errors import PresetError

    (tmp_path / "logos").mkdir()
    Image.new("RGBA", (40, 20), (255, 0, 0, 255)).save(tmp_path / "logos" / "brand.png")
    (tmp_path / "spoiled.yaml").write_text(
        'name: spoiled\nbrand: S\nprompt: "{prompt}"\naspect_ratios: {"1:1": [64, 64]}\n'
        'default_aspect: "1:1"\nengine: {kind: fake, model: m, steps: 4, guidance: 5.0}\n'
        "watermark: {logo: logos/brand.png, position: top-left, scale: 0.5}\n"
    )
    preset = load_preset(tmp_path / "spoiled.yaml")
    (tmp_path / "logos" / "brand.png").write_bytes(b"not a picture at all")
    params = Params("a cat", "", 64, 64, 4, 5.0, 1, 7, "fake", "m", "spoiled", "v")
    job = StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "cli", params, 1, None, None)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # the level the processes start with
    finishers.configure(1)  # a new pool, started at this level
    try:
        with pytest.raises(PresetError, match="watermark logo of preset spoiled"):
            await store_images(LocalImageStore(tmp_path / "images"), job, preset, [
                Image.new("RGB", (64, 64))
            ])  # fmt: skip
    finally:
        finishers.configure(None)
        logging.getLogger().setLevel(level)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "{" in line]
    logo_lines = [line for line in lines if "watermark.logo" in line.get("message", "")]
    assert logo_lines, lines
    assert logo_lines[0]["generation_id"] == str(job.id)


def test_where_processes_cant_start_finishing_runs_in_threads_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_semaphores(*args: object, **kwargs: object) -> None:
        raise OSError(38, "Function not implemented")  # what SemLock raises without /dev/shm

    monkeypatch.setattr(finishers, "ProcessPoolExecutor", no_semaphores)
    finishers.configure(2)
    try:
        assert isinstance(finishers.pool(), ThreadPoolExecutor)
    finally:
        finishers.configure(None)
    assert "finishing runs in threads" in caplog.text
