"""What every use case of the service shares: its configuration, its collaborators (a unit of
work per call, the presets, a clock, a seed source) and the rules more than one use case applies
(which preset a name means, campaign dates, quotas, fair enqueueing, the ticket, roles)."""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.brand.characters import check_characters
from core.brand.presets import Limits, Preset
from core.domain import (
    Actor,
    Campaign,
    Generation,
    GenerationKind,
    GenerationStatus,
    NewGeneration,
    Params,
    Platform,
    ReplyTarget,
    RequestKey,
    Role,
    Ticket,
)
from core.errors import DuplicateRequest, NotAllowed, NotFound, QuotaExceeded, UserError
from core.humanise import duration
from core.ports import UnitOfWork, UnitOfWorkFactory

RUSH_PRIORITY = 1000  # a rush campaign's jobs go ahead of every ordinary job
ACTIVE = (GenerationStatus.QUEUED.value, GenerationStatus.RUNNING.value)

# The most characters a name or a platform id may have: the columns that hold them in
# core/db/models.py (a test checks that the two agree).
NAME_MAX = 64
ID_MAX = 64
GPU_BUDGET_MAX_SECONDS = 10**9  # about 32 years of one GPU: more is no budget at all


def check_text(what: str, value: str, most: int) -> str:
    """``value`` when it fits a column of ``most`` characters and holds no control character;
    otherwise a ``UserError`` naming ``what`` and the limit. Run before anything is written."""
    if len(value) > most:
        raise UserError(
            f"{what} is {len(value):,} characters long; the most is {most}. "
            "Shorten it and try again."
        )
    return check_characters(value, what)


def check_gpu_budget(seconds: float | None) -> float | None:
    """A campaign's GPU budget: none, or a finite number of seconds above 0."""
    if seconds is not None and not (
        math.isfinite(seconds) and 0 < seconds <= GPU_BUDGET_MAX_SECONDS
    ):
        raise UserError(
            f"The GPU budget {seconds:g} s can't be used: give a number of seconds above 0 and "
            f"at most {GPU_BUDGET_MAX_SECONDS:,}, e.g. 3600, or leave it out for no budget."
        )
    return seconds


@dataclass(frozen=True)
class ServiceConfig:
    default_preset: str
    global_banned: tuple[str, ...] = ()
    admins: frozenset[str] = frozenset()  # "platform:user-id"
    reviewers: frozenset[str] = frozenset()


