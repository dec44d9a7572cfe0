"""Smoke tests of the queue and worker benchmarks: each runs end to end at a tiny size on the
test server and reports its ratios (the numbers themselves are not checked here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.runner

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_admin_url: str) -> Path:
    """Benchmarks write their JSON under tmp, on the test run's PostgreSQL server."""
    monkeypatch.setattr(bench.runner, "RESULTS", tmp_path)
    monkeypatch.setenv("DATABASE_URL", pg_admin_url)
    return tmp_path


def recorded(results: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((results / f"{name}.json").read_text())
    return data


def test_queue_bench(results_in_tmp: Path) -> None:
    from bench import queue

    assert queue.main(["--jobs", "12", "--rounds", "1", "--no-processes"]) == 0
    record = recorded(results_in_tmp, "queue")
    assert set(record["ratios"]) == {"1 worker / bare", "4 workers (1 process) / bare"}  # type: ignore[arg-type]


@pytest.mark.slow
def test_queue_bench_with_worker_processes(results_in_tmp: Path) -> None:
    from bench import queue

    assert queue.main(["--jobs", "12", "--rounds", "1"]) == 0
    assert "4 worker processes / bare" in recorded(results_in_tmp, "queue")["ratios"]  # type: ignore[operator]


@pytest.mark.slow  # ~10-20 s: torch import, two model loads, warm-ups
def test_overhead_bench(results_in_tmp: Path) -> None:
    pytest.importorskip("diffusers")
    from bench import overhead

    argv = ["--model", "tiny", "--size", "64", "--steps", "2", "--jobs", "2", "--rounds", "1"]
    assert overhead.main(argv) == 0
    record = recorded(results_in_tmp, "overhead")
    assert list(record["ratios"]) == ["onbrand / bare"]  # type: ignore[call-overload]
    rows = record["rows"]
    assert all(row["value"] > 0 for row in rows)  # type: ignore[attr-defined]


def test_batching_bench(results_in_tmp: Path) -> None:
    pytest.importorskip("diffusers")
    from bench import batching

    argv = ["--model", "tiny", "--size", "64", "--steps", "2", "--jobs", "4", "--rounds", "1"]
    assert batching.main(argv) == 0
    record = recorded(results_in_tmp, "batching")
    assert "max-batch 4 / max-batch 1" in record["ratios"]  # type: ignore[operator]
    batches = {row["name"]: row["extra"]["batches"] for row in record["rows"]}  # type: ignore[attr-defined]
    assert batches["max-batch 1"] == "1,1,1,1"
    assert batches["max-batch 4"] == "4"


def test_pipeline_bench(results_in_tmp: Path) -> None:
    """The simulated-engine pipeline bench runs every case to the last ``done`` and reports one
    ratio per engine time; the engine really ran every image (none skipped, none twice)."""
    from bench import pipeline

    assert pipeline.main(["--jobs", "12", "--ms", "1,3", "--max-batch", "4", "--size", "32"]) == 0
    record = recorded(results_in_tmp, "pipeline")
    assert list(record["ratios"]) == ["1 ms/image", "3 ms/image"]  # type: ignore[call-overload]
    for row in record["rows"]:  # type: ignore[attr-defined]
        assert row["value"] > 0
        assert 0 < float(row["extra"]["ratio"]) <= 1.05  # the bound is a bound (timer noise aside)
        assert row["extra"]["images"] == 12


def test_provenance_bench(results_in_tmp: Path) -> None:
    from bench import provenance

    assert provenance.main(["--no-model", "--trials", "1", "--sizes", "128"]) == 0
    record = recorded(results_in_tmp, "provenance")
    names = [row["name"] for row in record["rows"]]  # type: ignore[attr-defined]
    assert "C2PA sign 128px" in names
    assert "photo 128px PSNR" in names
