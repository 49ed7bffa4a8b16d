"""Normalize a delivery body into domain Documents (protocol notes §18)."""

from exporter.normalize.documents import MAX_DOCUMENTS, normalize_body

__all__ = ["MAX_DOCUMENTS", "normalize_body"]