def actor_key(actor: Actor) -> str:
    return f"{actor.platform.value}:{actor.workspace_id}:{actor.user_id}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UseCase:
    """The state and shared rules of the service; ``core.service.Service`` composes the use
    cases (one class per module of this package) over it."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        presets: Mapping[str, Preset],
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        seed_source: Callable[[], int] | None = None,
    ) -> None:
        self._uow = uow
        self.presets = dict(presets)
        self.config = config
        self._clock = clock
        self._seed = seed_source or (lambda: secrets.randbelow(2**32))

    # --- roles -----------------------------------------------------------------------------

    def roles_for(
        self,
        platform: Platform,
        user_id: str,
        *,
        platform_admin: bool = False,
        platform_reviewer: bool = False,
    ) -> frozenset[Role]:
        """Roles from settings (``platform:user-id`` lists) and what the platform says."""
        key = f"{platform.value}:{user_id}"
        roles = {Role.MEMBER}
        if platform_admin or key in self.config.admins:
            roles.add(Role.ADMIN)
        if platform_reviewer or key in self.config.reviewers:
            roles.add(Role.REVIEWER)
        return frozenset(roles)

    @staticmethod
    def _require(actor: Actor, role: Role, what: str) -> None:
        if not actor.has(role):
            raise NotAllowed(f"Only {role.value}s can {what}.")

    @staticmethod
    def _check_ids(actor: Actor, where: ReplyTarget | None = None) -> None:
        """The platform ids a request carries fit their columns and hold no control character
        (PostgreSQL refuses NUL), so a malformed one is refused before anything is written."""
        check_text("The workspace id", actor.workspace_id, ID_MAX)
        check_text("The user id", actor.user_id, ID_MAX)
        check_characters(actor.display_name, "The display name")
        if where is not None:
            check_text("The workspace id", where.workspace_id, ID_MAX)
            check_text("The channel id", where.channel_id, ID_MAX)
            if where.thread_id is not None:
                check_text("The thread id", where.thread_id, ID_MAX)

    # --- presets, dates and quotas ---------------------------------------------------------

    def preset(self, name: str) -> Preset:
        try:
            return self.presets[name]
        except KeyError:
            raise NotFound(
                f"There is no preset called {name}; use one of: {', '.join(sorted(self.presets))}."
            ) from None

    def _check_dates(self, campaign: Campaign) -> None:
        today = self._clock().date()
        if campaign.starts_on and today < campaign.starts_on:
            raise QuotaExceeded(
                f"Campaign {campaign.name} starts on {campaign.starts_on:%Y-%m-%d}; "
                "try again then.",
                retry_at=datetime.combine(campaign.starts_on, datetime.min.time(), UTC),
            )
        if campaign.ends_on and today > campaign.ends_on:
            raise QuotaExceeded(
                f"Campaign {campaign.name} ended on {campaign.ends_on:%Y-%m-%d}; "
                "ask an admin to extend it or bind this channel to another campaign."
            )

    async def _check_quotas(
        self,
        uow: UnitOfWork,
        user_id: int,
        params: Sequence[Params],
        limits: Limits,
        campaign: Campaign | None,
    ) -> int:
        """Raise ``QuotaExceeded`` if this would go over a limit; else the user's active jobs."""
        now = self._clock()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        wanted = sum(p.n for p in params)
        used = await uow.repo.images_requested_since(user_id, midnight)
        if used + wanted > limits.images_per_user_per_day:
            tomorrow = midnight + timedelta(days=1)
            raise QuotaExceeded(
                f"You've made {used} of your {limits.images_per_user_per_day} images today and "
                f"this asks for {wanted} more. Try again after 00:00 UTC "
                f"(in {duration((tomorrow - now).total_seconds())}).",
                retry_at=tomorrow,
            )
        active = await uow.repo.active_count(user_id)
        if active + len(params) > limits.queued_per_user:
            raise QuotaExceeded(
                f"You have {active} job(s) waiting or running and may have at most "
                f"{limits.queued_per_user}; try again when one finishes"
                + (" (or ask for fewer {…} options)." if len(params) > 1 else ".")
            )
        if campaign is not None and campaign.gpu_budget_seconds is not None:
            assert campaign.id is not None
            spent = await uow.repo.campaign_gpu_seconds(campaign.id)
            if spent >= campaign.gpu_budget_seconds:
                raise QuotaExceeded(
                    f"Campaign {campaign.name} has used its GPU budget "
                    f"({spent:.0f} of {campaign.gpu_budget_seconds:.0f} s); "
                    "ask an admin to raise it."
                )
        return active

    # --- recording and queueing ------------------------------------------------------------

    @staticmethod
    async def _first_time(uow: UnitOfWork, key: RequestKey | None) -> None:
        """Record the request's ``key`` in ``uow`` (first, so that a copy arriving at the same
        time waits here for this unit of work); ``DuplicateRequest`` when a request with that
        key was handled already. No key (the CLI, a platform that gives none): no check."""
        if key is not None and not await uow.receipts.record(key):
            raise DuplicateRequest(f"this {key.platform.value} {key.kind} was handled already")

    async def _record_and_enqueue(
        self,
        uow: UnitOfWork,
        generation: NewGeneration,
        campaign: Campaign | None,
        waiting: int,
    ) -> None:
        # Fairness: a job's priority is minus the number of jobs its user already has waiting,
        # so the queue serves users round-robin; rush campaigns get a level of their own.
        await uow.repo.add_generation(generation)
        boost = RUSH_PRIORITY if campaign is not None and campaign.rush else 0
        await uow.queue.enqueue(generation.id, priority=boost - waiting)

    async def _enqueue_child(
        self,
        uow: UnitOfWork,
        parent: Generation,
        kind: GenerationKind,
        params: Params,
        *,
        actor: Actor,
        user_id: int,
        where: ReplyTarget | None,
        source_index: int | None,
        campaign: Campaign | None,
        waiting: int,
        raw_prompt: str | None = None,
    ) -> uuid.UUID:
        """Record and queue a generation made from ``parent`` (its campaign, preset version,
        prompt unless given and reply target unless ``where``); its id."""
        if parent.preset_id is None:
            raise NotFound("The preset version of that result is no longer recorded.")
        child = NewGeneration(
            id=uuid.uuid4(),
            kind=kind,
            platform=actor.platform,
            user_id=user_id,
            campaign_id=parent.campaign_id,
            preset_id=parent.preset_id,
            raw_prompt=parent.raw_prompt if raw_prompt is None else raw_prompt,
            params=params,
            reply_target=where or parent.reply_target,
            parent_id=parent.id,
            source_index=source_index,
        )
        await self._record_and_enqueue(uow, child, campaign, waiting)
        return child.id

    async def _ticket(self, uow: UnitOfWork, ids: Sequence[uuid.UUID]) -> Ticket:
        position = await uow.queue.position(ids[0])
        eta = await uow.queue.eta_seconds(ids[-1])
        return Ticket(generation_ids=tuple(ids), position=position or 1, eta_seconds=eta)
