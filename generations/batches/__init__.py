"""Variants and batches: many generations from one submit, all held or none (issue 15).

``parsing`` reads pasted lines and CSV uploads; ``selectors`` scopes batches to what a
member may see and sums their progress; ``forms``, ``views`` and ``api`` are the studio's
batch pages and ``/api/v1/batches``. The writes are ``generations.services.batch``.
"""
