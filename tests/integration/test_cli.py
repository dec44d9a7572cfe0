"""The ``onbrand`` command as a user runs it: real processes, real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest
from PIL import Image

from core.db import Database
from core.db.migrate import upgrade
from core.delivery.sweep import save_results
from core.domain import GenerationStatus
from core.storage.local import LocalImageStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIRST_REVISION = "ec4c148c9ec3"  # migrations/versions/*_initial_schema.py
FAKE_PRESET = """
name: cli-test
brand: CLI Test
prompt: "{prompt}, test style"
aspect_ratios: {"1:1": [64, 64], "16:9": [112, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 3, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


def onbrand(
    *args: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(db: Database, database_url: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment, on the run's database (emptied first by ``db``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONBRAND_", "SLACK_"))}
    return clean | {
        "DATABASE_URL": database_url,
        "ONBRAND_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }


@pytest.fixture
def fake_presets(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "cli-test.yaml").write_text(FAKE_PRESET)
    return folder


def test_doctor_reports_a_healthy_setup(env: dict[str, str], tmp_path: Path) -> None:
    from core.engines.pipelines import bundled_model_path
    from tests.engines.tiny_families import fake_hub_cache

    cache = fake_hub_cache(tmp_path, {"acme/tiny-sd": bundled_model_path()})
    assert onbrand("migrate", env=env).returncode == 0
    result = onbrand("doctor", env=env | {"HF_HUB_CACHE": str(cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout
    assert "FAILED" not in result.stdout
    assert "every result of the last 7 days was posted" in result.stdout
    assert re.search(r"acme/tiny-sd +sd1 ", result.stdout), result.stdout


@pytest.fixture
async def scratch_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of its own, empty (no schema at all), dropped afterwards."""
    name = f"onbrand_scratch_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _doctor_on(url: str, env: dict[str, str]) -> tuple[int, str]:
    result = onbrand("doctor", env=env | {"DATABASE_URL": url})
    return result.returncode, result.stdout + result.stderr


def test_doctor_is_healthy_on_a_new_database(env: dict[str, str], scratch_url: str) -> None:
    code, output = _doctor_on(scratch_url, env)
    assert code == 0, output
    assert "FAILED" not in output
    assert "new database" in output


def test_doctor_is_healthy_on_a_fresh_embedded_install(env: dict[str, str], tmp_path: Path) -> None:
    fresh = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    fresh["ONBRAND_DATA_DIR"] = str(tmp_path / "fresh")
    result = onbrand("doctor", env=fresh)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


async def test_doctor_is_healthy_behind_head_and_says_so(
    env: dict[str, str], scratch_url: str
) -> None:
    old = Database(scratch_url)
    try:
        await upgrade(old, FIRST_REVISION)
    finally:
        await old.dispose()
    code, output = _doctor_on(scratch_url, env)
    assert code == 0, output
    assert "behind" in output


async def test_doctor_fails_on_a_schema_this_code_does_not_know(
    env: dict[str, str], scratch_url: str
) -> None:
    conn = await asyncpg.connect(scratch_url)
    try:
        await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        await conn.execute("INSERT INTO alembic_version VALUES ('feedface0001')")
    finally:
        await conn.close()
    code, output = _doctor_on(scratch_url, env)
    assert code == 1, output
    assert "FAILED" in output
    assert "does not know" in output


async def test_doctor_fails_on_tables_missing_at_head(
    env: dict[str, str], scratch_url: str
) -> None:
    broken = Database(scratch_url)
    try:
        await upgrade(broken)
        async with broken.engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE feedback")
    finally:
        await broken.dispose()
    code, output = _doctor_on(scratch_url, env)
    assert code == 1, output
    assert "feedback" in output


async def test_a_worker_stopped_while_it_starts_exits_cleanly(
    env: dict[str, str], scratch_url: str
) -> None:
    """SIGTERM while the worker is still migrating: it finishes starting, then stops, exit 0."""
    from core.db.migrate import _LOCK_ID

    holder = await asyncpg.connect(scratch_url)
    await holder.execute("BEGIN")
    await holder.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "worker",
        env=env | {"DATABASE_URL": scratch_url},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        while not await holder.fetchval(waiting):  # the worker is blocked in its migration
            assert worker.returncode is None, "the worker exited before migrating"
            assert time.monotonic() < deadline, "the worker never started migrating"
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        await holder.execute("COMMIT")
        out, _ = await asyncio.wait_for(worker.communicate(), timeout=60)
        assert worker.returncode == 0, out.decode()
    finally:
        await holder.close()
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


def test_doctor_names_the_failing_part_without_a_traceback(env: dict[str, str]) -> None:
    env = env | {"DATABASE_URL": "postgresql://onbrand:s3cret-pw@127.0.0.1:1/nowhere"}
    result = onbrand("doctor", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "FAILED" in output
    assert "database" in output
    assert "Traceback" not in output
    assert "s3cret-pw" not in output


def test_a_non_postgres_url_is_refused_clearly(env: dict[str, str]) -> None:
    result = onbrand("doctor", env=env | {"DATABASE_URL": "sqlite:///x.db"})
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr


def test_presets_validate_passes_the_shipped_ones_and_lists_every_problem(
    env: dict[str, str], tmp_path: Path
) -> None:
    shipped = sorted(str(p) for p in (REPO / "presets").glob("*.yaml"))
    assert len(shipped) >= 2
    valid = onbrand("presets", "validate", *shipped, env=env)
    assert valid.returncode == 0
    assert "acme-spring.yaml (sd1)" in valid.stdout  # the family of its model, tiny

    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (REPO / "presets" / "acme-spring.yaml")
        .read_text()
        .replace('default_aspect: "1:1"', 'default_aspect: "2:1"')
        .replace("name: acme-spring", "name: Acme Spring")
    )
    result = onbrand("presets", "validate", str(broken), env=env)
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr
    assert "name" in result.stderr
    assert "default_aspect" in result.stderr


@pytest.mark.parametrize(
    ("prompt", "code", "expected"),
    [
        ("a red circle --ar 16:9 --seed 3", 0, '"seed": 3'),
        ("red N-I-K-E shoes", 3, "nike"),
        ("a red circle --ar 16:0", 2, "--ar"),
        ("red shoes --steps 30", 2, "locked"),
    ],
)
def test_presets_check(env: dict[str, str], prompt: str, code: int, expected: str) -> None:
    result = onbrand("presets", "check", "acme-spring", prompt, env=env)
    assert result.returncode == code, result.stdout + result.stderr
    assert expected in (result.stdout + result.stderr)


def test_campaigns_are_created_listed_and_bound(env: dict[str, str]) -> None:
    made = onbrand("campaign", "create", "cli-spring", "--preset", "acme-spring", env=env)
    assert made.returncode == 0, made.stderr
    again = onbrand("campaign", "create", "cli-spring", "--preset", "acme-spring", env=env)
    assert again.returncode == 2
    assert "cli-spring" in again.stderr
    listed = onbrand("campaign", "list", env=env)
    assert "cli-spring" in listed.stdout
    bound = onbrand(
        "campaign", "bind", "cli-spring", "--platform", "slack", "--channel", "C9",
        "--workspace", "T9", "--locked", env=env,
    )  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    assert "locked" in bound.stdout


def test_imagine_writes_the_images_and_the_grid(
    env: dict[str, str], fake_presets: Path, tmp_path: Path
) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    out = tmp_path / "out"
    result = onbrand("imagine", "a blue square", "--seed", "5", "--out", str(out), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in paths] == ["1.png", "2.png", "3.png", "4.png", "grid.png"]
    assert all(p.is_file() for p in paths)
    assert Image.open(paths[0]).size == (64, 64)
    assert Image.open(paths[-1]).size[0] > 2 * 64


def test_imagine_shows_a_user_error_and_exits_2(env: dict[str, str], fake_presets: Path) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    result = onbrand("imagine", "a square --ar 4:3", env=env)
    assert result.returncode == 2
    assert "Aspect ratio 4:3 is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_needs_one_selection(env: dict[str, str], tmp_path: Path) -> None:
    result = onbrand("export", "x", "-o", str(tmp_path / "x.zip"), env=env)
    assert result.returncode == 2
    assert "--approved or --favourites" in result.stderr


def test_report_formats_and_refusals(env: dict[str, str], fake_presets: Path) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    assert onbrand("campaign", "create", "rep", "--preset", "cli-test", env=env).returncode == 0
    made = onbrand("imagine", "a circle --campaign rep --n 2", "--out", "/tmp/ignored", env=env)
    assert made.returncode == 0, made.stderr
    md = onbrand("report", "rep", env=env)
    assert md.returncode == 0, md.stderr
    assert "# Campaign report: rep" in md.stdout
    as_json = onbrand("report", "rep", "--format", "json", env=env)
    assert '"requests": 1' in as_json.stdout
    assert '"images": 2' in as_json.stdout
    as_csv = onbrand("report", "rep", "--format", "csv", env=env)
    assert len(as_csv.stdout.strip().splitlines()) == 3  # header + 2 images
    missing = onbrand("report", "nope", env=env)
    assert missing.returncode == 2
    assert "nope" in missing.stderr


def test_the_embedded_server_is_shared_and_stopped_by_the_last_process(
    env: dict[str, str], tmp_path: Path
) -> None:
    embedded = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    embedded["ONBRAND_DATA_DIR"] = str(tmp_path / "embedded")
    worker = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "worker"],
        env=embedded,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pid_file = tmp_path / "embedded" / "pg" / "postmaster.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "embedded server did not start"
            time.sleep(0.2)
        # A second process joins the same server (once the worker has migrated it).
        deadline = time.monotonic() + 120
        doctor = onbrand("doctor", env=embedded)
        while "schema at head" not in doctor.stdout and time.monotonic() < deadline:
            time.sleep(0.5)
            doctor = onbrand("doctor", env=embedded)
        if doctor.returncode != 0 or "schema at head" not in doctor.stdout:
            worker.kill()
            pytest.fail(f"doctor: {doctor.stdout}\nworker: {worker.communicate()[0]}")
        assert pid_file.exists(), "the second process must not stop the shared server"
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, out
        deadline = time.monotonic() + 20
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_file.exists(), "the last process out stops the server"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


# --- bad input: a clear message, exit 2, nothing written -----------------------------------


def _refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for text in expected:
        assert text in output, output
    return output


def test_arguments_that_are_not_utf8_are_refused(env: dict[str, str]) -> None:
    not_utf8 = os.fsdecode(b"a red \xff circle")  # what Python makes of the bytes in argv
    _refused(onbrand("imagine", not_utf8, env=env), "argument 2", "not valid UTF-8", "0xFF")
    bind = ("campaign", "bind", "x", "--platform", "slack", "--workspace", "T1", "--channel")
    _refused(onbrand(*bind, os.fsdecode(b"C\xc3"), env=env), "argument 9", "0xC3")


def test_names_and_ids_longer_than_their_columns_are_refused(env: dict[str, str]) -> None:
    _refused(
        onbrand("campaign", "create", "a" * 100, "--preset", "acme-spring", env=env),
        "campaign name is 100 characters long; the most is 64",
    )
    assert onbrand("campaign", "create", "c", "--preset", "acme-spring", env=env).returncode == 0
    bind = ("campaign", "bind", "c", "--platform", "slack", "--workspace", "T1")
    _refused(
        onbrand(*bind, "--channel", "C" * 100_000, env=env),
        "channel id is 100,000 characters long; the most is 64",
    )
    unbind = ("campaign", "unbind", "--platform", "slack", "--channel", "C1")
    _refused(onbrand(*unbind, "--workspace", "T" * 65, env=env), "workspace id is 65")


@pytest.mark.parametrize("budget", ["-5", "0", "nan", "inf"])
def test_a_gpu_budget_must_be_a_positive_number_of_seconds(
    env: dict[str, str], budget: str
) -> None:
    create = ("campaign", "create", "lean", "--preset", "acme-spring", "--budget-gpu-seconds")
    _refused(onbrand(*create, budget, env=env), "GPU budget", "above 0")
    assert "lean" not in onbrand("campaign", "list", env=env).stdout


@pytest.mark.parametrize("option", [("--max-batch", "0"), ("--batch-window-ms", "-1")])
def test_worker_numbers_are_checked(env: dict[str, str], option: tuple[str, str]) -> None:
    _refused(onbrand("worker", "--drain", *option, env=env), option[0])


def test_imagine_checks_its_output_folder_before_queueing(
    env: dict[str, str], fake_presets: Path, tmp_path: Path
) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    a_file = tmp_path / "taken.txt"
    a_file.write_text("mine")
    for out, expected in [
        (a_file, "is a file, not a folder"),
        (a_file / "below", "can't write there"),
        (Path("/proc/onbrand-out"), "can't write there"),
    ]:
        result = onbrand("imagine", "a blue square", "--out", str(out), env=env)
        assert "queued" not in _refused(result, f"--out {out}", expected)
    assert a_file.read_text() == "mine"
    made = tmp_path / "new" / "deeper"  # a missing folder is made
    result = onbrand("imagine", "a blue square", "--n", "1", "--out", str(made), env=env)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in made.glob("*/*")] == ["1.png"]


async def test_images_are_written_whole_or_not_at_all(
    env: dict[str, str], fake_presets: Path, tmp_path: Path, db: Database
) -> None:
    """A disk that fills up while the CLI writes the images leaves no half-written file."""
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    made = onbrand("imagine", "a square", "--n", "1", "--out", str(tmp_path / "a"), env=env)
    assert made.returncode == 0, made.stderr
    (written,) = [Path(line) for line in made.stdout.split()]
    done = SimpleNamespace(id=uuid.UUID(written.parent.name), status=GenerationStatus.DONE)
    store = LocalImageStore(tmp_path / "data" / "images")
    out = tmp_path / "b"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))  # the "disk" holds 100 bytes a file
    try:
        with pytest.raises(OSError, match="too large"):
            await save_results(db, store, [done], out)  # type: ignore[list-item]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert list((out / written.parent.name).iterdir()) == []


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_report_and_export_refuse_places_they_cant_write(
    env: dict[str, str], tmp_path: Path
) -> None:
    for command in (("report", "c"), ("export", "c", "--approved")):
        _refused(onbrand(*command, "-o", str(tmp_path), env=env), "is a folder: name a file")
        _refused(
            onbrand(*command, "-o", str(tmp_path / "nope" / "r.md"), env=env),
            f"there is no folder {tmp_path / 'nope'}",
        )
        _refused(onbrand(*command, "-o", "/proc/version", env=env), "can't write a file in /proc")
    assert _leftovers(tmp_path) == []


def test_report_is_written_whole_or_not_at_all(
    env: dict[str, str], fake_presets: Path, tmp_path: Path
) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    assert onbrand("campaign", "create", "rep", "--preset", "cli-test", env=env).returncode == 0
    target = tmp_path / "report.md"
    target.write_text("the last report")
    _refused(onbrand("report", "nope", "-o", str(target), env=env), "nope")
    assert target.read_text() == "the last report"
    written = onbrand("report", "rep", "-o", str(target), env=env)
    assert written.returncode == 0, written.stderr
    assert target.read_text().startswith("# Campaign report: rep")
    assert _leftovers(tmp_path) == []


async def test_export_with_a_missing_original_names_it_and_leaves_nothing(
    env: dict[str, str], fake_presets: Path, tmp_path: Path, database_url: str
) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    assert onbrand("campaign", "create", "rep", "--preset", "cli-test", env=env).returncode == 0
    made = onbrand("imagine", "a circle --campaign rep --n 2", "--out", str(tmp_path), env=env)
    assert made.returncode == 0, made.stderr
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO feedback (generation_id, image_id, user_id, kind, emoji) "
            "SELECT i.generation_id, i.id, g.user_id, 'favourite', 'star' "
            "FROM images i JOIN generations g ON g.id = i.generation_id"
        )
        generation, key = await conn.fetchrow(
            "SELECT generation_id, storage_key FROM images WHERE index = 2"
        )
    finally:
        await conn.close()
    target = tmp_path / "favourites.zip"
    ok = onbrand("export", "rep", "--favourites", "-o", str(target), env=env)
    assert ok.returncode == 0, ok.stderr
    before = target.read_bytes()
    (stored,) = (tmp_path / "data").rglob(Path(key).name)
    stored.unlink()
    failed = onbrand("export", "rep", "--favourites", "-o", str(target), env=env)
    _refused(failed, "1 of the 2 favourites originals are missing", f"{generation}-2.png")
    assert target.read_bytes() == before  # the last good export is untouched
    assert _leftovers(tmp_path) == []
    other = tmp_path / "other.zip"
    _refused(onbrand("export", "rep", "--favourites", "-o", str(other), env=env), "missing")
    assert not other.exists()
