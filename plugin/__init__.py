"""Benchmark harness for llama.cpp-served models: a pytest plugin plus plain modules.

Modules other than ``plugin.pytest_plugin`` import no pytest, so they can be used from
the command line (``python -m plugin``) or a notebook.
"""

from __future__ import annotations

__version__ = "0.1.0"
