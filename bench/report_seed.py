"""The seed of ``python -m bench report`` (also used by ``bench search``): 1,000,000 generations,
4,000,000 images and 1,000,000 feedback rows across 50 campaigns (times the scale), written
server-side with ``INSERT … SELECT generate_series``, with the copies and counters that triggers
keep in the application (the seed runs with triggers off) written by the seed itself."""

from __future__ import annotations

import math

CAMPAIGNS = 50
PRESETS = 5
VERSIONS = 4


def _coprime_step(n: int, start: int = 37) -> int:
    step = start
    while math.gcd(step, n) != 1:
        step += 1
    return step


def seed_statements(scale: float) -> list[tuple[str, str]]:
    """(label, SQL) pairs that fill an empty, migrated database."""
    n_gen = max(100, round(1_000_000 * scale))
    n_users = max(20, round(400 * scale))
    n_hot = max(10, round(0.4 * n_gen))  # generations that get feedback
    n_feedback = max(10, round(1_000_000 * scale))
    step = _coprime_step(n_gen)
    blocked = max(5, n_gen // 100)

    # gen n → campaign: every 25th is the flagship (1), else the stretch-of-the-year campaign.
    def campaign_of(n: str) -> str:
        return f"(CASE WHEN {n} % 25 = 0 THEN 1 ELSE 2 + ({n} * 49) / {n_gen} END)"

    # generation n's queued_at; images and feedback carry copies of it and of its campaign
    # (triggers keep them in the app; the seed runs with triggers off, so it writes them)
    def queued_of(n: str) -> str:
        return (
            f"(timestamptz '2026-01-01 00:00+00' + ({n}::float8 / {n_gen}) * interval '365 days')"
        )

    uuid_of = "lpad(to_hex({}), 32, '0')::uuid"
    return [
        (
            "workspaces, users, presets, campaigns",
            f"""
            INSERT INTO workspaces (id, platform, external_id, name) VALUES
                (1, 'slack', 'T0ACME', 'Acme'), (2, 'discord', '9000001', 'Acme Discord');
            INSERT INTO users (id, platform, workspace_id, external_id, display_name)
            SELECT u, CASE WHEN u % 2 = 1 THEN 'slack' ELSE 'discord' END, 2 - u % 2,
                   'U' || lpad(u::text, 6, '0'), 'Person ' || u
            FROM generate_series(1, {n_users}) u;
            INSERT INTO presets (id, name, version, yaml_text)
            SELECT 1 + p * {VERSIONS} + v, 'brand-' || p, left(md5(p || ':' || v), 12),
                   'name: brand-' || p
            FROM generate_series(0, {PRESETS - 1}) p, generate_series(0, {VERSIONS - 1}) v;
            INSERT INTO campaigns (id, name, preset_name, gpu_budget_seconds)
            SELECT c, CASE WHEN c = 1 THEN 'flagship' ELSE 'campaign-' || c END,
                   'brand-' || c % {PRESETS}, 1e6
            FROM generate_series(1, {CAMPAIGNS}) c;
            """,
        ),
        (
            "generations",
            f"""
            INSERT INTO generations (
                id, parent_id, source_index, kind, platform, user_id, campaign_id, preset_id,
                preset_name, preset_version, raw_prompt, final_prompt, negative_prompt, params,
                status, progress, attempts, queued_at, started_at, finished_at, gpu_seconds,
                reply_target, delivered_at)
            SELECT {uuid_of.format("n")},
                   CASE WHEN k % 10 >= 6 AND p >= 0 AND c = {campaign_of("p")} THEN
                       {uuid_of.format("p")}
                   END,
                   CASE WHEN k % 10 IN (6, 7, 8) AND p >= 0 AND c = {campaign_of("p")}
                       THEN 1 + k % 4 END,
                   (ARRAY['imagine','imagine','imagine','imagine','imagine','imagine',
                          'variation','variation','upscale','reroll'])[1 + k % 10],
                   CASE WHEN u % 2 = 1 THEN 'slack' ELSE 'discord' END,
                   u, c, 1 + (c % {PRESETS}) * {VERSIONS} + v,
                   'brand-' || c % {PRESETS}, left(md5((c % {PRESETS}) || ':' || v), 12),
                   'a sneaker on a beach at sunset, take ' || n % 997,
                   'a sneaker on a beach at sunset, take ' || n % 997
                       || ', brand colours, soft daylight, 35mm, clean background',
                   'text, watermark',
                   jsonb_build_object('seed', (n::bigint * 2654435761) % 4294967296,
                       'model', CASE WHEN v < 2 THEN 'sdxl-base-1.0' ELSE 'sdxl-turbo' END,
                       'steps', 30, 'width', 1024, 'height', 1024, 'n', 4, 'guidance', 7.0,
                       'engine', 'diffusers'),
                   (CASE WHEN (k * 31) % 100 = 97 THEN 'failed'
                         WHEN (k * 31) % 100 = 98 THEN 'cancelled' ELSE 'done' END),
                   1, 1, q, q + w, q + w + r, extract(epoch FROM r),
                   '{{"platform": "slack", "workspace_id": "T0ACME", "channel_id": "C1"}}',
                   q + w + r
            FROM (
                SELECT n, {campaign_of("n")} AS c,
                       -- k numbers a campaign's own generations; p is the previous one (parent)
                       CASE WHEN n % 25 = 0 THEN n / 25 ELSE n END AS k,
                       CASE WHEN n % 25 = 0 THEN n - 25
                            WHEN (n - 1) % 25 = 0 THEN n - 2 ELSE n - 1 END AS p,
                       1 + (n * 7 + {campaign_of("n")} * 13) % {n_users} AS u,
                       (n::bigint * {VERSIONS}) / {n_gen} AS v,
                       {queued_of("n")} AS q,
                       (1 + (n * 7919) % 600 / 10.0) * interval '1 second' AS w,
                       (2 + (n * 104729) % 400 / 10.0) * interval '1 second' AS r
                FROM generate_series(0::bigint, {n_gen - 1}) n
            ) s;
            """,
        ),
        (
            "feedback",
            f"""
            INSERT INTO feedback (id, generation_id, image_id, user_id, kind, emoji, created_at,
                                  campaign_id, generation_queued_at)
            SELECT j, {uuid_of.format("n")},
                   CASE WHEN kind = 'favourite' OR h / 100 % 10 < 7
                        THEN n * 4 + 1 + h / 1000 % 4 END,
                   1 + (n + 97 * k) % {n_users}, kind, '',
                   {queued_of("n")} + (h % 86400) * interval '1 second' + interval '1 minute',
                   {campaign_of("n")}, {queued_of("n")}
            FROM (
                SELECT j, k, h, (r * {step}) % {n_gen} AS n,
                       CASE WHEN h % 100 < 55 THEN 'favourite'
                            WHEN h % 100 < 80 THEN 'like'
                            WHEN h % 100 < 95 THEN 'dislike' ELSE 'approve' END AS kind
                FROM (SELECT j, j % {n_hot} AS r, j / {n_hot} AS k,
                             (j * 2654435761) >> 12 AS h  -- a hash: kinds independent of n
                      FROM generate_series(0::bigint, {n_feedback - 1}) j) jj
            ) s;
            """,
        ),
        (  # after the feedback (no foreign key checks here): each image with its counters
            # (migration de10912017cf), in generation order as the application writes them
            "images",
            f"""
            INSERT INTO images (id, generation_id, index, storage_key, sha256, width, height,
                                bytes, palette_score, created_at, campaign_id,
                                generation_queued_at, favourites, likes, dislikes,
                                first_favourite_at, approved_at)
            SELECT n * 4 + i, {uuid_of.format("n")}, i,
                   'img/' || to_hex(n * 4 + i) || '.png', md5(n::text) || md5(i::text),
                   1024, 1024, 1500000 + (n * 4 + i) % 100000, ((n * 13 + i) % 100) / 100.0,
                   {queued_of("n")}, {campaign_of("n")}, {queued_of("n")},
                   coalesce(f.favourites, 0), coalesce(f.likes, 0), coalesce(f.dislikes, 0),
                   f.first_favourite_at, least(f.approved_at, ga.approved_at)
            FROM generate_series(0::bigint, {n_gen - 1}) n CROSS JOIN generate_series(1, 4) i
            LEFT JOIN (
                SELECT image_id, count(*) FILTER (WHERE kind = 'favourite') AS favourites,
                       count(*) FILTER (WHERE kind = 'like') AS likes,
                       count(*) FILTER (WHERE kind = 'dislike') AS dislikes,
                       min(created_at) FILTER (WHERE kind = 'favourite') AS first_favourite_at,
                       min(created_at) FILTER (WHERE kind = 'approve') AS approved_at
                FROM feedback WHERE image_id IS NOT NULL GROUP BY image_id
            ) f ON f.image_id = n * 4 + i
            LEFT JOIN (  -- an approval of the grid approves its images
                SELECT generation_id, min(created_at) AS approved_at FROM feedback
                WHERE image_id IS NULL AND kind = 'approve' GROUP BY generation_id
            ) ga ON ga.generation_id = {uuid_of.format("n")}
            ORDER BY n, i;
            """,
        ),
        (  # the counters the triggers keep (migrations d770701256a5, de10912017cf)
            "generation counters",
            """
            UPDATE generations g
            SET image_count = c.i, favourites = c.fav, favourited_images = c.favd,
                approved_images = c.appd, grid_favourites = c.gfav, likes = c.l,
                dislikes = c.d, approvals = c.a, grid_likes = c.gl, grid_dislikes = c.gd
            FROM (
                SELECT id, sum(i) AS i, sum(fav) AS fav, sum(favd) AS favd, sum(appd) AS appd,
                       sum(gfav) AS gfav, sum(l) AS l, sum(d) AS d, sum(a) AS a,
                       sum(gl) AS gl, sum(gd) AS gd
                FROM (
                    SELECT generation_id AS id, count(*) AS i, 0 AS fav, 0 AS favd, 0 AS appd,
                           0 AS gfav, 0 AS l, 0 AS d, 0 AS a, 0 AS gl, 0 AS gd
                    FROM images GROUP BY 1
                    UNION ALL
                    SELECT generation_id, 0,
                           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NOT NULL),
                           count(DISTINCT image_id) FILTER (WHERE kind = 'favourite'), 0,
                           count(*) FILTER (WHERE kind = 'favourite' AND image_id IS NULL),
                           count(*) FILTER (WHERE kind = 'like'),
                           count(*) FILTER (WHERE kind = 'dislike'),
                           count(*) FILTER (WHERE kind = 'approve'),
                           count(*) FILTER (WHERE kind = 'like' AND image_id IS NULL),
                           count(*) FILTER (WHERE kind = 'dislike' AND image_id IS NULL)
                    FROM feedback GROUP BY 1
                    UNION ALL  -- approved images: directly or through their grid, once
                    SELECT generation_id, 0, 0, 0, count(*), 0, 0, 0, 0, 0, 0 FROM (
                        SELECT generation_id, image_id FROM feedback
                        WHERE kind = 'approve' AND image_id IS NOT NULL
                        UNION
                        SELECT i.generation_id, i.id FROM images i JOIN feedback a
                            ON a.generation_id = i.generation_id AND a.kind = 'approve'
                           AND a.image_id IS NULL) x
                    GROUP BY 1) u
                GROUP BY id) c
            WHERE g.id = c.id
            """,
        ),
        # the UPDATE leaves a dead version of every generation at once (twice the table; bench
        # search's keyword --campaign p50 29 -> 334 ms), as no live table does: rewrite it packed
        ("compact generations", "VACUUM FULL generations"),
        (
            "audit log",
            f"""
            INSERT INTO audit_log (actor, action, subject, campaign_id, details, at)
            SELECT 'slack:T0ACME:U' || lpad((1 + b % {n_users})::text, 6, '0'),
                   CASE WHEN b % 5 = 0 THEN 'binding.created' ELSE 'prompt.blocked' END,
                   'slack:C1', 1 + b % {CAMPAIGNS}, '{{"term": "rival"}}',
                   timestamptz '2026-01-01 00:00+00' + (b::float8 / {blocked}) * interval '365 days'
            FROM generate_series(0::bigint, {blocked - 1}) b;
            """,
        ),
    ]
