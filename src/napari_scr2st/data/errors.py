"""The error every reader and the section model raise for bad input."""

from __future__ import annotations

__all__ = ["SectionError"]


class SectionError(ValueError):
    """Raised when input does not form a valid section; the message names the file or field."""
