"""Provenance that survives: a signed C2PA manifest (``sign``), an invisible watermark
(``watermark``), the keys behind both (``keys``, ``setup``) and reading it all back (``inspect``).

Finishing order for every file written (``core.jobs.finishing``): pixels → visible logo →
invisible watermark → PNG with parameters and XMP/IPTC → C2PA signature. Nothing writes after
the signature. docs/provenance.md says what each part survives.
"""
