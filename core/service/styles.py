"""Style codes: governed reference images that give a brand its look (``core.brand.styles``).

Admins register a set of reference images as a code (``create_style``): every file passes the
upload checks (``core.imaging.uploads.clean_upload``: size, type from the bytes, pixel cap,
metadata dropped), all of them before anything is written; the clean PNGs go to the image
store by content hash; the code is the hash of the brand, the workspace it is limited to (if
any) and the images' sha256s, so the same images give the same code. Codes are listed per brand
and retired (never deleted: generations keep naming them).

A request that names a code (``--style CODE``, or a preset's ``style.code``) gets the code's
references when it is the preset's brand's, usable in the asking workspace and not retired;
otherwise the person who asked is told privately, and nothing is queued. Whether a preset
takes user codes at all, and the weights ``--sw`` may reach, is the preset's call
(``core.brand.styles.style_fields``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Protocol

from core.brand.presets import Preset
from core.brand.styles import StyleCodeInfo, style_code
from core.domain import Actor, Params, Role
from core.errors import NotFound, UserError
from core.imaging.uploads import UploadRefused, clean_upload
from core.ports import ImageStore
from core.service.base import UseCase, actor_key

__all__ = ["MAX_REFERENCES", "StyleRegistry", "Styles", "resolve_style"]

MAX_REFERENCES = 8


class StyleRegistry(Protocol):
    """Where style codes are kept (``core.db.styles.SqlStyleCodes``)."""

    async def add(self, info: StyleCodeInfo) -> tuple[StyleCodeInfo, bool]: ...
    async def get(self, code: str) -> StyleCodeInfo | None: ...
    async def list(
        self, brand: str | None = None, *, retired: bool = False
    ) -> list[StyleCodeInfo]: ...
    async def retire(self, code: str, by: str) -> StyleCodeInfo | None: ...


def _unknown(code: str, brand: str) -> NotFound:
    return NotFound(
        f"There is no style code {code} for {brand}. `onbrand style list` (admins) shows the "
        "brand's codes; check the spelling, or leave --style out for the preset's own look."
    )


async def resolve_style(
    registry: StyleRegistry | None, params: Params, preset: Preset, actor: Actor
) -> Params:
    """``params`` with the references of the registered code they name (unchanged when they
    name none, or the preset's own references)."""
    code = params.style_code
    if code is None or params.style_refs:
        return params
    if registry is None:
        raise NotFound("Style codes are not set up on this onbrand; leave --style out.")
    info = await registry.get(code)
    workspace = (actor.platform.value, actor.workspace_id)
    if (
        info is None
        or info.brand.casefold() != preset.brand.casefold()
        or (info.workspace is not None and info.workspace != workspace)
    ):
        raise _unknown(code, preset.brand)  # another brand's code is none of this user's business
    if info.retired_at is not None:
        raise UserError(
            f"Style code {code} was retired on {info.retired_at:%Y-%m-%d}; ask a {preset.brand} "
            "admin for the brand's current codes, or leave --style out."
        )
    return dataclasses.replace(params, style_refs=info.refs)


class Styles(UseCase):
    # Wired by ``Service`` (``store=``, ``styles=``); without them style codes are refused.
    _store: ImageStore | None = None
    _style_codes: StyleRegistry | None = None

    def _registry(self) -> StyleRegistry:
        if self._style_codes is None:
            raise RuntimeError("Service was built without a style code registry")
        return self._style_codes

    def _brand(self, brand: str) -> str:
        """The brand as the presets spell it; ``NotFound`` naming the brands there are."""
        brands = {p.brand.casefold(): p.brand for p in self.presets.values()}
        found = brands.get(brand.strip().casefold())
        if found is None:
            known = ", ".join(sorted(brands.values())) or "none"
            raise NotFound(f"No preset is for a brand called {brand!r}; the brands are: {known}.")
        return found

    async def create_style(
        self,
        actor: Actor,
        files: Sequence[tuple[str, bytes]],
        *,
        brand: str,
        label: str = "",
        this_workspace_only: bool = False,
    ) -> tuple[StyleCodeInfo, bool]:
        """Register ``files`` ((name, bytes) pairs) as one of ``brand``'s style codes; the code,
        and whether it is new (the same images again give the same code)."""
        self._require(actor, Role.ADMIN, "register style codes")
        registry, store = self._registry(), self._store
        if store is None:
            raise RuntimeError("Service was built without an image store")
        chosen = self._brand(brand)
        if not 1 <= len(files) <= MAX_REFERENCES:
            raise UserError(
                f"A style code takes 1 to {MAX_REFERENCES} reference images; got {len(files)}."
            )
        if len(label) > 200:
            raise UserError("The label is over 200 characters; shorten it.")
        cleaned = []
        for name, data in files:  # every file checked before anything is written
            try:
                cleaned.append(await asyncio.to_thread(clean_upload, data))
            except UploadRefused as refused:
                raise UploadRefused(f"{name}: {refused.user_message}") from None
        keys = [await store.put(clean.png, suffix=".png") for clean in cleaned]
        workspace = (actor.platform.value, actor.workspace_id) if this_workspace_only else None
        digests = [clean.sha256 for clean in cleaned]
        info = StyleCodeInfo(
            code=style_code(digests, chosen, ":".join(workspace) if workspace else None),
            brand=chosen,
            label=label.strip(),
            references=tuple(zip(digests, keys, strict=True)),
            created_by=actor_key(actor),
            created_at=self._clock(),
            workspace=workspace,
        )
        return await registry.add(info)

    async def style_codes(
        self, actor: Actor, brand: str | None = None, *, retired: bool = False
    ) -> list[StyleCodeInfo]:
        """The registered codes (of one brand), newest last; retired ones only when asked."""
        self._require(actor, Role.ADMIN, "list style codes")
        return await self._registry().list(self._brand(brand) if brand else None, retired=retired)

    async def retire_style(self, actor: Actor, code: str) -> StyleCodeInfo:
        """Retire ``code``: requests naming it are refused from now on."""
        self._require(actor, Role.ADMIN, "retire style codes")
        info = await self._registry().retire(code.strip().lower(), actor_key(actor))
        if info is None:
            raise NotFound(f"There is no style code {code}; `onbrand style list` shows them.")
        return info
