"""The use cases the chat adapters and the CLI call.

Every method takes a platform-neutral ``Actor`` (and ``ReplyTarget`` where results go), works in
one unit of work (records and queue commit together or not at all) and raises ``UserError`` with
text for the person who asked when the request can't be served.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.brand import grammar
from core.brand.presets import DEFAULT_N, Limits, Preset, apply_preset
from core.cards import closing_card
from core.domain import (
    Action,
    ActionKind,
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    Generation,
    GenerationKind,
    GenerationStatus,
    ImagineRequest,
    MessageRef,
    Params,
    Platform,
    ReplyTarget,
    ResultCard,
    Role,
    Ticket,
)
from core.errors import BlockedPrompt, LockedSetting, NotAllowed, NotFound, QuotaExceeded, UserError
from core.ports import NewGeneration, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

RUSH_PRIORITY = 1000  # a rush campaign's jobs go ahead of every ordinary job
ACTIVE = (GenerationStatus.QUEUED.value, GenerationStatus.RUNNING.value)

# Reactions → feedback. Keys are normalised (no variation selector); Slack names are included
# because Slack reports reactions by name.
_NUMBERS = {
    "1\u20e3": 1,
    "2\u20e3": 2,
    "3\u20e3": 3,
    "4\u20e3": 4,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
}
_KINDS: dict[str, FeedbackKind] = {
    "⭐": FeedbackKind.FAVOURITE,
    "star": FeedbackKind.FAVOURITE,
    "❤": FeedbackKind.FAVOURITE,
    "heart": FeedbackKind.FAVOURITE,
    "👍": FeedbackKind.LIKE,
    "+1": FeedbackKind.LIKE,
    "thumbsup": FeedbackKind.LIKE,
    "👎": FeedbackKind.DISLIKE,
    "-1": FeedbackKind.DISLIKE,
    "thumbsdown": FeedbackKind.DISLIKE,
    "✅": FeedbackKind.APPROVE,
    "white_check_mark": FeedbackKind.APPROVE,
}


def feedback_for(emoji: str) -> tuple[FeedbackKind, int | None] | None:
    """What a reaction means: (kind, image index or None for the whole result), or None."""
    key = emoji.replace("\ufe0f", "").strip(":")
    key = key.split("::", 1)[0]  # Slack skin tones: "+1::skin-tone-2"
    if (number := _NUMBERS.get(key)) is not None:
        return FeedbackKind.FAVOURITE, number
    if (kind := _KINDS.get(key)) is not None:
        return kind, None
    return None


@dataclass(frozen=True)
class ReportBundle:
    """A campaign report as chat shows it: a short summary and two files."""

    campaign: str
    summary_markdown: str
    csv: str
    html: str


ReportSource = Callable[[str, date | None, date | None, bool], Awaitable[ReportBundle]]


@dataclass(frozen=True)
class ServiceConfig:
    default_preset: str
    global_banned: tuple[str, ...] = ()
    admins: frozenset[str] = frozenset()  # "platform:user-id"
    reviewers: frozenset[str] = frozenset()


def actor_key(actor: Actor) -> str:
    return f"{actor.platform.value}:{actor.workspace_id}:{actor.user_id}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        presets: Mapping[str, Preset],
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] = _utcnow,
        seed_source: Callable[[], int] | None = None,
        reports: ReportSource | None = None,
    ) -> None:
        self._uow = uow
        self._reports = reports
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

    # --- imagine ---------------------------------------------------------------------------

    async def imagine(self, text: str, actor: Actor, where: ReplyTarget) -> Ticket:
        """Parse, apply the brand's preset and policy, check quotas, record and enqueue."""
        requests = grammar.parse(text)
        checking: tuple[ImagineRequest, Preset, Campaign | None] | None = None
        try:
            async with self._uow() as uow:
                user_id = await uow.repo.ensure_user(actor)
                binding = await uow.repo.binding_for(where)
                planned: list[tuple[Params, Preset, Campaign | None, str]] = []
                for request in requests:
                    preset, campaign = await self._context(uow, request, binding)
                    checking = (request, preset, campaign)
                    params = apply_preset(
                        request,
                        preset,
                        global_banned=self.config.global_banned,
                        seed_source=self._seed,
                    )
                    planned.append((params, preset, campaign, request.prompt))

                _, first_preset, first_campaign, _ = planned[0]
                active = await self._check_quotas(
                    uow, user_id, [p for p, *_ in planned], first_preset.limits, first_campaign
                )
                ids: list[uuid.UUID] = []
                for params, preset, campaign, raw_prompt in planned:
                    preset_id = await uow.repo.record_preset(
                        preset.name, preset.version, preset.source_text
                    )
                    generation = NewGeneration(
                        id=uuid.uuid4(),
                        kind=GenerationKind.IMAGINE,
                        platform=actor.platform,
                        user_id=user_id,
                        campaign_id=campaign.id if campaign else None,
                        preset_id=preset_id,
                        raw_prompt=raw_prompt,
                        params=params,
                        reply_target=where,
                    )
                    await self._record_and_enqueue(uow, generation, campaign, active + len(ids))
                    ids.append(generation.id)
                ticket = await self._ticket(uow, ids)
                await uow.commit()
        except BlockedPrompt as blocked:
            # Nothing of the request was kept; the attempt itself is recorded for the brand.
            assert checking is not None
            await self._audit_blocked(actor, where, *checking, blocked)
            raise
        return ticket

    async def _context(
        self, uow: UnitOfWork, request: ImagineRequest, binding: Binding | None
    ) -> tuple[Preset, Campaign | None]:
        """The preset and campaign a request runs under: binding, flags, then defaults."""
        campaign: Campaign | None = None
        if binding is not None:
            if binding.locked and request.campaign and request.campaign != binding.campaign:
                raise LockedSetting(
                    f"This channel is locked to campaign {binding.campaign or '(none)'}; "
                    f"remove --campaign {request.campaign} and try again."
                )
            if binding.locked and request.preset and request.preset != binding.preset:
                raise LockedSetting(
                    f"This channel is locked to preset {binding.preset}; "
                    f"remove --preset {request.preset} and try again."
                )
        campaign_name = request.campaign or (binding.campaign if binding else None)
        if campaign_name:
            campaign = await uow.repo.campaign(campaign_name)
            if campaign is None:
                raise NotFound(
                    f"There is no campaign called {campaign_name}. "
                    "`/imagine-admin campaigns` lists them."
                )
            self._check_dates(campaign)
        preset_name = (
            request.preset
            or (binding.preset if binding else None)
            or (campaign.preset if campaign else None)
            or self.config.default_preset
        )
        return self.preset(preset_name), campaign

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
                f"(in {_humanise(tomorrow - now)}).",
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

    async def _ticket(self, uow: UnitOfWork, ids: Sequence[uuid.UUID]) -> Ticket:
        position = await uow.queue.position(ids[0])
        eta = await uow.queue.eta_seconds(ids[-1])
        return Ticket(generation_ids=tuple(ids), position=position or 1, eta_seconds=eta)

    async def _audit_blocked(
        self,
        actor: Actor,
        where: ReplyTarget,
        request: ImagineRequest,
        preset: Preset,
        campaign: Campaign | None,
        blocked: BlockedPrompt,
    ) -> None:
        """Blocked prompts are recorded (who, where, which term) in their own transaction."""
        async with self._uow() as uow:
            await uow.repo.audit(
                actor_key(actor),
                "prompt.blocked",
                f"{where.platform.value}:{where.channel_id}",
                {"term": blocked.term, "prompt": request.prompt, "preset": preset.name},
                campaign_id=campaign.id if campaign else None,
            )
            await uow.commit()
        log.info("blocked prompt from %s: term %r", actor_key(actor), blocked.term)

    # --- buttons ---------------------------------------------------------------------------

    async def act(self, custom_id: str, actor: Actor, where: ReplyTarget | None = None) -> Ticket:
        """A button press: U1–U4 upscale, V1–V4 vary, 🔄 reroll, ✖ cancel."""
        try:
            action = Action.parse(custom_id)
        except ValueError:
            raise UserError("That button isn't one of onbrand's.") from None
        async with self._uow() as uow:
            parent = await uow.repo.generation(action.generation_id)
            if parent is None:
                raise NotFound("That result no longer exists, so its buttons can't be used.")
            if action.kind is ActionKind.CANCEL:
                ticket = await self._cancel(uow, parent, actor)
            else:
                ticket = await self._derive(uow, parent, action, actor, where)
            await uow.commit()
        return ticket

    async def _cancel(self, uow: UnitOfWork, generation: Generation, actor: Actor) -> Ticket:
        if generation.requester != actor_key(actor) and not actor.has(Role.ADMIN):
            raise NotAllowed("Only the person who asked for these images or an admin can cancel.")
        if generation.status.finished:
            raise UserError(f"This job has already {_finished_words(generation.status)}.")
        await uow.queue.remove(generation.id)
        await uow.repo.set_status(generation.id, GenerationStatus.CANCELLED, only_from=ACTIVE)
        await uow.repo.audit(actor_key(actor), "generation.cancelled", str(generation.id), {})
        return Ticket(generation_ids=(generation.id,), position=0)

    async def _derive(
        self,
        uow: UnitOfWork,
        parent: Generation,
        action: Action,
        actor: Actor,
        where: ReplyTarget | None,
    ) -> Ticket:
        """A child generation: an upscale or variation of one image, or a reroll of all."""
        if action.kind in (ActionKind.UPSCALE, ActionKind.VARY):
            if parent.status is not GenerationStatus.DONE:
                raise UserError("Wait until the images are ready, then pick one.")
            if not 1 <= action.index <= parent.image_count:
                raise UserError(f"There is no image {action.index} in this result.")
        kind, params, source = {
            ActionKind.UPSCALE: (
                GenerationKind.UPSCALE,
                dataclasses.replace(parent.params, n=1),
                action.index,
            ),
            ActionKind.VARY: (
                GenerationKind.VARIATION,
                dataclasses.replace(parent.params, seed=self._seed(), n=DEFAULT_N),
                action.index,
            ),
            ActionKind.REROLL: (
                GenerationKind.REROLL,
                dataclasses.replace(parent.params, seed=self._seed()),
                None,
            ),
        }[action.kind]
        user_id = await uow.repo.ensure_user(actor)
        campaign = await uow.repo.campaign(parent.campaign) if parent.campaign else None
        if campaign is not None:
            self._check_dates(campaign)
        preset = self.presets.get(parent.params.preset)
        limits = preset.limits if preset is not None else Limits()
        active = await self._check_quotas(uow, user_id, [params], limits, campaign)
        if parent.preset_id is None:
            raise NotFound("The preset version of that result is no longer recorded.")
        child = NewGeneration(
            id=uuid.uuid4(),
            kind=kind,
            platform=actor.platform,
            user_id=user_id,
            campaign_id=parent.campaign_id,
            preset_id=parent.preset_id,
            raw_prompt=parent.raw_prompt,
            params=params,
            reply_target=where or parent.reply_target,
            parent_id=parent.id,
            source_index=source,
        )
        await self._record_and_enqueue(uow, child, campaign, active)
        return await self._ticket(uow, [child.id])

    # --- reactions -------------------------------------------------------------------------

    async def react(self, message: MessageRef, emoji: str, actor: Actor, *, added: bool) -> bool:
        """A reaction on a result message; True when it was recorded (or retracted)."""
        meaning = feedback_for(emoji)
        if meaning is None:
            return False
        kind, index = meaning
        if kind is FeedbackKind.APPROVE and not actor.has(Role.REVIEWER):
            return False  # approvals count only from reviewers
        async with self._uow() as uow:
            generation_id = await uow.repo.generation_for_message(message)
            if generation_id is None:
                return False  # a reaction on some other message
            images = await uow.repo.image_ids(generation_id)
            if index is None and len(images) == 1:
                index = next(iter(images))  # a single image (an upscale): feedback is on it
            if index is not None and index not in images:
                return False
            image_id = images[index] if index is not None else None
            user_id = await uow.repo.ensure_user(actor)
            if added:
                changed = await uow.repo.add_feedback(generation_id, image_id, user_id, kind, emoji)
            else:
                changed = await uow.repo.remove_feedback(generation_id, image_id, user_id, kind)
            await uow.commit()
        return changed

    async def record_message(self, generation_id: uuid.UUID, ref: MessageRef, role: str) -> None:
        """Remember a message an adapter posted, so reactions and edits can find it."""
        async with self._uow() as uow:
            await uow.repo.record_message(generation_id, ref, role)
            await uow.commit()

    async def record_status_message(
        self, generation_id: uuid.UUID, ref: MessageRef
    ) -> ResultCard | None:
        """Remember an adapter's 'Queued' message, which progress edits and delivery closes.

        A fast job can finish and be delivered before its status message is recorded; then the
        delivery could not close it, so this returns the card the message should show now.
        """
        async with self._uow() as uow:
            await uow.repo.record_message(generation_id, ref, "status")
            generation = await uow.repo.generation(generation_id)
            await uow.commit()
        if generation is not None and generation.status.finished:
            return closing_card(generation)
        return None

    async def generation(self, generation_id: uuid.UUID) -> Generation:
        async with self._uow() as uow:
            found = await uow.repo.generation(generation_id)
        if found is None:
            raise NotFound(f"No generation {generation_id}.")
        return found

    # --- campaigns and bindings ------------------------------------------------------------

    async def create_campaign(
        self,
        actor: Actor,
        name: str,
        preset: str,
        *,
        starts_on: date | None = None,
        ends_on: date | None = None,
        gpu_budget_seconds: float | None = None,
        rush: bool = False,
    ) -> Campaign:
        self._require(actor, Role.ADMIN, "create campaigns")
        self.preset(preset)
        grammar.check_name("campaign", name)
        if starts_on and ends_on and ends_on < starts_on:
            raise UserError("The campaign must end on or after the day it starts.")
        async with self._uow() as uow:
            owner = await uow.repo.ensure_user(actor)
            created = await uow.repo.add_campaign(
                Campaign(name, preset, starts_on, ends_on, gpu_budget_seconds, rush), owner
            )
            await uow.repo.audit(
                actor_key(actor), "campaign.created", name, {"preset": preset}, created.id
            )
            await uow.commit()
        return created

    async def campaigns(self) -> list[Campaign]:
        async with self._uow() as uow:
            return await uow.repo.campaigns()

    async def bind(
        self,
        actor: Actor,
        where: ReplyTarget,
        *,
        campaign: str | None = None,
        preset: str | None = None,
        locked: bool = False,
    ) -> Binding:
        """Bind a channel to a campaign (and its preset) or to a preset alone."""
        self._require(actor, Role.ADMIN, "bind channels")
        if campaign is None and preset is None:
            raise UserError("Name a campaign or a preset to bind this channel to.")
        async with self._uow() as uow:
            found = await uow.repo.campaign(campaign) if campaign else None
            if campaign and found is None:
                raise NotFound(f"There is no campaign called {campaign}.")
            preset_name = preset or (found.preset if found else self.config.default_preset)
            self.preset(preset_name)
            binding = Binding(
                where.platform, where.workspace_id, where.channel_id, preset_name, campaign, locked
            )
            user_id = await uow.repo.ensure_user(actor)
            await uow.repo.save_binding(binding, user_id)
            await uow.repo.audit(
                actor_key(actor),
                "binding.saved",
                f"{where.platform.value}:{where.channel_id}",
                _binding_details(binding),
                found.id if found else None,
            )
            await uow.commit()
        return binding

    async def unbind(self, actor: Actor, where: ReplyTarget) -> bool:
        self._require(actor, Role.ADMIN, "unbind channels")
        async with self._uow() as uow:
            removed = await uow.repo.delete_binding(where)
            if removed:
                await uow.repo.audit(
                    actor_key(actor),
                    "binding.deleted",
                    f"{where.platform.value}:{where.channel_id}",
                    {},
                )
            await uow.commit()
        return removed

    # --- reports ---------------------------------------------------------------------------

    async def report(
        self,
        actor: Actor,
        campaign: str,
        *,
        since: date | None = None,
        until: date | None = None,
        pseudonymise: bool = False,
    ) -> ReportBundle:
        """A campaign report for admins and reviewers: a summary plus CSV and HTML files."""
        self._require(actor, Role.REVIEWER, "see campaign reports")
        if self._reports is None:
            raise UserError("Reports are not available in this process.")
        return await self._reports(campaign, since, until, pseudonymise)

    @staticmethod
    def _require(actor: Actor, role: Role, what: str) -> None:
        if not actor.has(role):
            raise NotAllowed(f"Only {role.value}s can {what}.")


def _binding_details(binding: Binding) -> dict[str, Any]:
    return {"campaign": binding.campaign, "preset": binding.preset, "locked": binding.locked}


def _finished_words(status: GenerationStatus) -> str:
    return {"done": "finished", "failed": "failed", "cancelled": "been cancelled"}[status.value]


def _humanise(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
