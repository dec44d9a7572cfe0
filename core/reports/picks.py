"""The report's picks statement: the top and approved images with their details, the approved
images' lineage and the HTML contact sheet.

It reads each image's engagement from the image itself (``favourites``, ``likes``,
``dislikes``, ``approved_at``) and the grid's from its generation (``grid_favourites``,
``grid_likes``, ``grid_dislikes``): counters kept by triggers in the writing transaction
(migrations d770701256a5 and de10912017cf). So it starts from three small partial indexes
instead of the campaign's feedback rows: the approved images (``ix_images_campaign_approved``,
index only), the most favourited ones (``ix_images_campaign_top``, its head) and who approved
what (``ix_feedback_campaign_approvals``). It needs nothing from the figures, so it runs beside
them on a second connection in the same snapshot (see ``core.reports.build``).

It takes ``:cid``, ``:pseudo``, ``:top``, ``:sheet`` and ``:max_depth``, plus ``:lo`` and
``:hi`` for the range it was made for (``{range}``, ``{copy_range}``: ``core.reports.fragments``).
"""

from __future__ import annotations

from core.reports.fragments import DETAIL_HEAD, IN_RANGE, LABELS

__all__ = ["PICKS"]

# Images with every detail (ImageRow's columns, in order); {source} is a FROM clause giving `im`
# (images, or rows with the same columns), {generations} their generations (the table, or apg),
# {where} picks the images.
_DETAIL = (
    DETAIL_HEAD
    + """
       im.favourites, im.likes, im.dislikes,
       gen.grid_favourites, gen.grid_likes, gen.grid_dislikes,
       im.approved_at IS NOT NULL AS approved,
       coalesce(appr.approved_by, ARRAY[]::text[]) AS approved_by,
       im.approved_at, im.palette_score, im.storage_key
{source}
JOIN {generations} gen ON gen.id = im.generation_id
JOIN lab mk ON mk.id = gen.user_id
LEFT JOIN appr ON appr.image_id = im.id
{where}
"""
)

