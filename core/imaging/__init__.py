"""Pixels after generation: grid, metadata, previews, brand marks, colour, resizing.

Pure Pillow, no torch: the bots import these modules too."""
