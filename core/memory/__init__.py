"""The team's memory: search past work, more like this, near-duplicates, lineage, preferences.

- ``model``: what a search asks and answers (filters, scope, hits), platform-neutral;
- ``search``: keyword search (weighted full-text + trigram similarity for typos) and "more like
  this" by perceptual hash, in one SQL statement each, scoped to a workspace;
- ``phash``: the 64-bit perceptual hash of an original (imagehash, imported lazily);
- ``indexer``: hashes stored originals off the engine's critical path, and backfills;
- ``duplicates``: near-duplicates approved in another campaign; clusters for reports;
- ``lineage``: a generation's family tree with who, when and feedback;
- ``pairs``: preference pairs (Pick-a-Pic / Diffusion-DPO shape) from grid choices.

It sits between the use cases (``core.service``, ``core.reports``, ``core.jobs``) and
``core.db``: it speaks SQL, and nothing below it knows it exists.
"""