PICKS = (
    """
WITH RECURSIVE
"""
    + LABELS
    + """,
ap AS MATERIALIZED (  -- the approved images, with what the report shows of them (index only)
    SELECT id, generation_id, index, width, height, palette_score, storage_key,
           favourites, likes, dislikes, approved_at
    FROM images
    WHERE campaign_id = :cid AND approved_at IS NOT NULL {copy_range}
),
apv AS MATERIALIZED (  -- the campaign's approvals, of images and of whole grids
    SELECT generation_id, image_id, user_id, created_at FROM feedback
    WHERE campaign_id = :cid AND kind = 'approve' {copy_range}
),
appr AS MATERIALIZED (  -- who approved each approved image, first approver first
    SELECT a.image_id, array_agg(lab.label ORDER BY a.at, lab.label) AS approved_by
    FROM (
        SELECT image_id, user_id, min(at) AS at
        FROM (
            SELECT ap.id AS image_id, apv.user_id, apv.created_at AS at
            FROM ap JOIN apv ON apv.image_id = ap.id AND apv.generation_id = ap.generation_id
            UNION ALL  -- an approval of the grid approves its images
            SELECT ap.id, apv.user_id, apv.created_at
            FROM ap JOIN apv ON apv.generation_id = ap.generation_id AND apv.image_id IS NULL
        ) x
        GROUP BY image_id, user_id
    ) a
    JOIN lab ON lab.id = a.user_id
    GROUP BY a.image_id
),
top AS (  -- the head of ix_images_campaign_top: the report's order
    SELECT id FROM images
    WHERE campaign_id = :cid AND favourites > 0 {copy_range}
    ORDER BY favourites DESC, likes DESC, generation_queued_at, id
    LIMIT :top
),
rg AS (  -- the newest generations that made images (only a done generation stores images)
    SELECT id, queued_at """
    + IN_RANGE
    + """ AND status = 'done'
    ORDER BY queued_at DESC, id DESC
    LIMIT :sheet
),
recent AS (  -- each has ≥ 1 image, so :sheet generations hold the newest :sheet images
    SELECT im.id FROM rg JOIN images im ON im.generation_id = rg.id
    ORDER BY rg.queued_at DESC, rg.id DESC, im.index
    LIMIT :sheet
),
apg AS MATERIALIZED (  -- the approved images' generations: their details and lineage roots
    SELECT id, parent_id, source_index, kind, user_id, platform, queued_at, finished_at,
           raw_prompt, final_prompt, params, preset_name, preset_version,
           grid_favourites, grid_likes, grid_dislikes
    FROM generations WHERE id IN (SELECT generation_id FROM ap)
),
chain AS (  -- walked once per approved generation; its images share the chain
    SELECT id AS root, 0 AS depth, id, parent_id, source_index, NULL::int AS used_index,
           kind, user_id, raw_prompt, queued_at, NULL::text AS storage_key
    FROM apg
    UNION ALL  -- the parent, and the image of it that the child was made from
    SELECT c.root, c.depth + 1, p.id, p.parent_id, p.source_index,
           c.source_index, p.kind, p.user_id, p.raw_prompt, p.queued_at, used.storage_key
    FROM chain c JOIN generations p ON p.id = c.parent_id
    LEFT JOIN images used ON used.generation_id = p.id AND used.index = c.source_index
    WHERE p.campaign_id = :cid AND c.depth < :max_depth
),
steps AS MATERIALIZED (  -- each chain as arrays (oldest step last), which travel as binary
    SELECT c.root, array_agg(c.depth ORDER BY c.depth) AS depths,
           array_agg(c.id::text ORDER BY c.depth) AS ids,
           array_agg(c.kind::text ORDER BY c.depth) AS kinds,
           array_agg(c.used_index ORDER BY c.depth) AS used_indexes,
           array_agg(lab.label ORDER BY c.depth) AS users,
           array_agg(c.raw_prompt ORDER BY c.depth) AS prompts,
           array_agg(c.queued_at ORDER BY c.depth) AS times,
           array_agg(c.storage_key ORDER BY c.depth) AS keys
    FROM chain c JOIN lab ON lab.id = c.user_id
    GROUP BY c.root
)
-- One row per approved image (ImageRow's columns, its place n in order of approval and nth
-- among its generation's, then the generation's lineage as arrays on the first row of each
-- generation, NULLs on the others), in order of approval; the first row
-- (or a lone row of NULLs when nothing is approved) also carries the top images and the contact
-- sheet as JSON.
SELECT CASE WHEN d.n IS NULL OR d.n = 1 THEN h.top_images END AS top_images,
       CASE WHEN d.n IS NULL OR d.n = 1 THEN h.recent_images END AS recent_images,
       d.*
FROM (
    SELECT (SELECT json_agg(t ORDER BY t.favourites DESC, t.likes DESC, t.created_at,
                            t.generation_id, t.index) FROM (
                """
    + _DETAIL.format(
        source="FROM images im",
        generations="generations",
        where="WHERE im.id IN (SELECT id FROM top)",
    )
    + """
            ) t) AS top_images,
           (SELECT json_agg(t ORDER BY t.created_at DESC, t.generation_id DESC, t.index) FROM (
                """
    + _DETAIL.format(
        source="FROM images im",
        generations="generations",
        where="WHERE im.id IN (SELECT id FROM recent)",
    )
    + """
            ) t) AS recent_images
) h
LEFT JOIN (
    SELECT a.*, s.depths, s.ids, s.kinds, s.used_indexes, s.users, s.prompts, s.times, s.keys
    FROM (
        SELECT a.*,
               row_number() OVER (ORDER BY a.approved_at, a.generation_id, a.index) AS n,
               row_number() OVER (PARTITION BY a.generation_id
                                  ORDER BY a.approved_at, a.index) AS nth
        FROM (
            """
    + _DETAIL.format(source="FROM ap im", generations="apg", where="")
    + """
        ) a
    ) a
    LEFT JOIN steps s ON s.root::text = a.generation_id AND a.nth = 1
) d ON true
ORDER BY d.n
"""
)
