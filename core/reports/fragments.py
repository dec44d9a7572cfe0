"""SQL fragments the report's statements share (``core.reports.queries``, ``core.reports.picks``).

``{range}`` and ``{copy_range}`` in a statement are filled with one of the fixed fragments below,
never with user text.
"""

from __future__ import annotations

__all__ = ["AUDIT_RANGES", "COLUMNS", "COPY_RANGES", "DETAIL_HEAD", "IN_RANGE", "LABELS", "RANGES"]

# The campaign's generations in range.
COLUMNS = """id, kind, status, platform, user_id, preset_name, preset_version,
           queued_at, started_at, finished_at, gpu_seconds"""
IN_RANGE = "FROM generations WHERE campaign_id = :cid {range}"

# An image's columns up to its engagement, in ``ImageRow``'s order, from ``im`` (the image),
# ``gen`` (its generation) and ``mk`` (its maker's label): the picks and the per-image rows go
# on from here, each with its own source of engagement.
DETAIL_HEAD = """
SELECT im.generation_id::text AS generation_id, im.index, gen.kind, mk.label AS "user",
       gen.platform, gen.queued_at AS created_at, gen.finished_at,
       gen.raw_prompt AS prompt, gen.final_prompt,
       ((gen.params->>'seed')::bigint + im.index - 1) % 4294967296 AS seed,
       gen.params->>'model' AS model, (gen.params->>'steps')::int AS steps,
       im.width, im.height, gen.preset_name AS preset, gen.preset_version,"""

# Who people are in the report: a label per user (pseudonymised on request).
LABELS = """
lab AS MATERIALIZED (
    SELECT u.id,
           CASE WHEN :pseudo THEN 'user-' || left(encode(sha256(convert_to(
                    u.platform || ':' || w.external_id || ':' || u.external_id, 'UTF8')),
                    'hex'), 10)
                ELSE coalesce(nullif(u.display_name, ''), u.platform || ':' || u.external_id)
           END AS label
    FROM users u JOIN workspaces w ON w.id = u.workspace_id
)"""

# (since, until) → the bounds on the generation's queued_at
RANGES = {
    (False, False): "",
    (True, False): "AND queued_at >= :lo",
    (False, True): "AND queued_at < :hi",
    (True, True): "AND queued_at >= :lo AND queued_at < :hi",
}
# the same bounds on the generation's queued_at as copied onto images and feedback
COPY_RANGES = {
    (False, False): "",
    (True, False): "AND generation_queued_at >= :lo",
    (False, True): "AND generation_queued_at < :hi",
    (True, True): "AND generation_queued_at >= :lo AND generation_queued_at < :hi",
}
AUDIT_RANGES = {
    (False, False): "",
    (True, False): "AND at >= :lo",
    (False, True): "AND at < :hi",
    (True, True): "AND at >= :lo AND at < :hi",
}
