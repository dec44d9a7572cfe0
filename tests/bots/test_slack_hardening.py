"""Slack's HTTP endpoint under attack: real slack-bolt behind ``bots.slack.http`` against the fake
Slack on 127.0.0.1 and a real PostgreSQL.

What must hold: a request not signed by Slack, for whatever reason, gets 401, makes no Web API
call and writes nothing; a signed but malformed payload gets a 4xx (or a 200 that does nothing),
no API call and no traceback at error level; and no body whatsoever gets a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from slack_bolt.request.async_request import AsyncBoltRequest
from sqlalchemy import text

from bots.slack import SlackBot
from bots.slack.http import MAX_BODY_BYTES, web_app
from core.bootstrap import App, load_brand_presets, service_config
from core.db import Database
from core.db.uow import sql_uow_factory
from core.errors import ConfigError
from core.health import check_adapters
from core.service import Service
from core.settings import Settings
from core.storage.local import LocalImageStore
from tests.fakes.slack import (
    BOT_TOKEN,
    CHANNEL_ID,
    SIGNING_SECRET,
    TEAM_ID,
    USER_ID,
    FakeSlack,
    SentRequest,
    SlackSender,
    block_actions_payload,
    event_callback,
    reaction_event,
    running_fake_slack,
    serve_aiohttp,
    serve_bolt_app,
    slash_command_form,
)
from tests.network import allowed_hosts

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(allowed_hosts())]

PRESET = "test-brand"
PRESET_YAML = f"""
name: {PRESET}
brand: Test Brand
prompt: "{{prompt}}, test brand style"
aspect_ratios:
  "1:1": [64, 64]
default_aspect: "1:1"
engine: {{kind: fake, model: fake-v1, steps: 4, guidance: 5.0}}
"""
FORM = "application/x-www-form-urlencoded"
ACTION = "ob:v:00000000-0000-0000-0000-000000000001:2"


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeSlack]:
    with running_fake_slack() as fake:
        yield fake


@dataclass
class Endpoint:
    fake: FakeSlack
    db: Database
    bot: SlackBot
    sender: SlackSender

    async def generations(self) -> int:
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM generations"))).scalar_one())

    def settle(self) -> Any:
        """Let listeners that bolt started after its ack run to their end."""
        return asyncio.sleep(0.05)


def _settings(tmp_path: Path, fake: FakeSlack, **env: Any) -> Settings:
    presets_dir = tmp_path / "presets"
    presets_dir.mkdir(exist_ok=True)
    (presets_dir / f"{PRESET}.yaml").write_text(PRESET_YAML)
    values: dict[str, Any] = {
        "SLACK_BOT_TOKEN": SecretStr(BOT_TOKEN),
        "SLACK_SIGNING_SECRET": SecretStr(SIGNING_SECRET),
        "SLACK_API_URL": fake.api_url,
        "ONBRAND_PRESETS_DIR": presets_dir,
        "ONBRAND_DATA_DIR": tmp_path / "data",
        "ONBRAND_DEFAULT_PRESET": PRESET,
    }
    return Settings(_env_file=None, **(values | env))  # type: ignore[call-arg]


async def _endpoint(
    db: Database, fake: FakeSlack, tmp_path: Path, *, bolt_server: bool = False
) -> AsyncIterator[Endpoint]:
    settings = _settings(tmp_path, fake)
    service = Service(sql_uow_factory(db), load_brand_presets(settings), service_config(settings))
    bot = SlackBot(App(settings, db, service, LocalImageStore(tmp_path / "images")))
    served = (
        serve_bolt_app(bot.bolt) if bolt_server else serve_aiohttp(bot.web_app("/slack/events"))
    )
    async with served as url:
        sender = SlackSender(url, SIGNING_SECRET, fake)
        # bolt calls auth.test once, on the first request that needs authorizing: get it done
        warm = await sender.event({"type": "app_home_opened", "user": USER_ID})
        assert warm.status == 404  # bolt's answer to an event nobody listens to
        await bot.drain()
        fake.reset()
        yield Endpoint(fake, db, bot, sender)
        await bot.drain()


@pytest.fixture
async def endpoint(
    db: Database, running_fake: FakeSlack, tmp_path: Path
) -> AsyncIterator[Endpoint]:
    async for served in _endpoint(db, running_fake, tmp_path):
        yield served


@pytest.fixture
async def bolt_endpoint(
    db: Database, running_fake: FakeSlack, tmp_path: Path
) -> AsyncIterator[Endpoint]:
    """The bolt app behind bolt's own aiohttp server: what remains is our error handler."""
    async for served in _endpoint(db, running_fake, tmp_path, bolt_server=True):
        yield served


