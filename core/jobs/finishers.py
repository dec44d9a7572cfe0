"""Where images are finished: processes of their own (the default), or threads.

Finishing (the invisible watermark, PNG encoding, C2PA signing, palette score, pHash, the
logo-free master, the store's durable write) is CPU work, much of it Python holding the
interpreter lock between numpy and Pillow calls. In threads it shares that lock with the event
loop that feeds the engine and with the engine's own Python (a diffusers loop launches its
kernels from Python): each hand-back from the engine waits for the lock, up to
``sys.getswitchinterval()`` (5 ms) at a time. In processes it can't hold anything up but the
cores themselves. ``python -m bench pipeline`` measures the difference (README, Performance).

``configure(processes)``: ``None`` (the default) runs one process per core this process may use,
``0`` runs threads in this process instead (one per core), ``n`` runs ``n`` processes. The worker
sets it from ``ONBRAND_FINISHING_PROCESSES``.

The processes are started with ``spawn`` (never ``fork``: the parent runs threads, and a CUDA
context does not survive a fork), all of them when the pool is made (the worker makes it as it
starts), each importing what finishing needs (~1 s) before its first image; ``warm`` waits for
that. They ignore SIGINT and SIGTERM: the worker decides when to stop, drains what is in flight
and then lets the pool end; if the worker is killed, its processes see it within half a second
and exit. A process that dies mid-image (out of memory, say) breaks the pool: a new one
is started and that image is finished once more there, then the error stands.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_WATCH_S = 0.5  # how often a finishing process checks that its worker is still there
_lock = threading.Lock()
_processes: int | None = None  # None: one per core; 0: threads
_pool: Executor | None = None
_started: list[Future[int]] = []  # the current pool's processes' first calls (``warm``)


def cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU limit (a
    container's ``--cpus``, a pod's ``limits.cpu``) rounded up."""
    try:
        allowed = max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            allowed = min(allowed, max(math.ceil(int(quota) / int(period)), 1))
    except (OSError, ValueError):  # no cgroup v2 limit to read
        pass
    return allowed


def configure(processes: int | None) -> None:
    """Finish in ``processes`` processes (``None``: one per core; ``0``: threads) from now on.

    A pool already running with another shape is shut down once its work is done."""
    global _processes, _pool
    if processes is not None and processes < 0:
        raise ValueError(f"finishing processes must be 0 or more, not {processes}")
    with _lock:
        if processes == _processes:
            return
        _processes, old, _pool = processes, _pool, None
    if old is not None:
        old.shutdown(wait=False)


def in_processes() -> bool:
    """Whether finishing runs in processes of its own (else in threads of this process)."""
    return _processes != 0


def pool() -> Executor:
    """The finishing pool (made on first use, shared by every worker in the process).

    Not asyncio's default executor: the engines run their calls there (``asyncio.to_thread``),
    and a GPU's next call must never queue behind a backlog of PNG encodes. A backlog waits here,
    and the worker's in-flight cap (``WorkerConfig.batches_in_flight``) stops claims meanwhile."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = _make(_processes)
        return _pool


def _make(processes: int | None) -> Executor:
    global _started
    _started = []  # the new pool's own, if it has processes
    if processes == 0:
        return _threads()
    workers = processes or cores()
    try:
        made = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_started,
            initargs=(logging.getLogger().level,),
        )
        # every process starts now and imports what finishing needs, not at the first image
        _started = [made.submit(_ready) for _ in range(workers)]
    except OSError as exc:  # no semaphores (a container without /dev/shm), no process limit
        log.warning("finishing runs in threads: processes can't be started here (%s)", exc)
        return _threads()
    return made


def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="finishing")


def _child_started(log_level: int) -> None:
    """In each finishing process: logs as the worker logs (its level; format and secret
    masking from the same settings), the parent alone answers signals (it drains, then ends
    us), and a parent that is gone (killed) ends us too. The call queue gives no end-of-file for
    that (every process holds its writing end), so a thread watches who our parent is."""
    from core.ops.logs import setup_logging

    setup_logging(level=logging.getLevelName(log_level))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_end_with, args=(parent,), name="parent-watch", daemon=True).start()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is handed to init (or a subreaper)
        time.sleep(_WATCH_S)
    os._exit(0)


def _renew(broken: Executor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False)


async def run(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in the finishing pool; in threads, in a copy of this context (as
    ``asyncio.to_thread``). In processes, ``work`` and its arguments travel by pickle."""
    loop = asyncio.get_running_loop()
    executor = pool()
    if isinstance(executor, ThreadPoolExecutor):
        call = functools.partial(contextvars.copy_context().run, work, *args)
        return await loop.run_in_executor(executor, call)
    try:
        return await loop.run_in_executor(executor, work, *args)
    except BrokenProcessPool:  # a finishing process died (killed, out of memory): once more
        _renew(executor)
    executor = pool()
    try:
        return await loop.run_in_executor(executor, work, *args)
    except BrokenProcessPool:  # twice: the error stands, and the next image gets a new pool
        _renew(executor)
        raise


def _ready() -> int:
    """Imports what finishing needs (the first image would otherwise pay for it)."""
    from PIL import Image

    from core.jobs.finishing import warm_up

    warm_up(Image.new("RGB", (64, 64)))
    return os.getpid()


async def warm() -> None:
    """Wait until every finishing process has started and imported its modules (they start
    with the pool: ``pool()``)."""
    pool()
    started = [asyncio.wrap_future(f) for f in _started]
    if started:
        await asyncio.gather(*started)
