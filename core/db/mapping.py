"""Rows ⇄ domain values: the JSON columns (parameters, reply targets) and the rows the
repository and the worker's queries read back as ``Generation`` and ``Campaign``."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.db import models as m
from core.domain import Campaign, Generation, Params, Platform, ReplyTarget

__all__ = [
    "campaign_from_row",
    "generation_from_row",
    "params_from_json",
    "params_to_json",
    "reply_target_from_json",
    "reply_target_to_json",
]

_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(Params))


def params_to_json(params: Params) -> dict[str, Any]:
    return dataclasses.asdict(params)


def params_from_json(data: dict[str, Any]) -> Params:
    """Inverse of ``params_to_json``; keys this version doesn't know are ignored."""
    values = {name: data[name] for name in _PARAM_FIELDS if name in data}
    for box in ("product_box", "edit_region"):  # JSON has lists, the domain tuples
        if values.get(box) is not None:
            values[box] = tuple(values[box])
    return Params(**values)


def reply_target_to_json(target: ReplyTarget) -> dict[str, Any]:
    return {
        "platform": target.platform.value,
        "workspace_id": target.workspace_id,
        "channel_id": target.channel_id,
        "thread_id": target.thread_id,
    }


def reply_target_from_json(data: dict[str, Any]) -> ReplyTarget:
    return ReplyTarget(
        Platform(data["platform"]), data["workspace_id"], data["channel_id"], data.get("thread_id")
    )


def campaign_from_row(row: m.Campaign) -> Campaign:
    return Campaign(
        name=row.name,
        preset=row.preset_name,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        gpu_budget_seconds=row.gpu_budget_seconds,
        rush=row.rush,
        id=row.id,
        share_prompt=row.share_prompt,
        require_approval=tuple(row.require_approval or ()),
    )


def generation_from_row(
    gen: m.Generation, requester: str, campaign: str | None, image_count: int
) -> Generation:
    """A generation row, with what the repository joined to it, as the domain sees it."""
    return Generation(
        id=gen.id,
        kind=gen.kind,
        status=gen.status,
        user_id=gen.user_id,
        requester=requester,
        raw_prompt=gen.raw_prompt,
        params=params_from_json(gen.params),
        reply_target=reply_target_from_json(gen.reply_target),
        parent_id=gen.parent_id,
        source_index=gen.source_index,
        campaign=campaign,
        campaign_id=gen.campaign_id,
        image_count=image_count,
        error=gen.error,
        preset_id=gen.preset_id,
    )