def _command_body(text: str = "a sneaker on a beach") -> bytes:
    form = slash_command_form("/imagine", text, response_url="http://127.0.0.1:9/response")
    return urlencode(form).encode()


def _click_body() -> bytes:
    payload = block_actions_payload(ACTION, response_url="http://127.0.0.1:9/response")
    return urlencode({"payload": json.dumps(payload)}).encode()


def _now() -> str:
    return str(int(time.time()))


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of this test's code (not asyncio's notes on tasks other tests left behind)."""
    return [r for r in caplog.records if r.name != "asyncio"]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in _ours(caplog) if r.levelno >= logging.ERROR]


# --- not signed by Slack: 401, no call, no record -----------------------------------------------

UNSIGNED: dict[str, Any] = {
    "non-numeric-timestamp": {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
    "no-timestamp": {"X-Slack-Signature": "v0=00"},
    "no-signature": {"X-Slack-Request-Timestamp": "now"},
    "no-headers": {},
    "wrong-signature": {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=" + "0" * 64},
    "non-ascii-signature": {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=é"},
    "huge-timestamp": {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"},
    "negative-timestamp": {"X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": "v0=00"},
    "stale-but-signed": "stale",
}


def _unsigned_headers(sender: SlackSender, body: bytes, case: Any) -> dict[str, str]:
    if case == "stale":
        return sender.signed_headers(body, FORM, timestamp=str(int(time.time()) - 301))
    headers = {"Content-Type": FORM}
    for name, value in case.items():
        headers[name] = _now() if value == "now" else value
    return headers


@pytest.mark.parametrize("case", list(UNSIGNED.values()), ids=list(UNSIGNED))
@pytest.mark.parametrize("body", [_command_body(), _click_body()], ids=["command", "click"])
async def test_a_request_not_signed_by_slack_gets_401_and_nothing_else(
    endpoint: Endpoint, body: bytes, case: Any
) -> None:
    sent = await endpoint.sender.post_raw(body, _unsigned_headers(endpoint.sender, body, case))

    assert sent.status == 401
    await endpoint.settle()
    assert endpoint.fake.calls == []
    assert await endpoint.generations() == 0


@pytest.mark.parametrize("body", [_command_body(), _click_body()], ids=["command", "click"])
async def test_behind_bolts_own_server_a_non_numeric_timestamp_tells_nobody(
    bolt_endpoint: Endpoint, body: bytes
) -> None:
    """bolt's verifier raises on ``abc``; the error handler must not answer the body's user."""
    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "x"}
    sent = await bolt_endpoint.sender.post_raw(body, headers)

    assert sent.status == 401
    assert "went wrong" not in sent.body
    await bolt_endpoint.settle()
    assert bolt_endpoint.fake.calls == []
    assert await bolt_endpoint.generations() == 0


async def test_an_oversize_body_is_refused_unread(endpoint: Endpoint) -> None:
    body = _command_body("x" * MAX_BODY_BYTES)
    sent = await endpoint.sender.post_raw(body, endpoint.sender.signed_headers(body, FORM))

    assert sent.status == 401
    assert endpoint.fake.calls == []
    assert await endpoint.generations() == 0


async def test_a_signed_command_still_works(endpoint: Endpoint) -> None:
    body = _command_body()
    sent = await endpoint.sender.post_raw(body, endpoint.sender.signed_headers(body, FORM))

    assert (sent.status, sent.body) == (200, "")
    assert await endpoint.generations() == 1
    await endpoint.fake.wait_for(lambda f: f.calls_to("chat.postMessage"))


# --- an empty signing secret --------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "   "], ids=["empty", "blank"])
def test_an_empty_signing_secret_refuses_http_mode_and_doctor_says_so(
    tmp_path: Path, running_fake: FakeSlack, secret: str
) -> None:
    settings = _settings(tmp_path, running_fake, SLACK_SIGNING_SECRET=SecretStr(secret))
    service = Service(None, {}, service_config(settings))  # type: ignore[arg-type]
    app = App(settings, None, service, LocalImageStore(tmp_path))  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is required in HTTP mode"):
        SlackBot(app)
    [check] = check_adapters(settings)
    assert not check.ok
    assert "counts as unset): set SLACK_SIGNING_SECRET" in check.detail
    from_env = Settings(_env_file=None, SLACK_SIGNING_SECRET=secret)  # type: ignore[call-arg]
    assert from_env.slack_signing_secret is None
    socket_mode = settings.model_copy(update={"slack_app_token": SecretStr("xapp-1")})
    bot = SlackBot(App(socket_mode, app.db, app.service, app.store))  # no secret needed there
    with pytest.raises(ValueError, match="empty signing secret"):
        web_app(bot.bolt, secret, "/slack/events")  # and HTTP is never served without one


def test_empty_chat_credentials_count_as_unset() -> None:
    """deploy/compose.yaml passes every chat credential on, empty when it is not configured."""
    empty = dict.fromkeys(
        ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN"], ""
    )
    settings = Settings(_env_file=None, **empty)  # type: ignore[arg-type]

    assert (settings.slack_enabled, settings.discord_enabled) == (False, False)
    assert settings.slack_app_token is None
    assert [check.name for check in check_adapters(settings)] == ["chat adapters"]


# --- signed but malformed: 4xx or a 200 that does nothing, no call, no traceback ----------------

MALFORMED: dict[str, tuple[bytes, str]] = {
    "payload-not-json": (b"payload=notjson", FORM),
    "payload-a-list": (urlencode({"payload": "[1,2]"}).encode(), FORM),
    "payload-a-string": (urlencode({"payload": '"hi"'}).encode(), FORM),
    "json-a-list": (b"[1, 2]", "application/json"),
    "json-cut-short": (b'{"type": "event_callback", ', "application/json"),
    "not-utf8": (b'{"type": "\xff\xfe"}', "application/json"),
    "authorizations-a-number": (b'{"authorizations": 5}', "application/json"),
    "enterprise-a-number": (b'{"enterprise": 5, "type": "block_actions"}', "application/json"),
    "event-a-string": (b'{"type": "event_callback", "event": "type"}', "application/json"),
    "actions-of-strings": (
        urlencode({"payload": json.dumps({"type": "block_actions", "actions": ["x"]})}).encode(),
        FORM,
    ),
    "click-without-user": (
        urlencode(
            {"payload": json.dumps({"type": "block_actions", "actions": [{"action_id": ACTION}]})}
        ).encode(),
        FORM,
    ),
    "click-without-channel": (
        urlencode(
            {
                "payload": json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": USER_ID},
                        "team": {"id": TEAM_ID},
                        "actions": [{"action_id": ACTION}],
                    }
                )
            }
        ).encode(),
        FORM,
    ),
    "click-user-id-a-number": (
        urlencode(
            {
                "payload": json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": 5},
                        "channel": {"id": CHANNEL_ID},
                        "actions": [{"action_id": ACTION}],
                    }
                )
            }
        ).encode(),
        FORM,
    ),
    "command-without-user": (
        urlencode(
            {
                k: v
                for k, v in slash_command_form("/imagine", "a shoe", response_url="x").items()
                if k != "user_id"
            }
        ).encode(),
        FORM,
    ),
    "reaction-without-ts": (
        json.dumps(
            event_callback(
                {
                    "type": "reaction_added",
                    "user": USER_ID,
                    "reaction": "star",
                    "item": {"type": "message", "channel": CHANNEL_ID},
                }
            )
        ).encode(),
        "application/json",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_signed_malformed_payload_is_answered_without_a_call_or_a_traceback(
    endpoint: Endpoint, case: tuple[bytes, str], caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type = case
    with caplog.at_level(logging.WARNING):
        sent = await endpoint.sender.post_raw(
            body, endpoint.sender.signed_headers(body, content_type)
        )
        await endpoint.settle()
        await endpoint.bot.drain()

    assert 400 <= sent.status < 500 or (sent.status, sent.body) == (200, ""), sent
    assert endpoint.fake.calls == []
    assert await endpoint.generations() == 0
    assert _errors(caplog) == []
    assert all(r.exc_info is None for r in _ours(caplog))


async def test_a_well_formed_reaction_still_reaches_the_service(endpoint: Endpoint) -> None:
    """The reading above refuses only what is missing (the reaction is on an unknown message:
    the service looks it up and finds nothing to record)."""
    event = reaction_event("reaction_added", "star", channel=CHANNEL_ID, ts="1.000001")
    sent = await endpoint.sender.event(event)
    await endpoint.settle()
    await endpoint.bot.drain()

    assert sent.status == 200
    assert [call.method for call in endpoint.fake.calls] == ["users.info"]


# --- random bodies --------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_SLACK_KEYS = st.sampled_from(
    [
        "type",
        "command",
        "event",
        "actions",
        "user",
        "team",
        "channel",
        "container",
        "message",
        "payload",
        "ssl_check",
        "challenge",
        "authorizations",
        "enterprise",
        "text",
        "user_id",
        "channel_id",
        "team_id",
        "token",
        "view",
        "api_app_id",
    ]
)
_FORM_FIELDS = st.dictionaries(_SLACK_KEYS | st.text(max_size=8), st.text(max_size=30), max_size=6)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["bytes", "form", "json", "slack-json", "command", "payload"]))
    if kind == "bytes":
        content_type = draw(st.sampled_from([FORM, "application/json", "text/plain"]))
        return draw(st.binary(max_size=200)), content_type
    if kind == "form":
        return urlencode(draw(_FORM_FIELDS)).encode(), FORM
    if kind == "json":
        return json.dumps(draw(_JSON)).encode(), "application/json"
    if kind == "slack-json":
        body = draw(st.dictionaries(_SLACK_KEYS, _JSON, max_size=5))
        return json.dumps(body).encode(), "application/json"
    if kind == "payload":
        payload = draw(_JSON | st.dictionaries(_SLACK_KEYS, _JSON, max_size=5))
        return urlencode({"payload": json.dumps(payload)}).encode(), FORM
    command = draw(st.sampled_from(["/imagine", "/imagine-report", "/imagine-admin", "/other"]))
    form = slash_command_form(command, draw(st.text(max_size=60)), response_url="http://x/")
    for key in draw(st.lists(st.sampled_from(sorted(form)), max_size=3)):
        form[key] = draw(st.text(max_size=10))
    return urlencode(form).encode(), FORM


_SIGNING = st.sampled_from(["signed", "unsigned", "wrong", "stale", "garbage-timestamp"])


async def test_random_bodies_get_401_unsigned_and_a_handled_answer_signed(
    endpoint: Endpoint,
) -> None:
    loop = asyncio.get_running_loop()
    sender = endpoint.sender

    def headers(how: str, body: bytes, content_type: str) -> dict[str, str]:
        if how == "signed":
            return sender.signed_headers(body, content_type)
        if how == "unsigned":
            return {"Content-Type": content_type}
        signed = sender.signed_headers(body, content_type)
        if how == "wrong":
            return signed | {"X-Slack-Signature": signed["X-Slack-Signature"][:-1] + "x"}
        if how == "stale":
            return sender.signed_headers(body, content_type, timestamp=str(int(time.time()) - 400))
        return signed | {"X-Slack-Request-Timestamp": "1e9"}

    async def send(body: bytes, content_type: str, how: str) -> tuple[SentRequest, list[str]]:
        await endpoint.bot.drain()
        endpoint.fake.reset()
        sent = await sender.post_raw(body, headers(how, body, content_type))
        await endpoint.settle()
        return sent, [call.method for call in endpoint.fake.calls]

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=_bodies(), how=_SIGNING)
    def check(case: tuple[bytes, str], how: str) -> None:
        body, content_type = case
        sent, calls = asyncio.run_coroutine_threadsafe(send(body, content_type, how), loop).result(
            timeout=30
        )
        if how == "signed":
            assert sent.status < 500, (sent, body)
        else:
            assert sent.status == 401, (sent, body)
            assert calls == [], (calls, body)

    await asyncio.to_thread(check)
    await endpoint.bot.drain()
    assert (await sender.url_verification("still-up")).json() == {"challenge": "still-up"}


# --- Socket Mode: the same payloads come without HTTP, so the listeners read them carefully ------


@pytest.mark.parametrize(
    "name",
    [
        "click-without-user",
        "click-without-channel",
        "click-user-id-a-number",
        "command-without-user",
        "reaction-without-ts",
    ],
)
async def test_a_malformed_socket_mode_payload_is_ignored_without_a_call_or_a_traceback(
    db: Database,
    running_fake: FakeSlack,
    tmp_path: Path,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path, running_fake, SLACK_APP_TOKEN=SecretStr("xapp-1-fake"))
    service = Service(sql_uow_factory(db), load_brand_presets(settings), service_config(settings))
    bot = SlackBot(App(settings, db, service, LocalImageStore(tmp_path / "images")))
    warm = event_callback({"type": "app_home_opened", "user": USER_ID})
    await bot.bolt.async_dispatch(AsyncBoltRequest(body=warm, mode="socket_mode"))
    running_fake.reset()
    body, _ = MALFORMED[name]
    parsed = AsyncBoltRequest(body=body.decode(), headers={"content-type": ["x"]}).body

    with caplog.at_level(logging.WARNING):
        answer = await bot.bolt.async_dispatch(AsyncBoltRequest(body=parsed, mode="socket_mode"))
        await asyncio.sleep(0.05)
        await bot.drain()

    assert answer.status == 200
    assert running_fake.calls == []
    assert _errors(caplog) == []
    assert any("ignored a malformed" in r.getMessage() for r in caplog.records)
