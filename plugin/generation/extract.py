"""Code extraction from a chat answer, with EvalPlus's own sanitizer.

``evalplus.sanitize.sanitize`` parses the text with tree-sitter and keeps the code block
with the entry point and what it depends on. It only parses: nothing of the answer runs
here. (It is slow on very long texts, about 14 s for 600 lines.)
"""

from __future__ import annotations


def extract_code(answer: str, entry_point: str) -> str:
    """The program EvalPlus would evaluate for ``answer`` ("" when there is none)."""
    if not answer.strip():
        return ""
    from evalplus.sanitize import sanitize  # tree-sitter import: only when needed

    return str(sanitize(answer, entrypoint=entry_point))
