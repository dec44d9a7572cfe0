"""The bot token's scopes are checked against onbrand's at start: a grant older than the
manifest (the app not reinstalled after an upgrade) is named, scope by scope."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import slack_client
from bots.slack.scopes import SCOPES, missing_scopes
from core.settings import Settings
from tests.bots.test_slack_transports import fake as fake  # a fixture
from tests.bots.test_slack_transports import running_fake as running_fake
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.network import allowed_hosts

pytestmark = [pytest.mark.allow_hosts(allowed_hosts())]

REPO = Path(__file__).resolve().parents[2]


def _client(fake: FakeSlack) -> AsyncWebClient:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=SecretStr(BOT_TOKEN),
        SLACK_API_URL=fake.api_url,
    )
    return slack_client(settings)


def test_the_scopes_checked_are_the_manifests() -> None:
    manifest = yaml.safe_load((REPO / "deploy" / "slack-manifest.yaml").read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(SCOPES)


async def test_a_grant_without_the_history_scopes_is_named_scope_by_scope(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.scopes = [s for s in fake.scopes if not s.endswith(":history")]
    with caplog.at_level(logging.WARNING, logger="bots.slack.scopes"):
        missing = await missing_scopes(_client(fake))
    assert missing == ["channels:history", "groups:history"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "lacks the channels:history scope" in lines[0]
    assert "public channels" in lines[0]
    assert all("Reinstall the app" in line for line in lines)


async def test_the_full_grant_passes_quietly(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bots.slack.scopes"):
        assert await missing_scopes(_client(fake)) == []
    assert caplog.records == []
