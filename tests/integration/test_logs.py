"""Structured logs: JSON lines off a terminal, the bound ids on every line, and no secret in the
output of a full run at debug level."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.ops.logs import MASK, SecretMasker, bound, setup_logging
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SLACK_TOKEN = "xoxb-000-111-onbrandLogTestSlackToken"
DISCORD_TOKEN = "MTAwMDAw.onbrand-log-test.discord-token-value"
OPENAI_KEY = "sk-onbrand-log-test-openai-key-0123456789"
SIGNING = "onbrand-log-test-signing-secret"
AWS_SECRET = "onbrand/log+test/aws/secret/access/key"
DB_PASSWORD = "onbrand-log-test-db-password"
PRESET = """
name: log-test
brand: Log Test
prompt: "{prompt}, test style"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 3, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(**options: object) -> io.StringIO:
    stream = io.StringIO()
    setup_logging(stream=stream, **options)  # type: ignore[arg-type]
    return stream


def test_json_lines_carry_level_logger_message_and_the_bound_ids() -> None:
    stream = capture(fmt="json", level="INFO", secrets=())
    log = logging.getLogger("onbrand.test")
    with bound(generation="g-1", correlation="c-1"):
        log.info("made %d images", 4)
    log.warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info"
    assert first["logger"] == "onbrand.test"
    assert first["message"] == "made 4 images"
    assert (first["generation_id"], first["correlation_id"]) == ("g-1", "c-1")
    assert first["time"].endswith("+00:00")
    assert "generation_id" not in second


def test_text_format_on_a_terminal_and_tracebacks_stay_masked() -> None:
    stream = capture(fmt="text", level="INFO", secrets=["hunter2-secret"])
    log = logging.getLogger("onbrand.test")
    try:
        raise RuntimeError("failed with hunter2-secret")
    except RuntimeError:
        with bound(generation="g-2"):
            log.exception("boom with %s", "hunter2-secret")
    output = stream.getvalue()
    assert "hunter2-secret" not in output
    assert "boom with ********" in output
    assert "[generation=g-2]" in output
    assert "RuntimeError: failed with ********" in output


def test_the_masker_hides_configured_secrets_and_token_shapes() -> None:
    mask = SecretMasker(["configured-secret", "abc"])  # too short to mask safely: ignored
    assert mask("x configured-secret y") == f"x {MASK} y"
    assert mask("abc") == "abc"
    assert mask(f"token {SLACK_TOKEN}") == f"token {MASK}"
    assert mask("Authorization: Bot " + "a" * 40) == f"Authorization: {MASK}"


def test_settings_list_every_secret_and_the_database_password() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        OPENAI_API_KEY=OPENAI_KEY,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        DATABASE_URL=f"postgresql://onbrand:{DB_PASSWORD}@db/onbrand",
    )
    secrets = settings.secret_values()
    for value in (SLACK_TOKEN, OPENAI_KEY, AWS_SECRET, DB_PASSWORD):
        assert value in secrets


@pytest.mark.integration
@pytest.mark.usefixtures("db")  # an emptied database
def test_a_full_run_at_debug_level_logs_json_and_never_a_configured_secret(
    database_url: str, tmp_path: Path
) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "log-test.yaml").write_text(PRESET)
    url = database_url.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in url  # trust authentication: the server never asks for it
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ONBRAND_", "SLACK_", "AWS_"))
    } | {
        "DATABASE_URL": url,
        "ONBRAND_DATA_DIR": str(tmp_path / "data"),
        "ONBRAND_PRESETS_DIR": str(presets),
        "ONBRAND_DEFAULT_PRESET": "log-test",
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING,
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "OPENAI_API_KEY": OPENAI_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bots.cli", "--verbose", "imagine", "a logged circle",
         "--out", str(tmp_path / "out")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in (SLACK_TOKEN, DISCORD_TOKEN, OPENAI_KEY, SIGNING, AWS_SECRET, DB_PASSWORD):
        assert secret not in output, f"a configured secret was logged: {secret[:12]}…"
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(records) > 10, result.stderr[-2000:]  # debug level: plenty was logged
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["level"] == "debug" for r in records)
