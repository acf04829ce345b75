"""EvalPlus glue: import its checker without its heavy dependencies; apply upstream fixes.

The sandbox image has evalplus installed with ``--no-deps``. ``evalplus.eval`` only needs
numpy and psutil, but ``evalplus.data.mbpp`` (where the MBPP+ input (de)serializers live)
is reached through ``evalplus/data/__init__.py``, which imports HF ``datasets``, ``wget``,
``tempdir`` and ``appdirs``. None of their functions is called here, so import-time stubs
are enough to use EvalPlus's own functions instead of copies.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import types
from collections.abc import Callable
from typing import Any

_STUBBED = ("datasets", "wget", "tempdir", "appdirs")


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("not available inside the evaluation sandbox")


def install_import_stubs() -> None:
    """Register stand-ins for modules evalplus.data imports but the checker never uses."""
    for name in _STUBBED:
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.load_dataset = _unavailable  # type: ignore[attr-defined]
        module.download = _unavailable  # type: ignore[attr-defined]
        module.TempDir = _unavailable  # type: ignore[attr-defined]
        module.user_cache_dir = lambda *_a, **_k: "/tmp/evalplus-cache"  # type: ignore[attr-defined]
        sys.modules[name] = module


def import_light(name: str) -> types.ModuleType:
    """Import an evalplus module whose import chain reaches ``evalplus.data`` (e.g.
    ``evalplus.sanitize``) without loading HF ``datasets`` (seconds of import time): the
    stand-ins are in place only during the import. Afterwards they and the
    ``evalplus.data`` modules bound to them leave ``sys.modules`` again, so a later real
    ``import datasets`` or ``import evalplus.data`` in this process is unaffected."""
    if name in sys.modules:
        return sys.modules[name]
    before = set(sys.modules)
    added = [n for n in _STUBBED if n not in sys.modules]
    install_import_stubs()
    try:
        return importlib.import_module(name)
    finally:
        for stub in added:
            sys.modules.pop(stub, None)
        for module in [m for m in sys.modules if m not in before
                       and (m == "evalplus.data" or m.startswith("evalplus.data."))]:
            sys.modules.pop(module, None)


def evalplus_version() -> str:
    import evalplus

    return str(getattr(evalplus, "__version__", "unknown"))


Codec = Callable[[str, list[Any]], list[Any]]


def mbpp_codecs() -> tuple[Codec, Codec]:
    """EvalPlus's ``(mbpp_deserialize_inputs, mbpp_serialize_inputs)``."""
    install_import_stubs()
    from evalplus.data.mbpp import mbpp_deserialize_inputs, mbpp_serialize_inputs

    return mbpp_deserialize_inputs, mbpp_serialize_inputs


def output_not_none_entry_points() -> list[str]:
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    return list(MBPP_OUTPUT_NOT_NONE_TASKS)


# --- HumanEval/32 (find_zero) ------------------------------------------------------------
# evalplus 0.3.1's special oracle for find_zero does
#     assert abs(_poly(*inp, out)) <= atol
#     continue
# and so never records the passed test: ``details`` stays short and untrusted_check turns
# every solution, the canonical one included, into "fail". Upstream fixed it in
# evalplus/evalplus PR 241 ("fix bug for find_zero") by recording the pass before
# ``continue``. The same two lines are inserted here into EvalPlus's own function source.
_FIND_ZERO_BUG = re.compile(
    r"^(?P<indent>[ \t]+)assert abs\(_poly\(\*inp, out\)\) <= atol\n(?P=indent)continue\n",
    re.MULTILINE,
)
_FIND_ZERO_FIXED = re.compile(
    r"assert abs\(_poly\(\*inp, out\)\) <= atol\n\s+details\[i\] = True\n"
)


def _fixed_find_zero(match: re.Match[str]) -> str:
    indent = match.group("indent")
    return (f"{indent}assert abs(_poly(*inp, out)) <= atol\n"
            f"{indent}details[i] = True\n"
            f"{indent}progress.value += 1\n"
            f"{indent}continue\n")


def patch_find_zero(module: types.ModuleType) -> str:
    """Apply the PR 241 fix to ``module.unsafe_execute``; returns "patched" or "not-needed"."""
    if getattr(module.unsafe_execute, "_bench_find_zero_fixed", False):
        return "not-needed"
    source = inspect.getsource(module.unsafe_execute)
    if _FIND_ZERO_FIXED.search(source):
        return "not-needed"
    patched, count = _FIND_ZERO_BUG.subn(_fixed_find_zero, source)
    if count != 1:
        raise RuntimeError(
            "cannot apply the find_zero fix (evalplus PR 241): unsafe_execute in "
            f"{module.__file__} does not have the 0.3.1 code; pin evalplus==0.3.1"
        )
    code = compile(patched, f"{module.__file__} (find_zero fix of evalplus PR 241)", "exec")
    exec(code, module.__dict__)  # redefines module.unsafe_execute from EvalPlus's own source
    module.unsafe_execute._bench_find_zero_fixed = True
    return "patched"


class EvalplusOsView:
    """What ``evalplus.eval`` sees as ``os``: the real module, except for two lookups.

    * ``EVALPLUS_TIMEOUT_PER_TASK`` is a number. untrusted_check computes
      ``min(os.getenv("EVALPLUS_TIMEOUT_PER_TASK", 60), ...)``; the real environment can
      only hold a string (which makes that ``min`` raise TypeError), so this is the one way
      to set the per-task cap without copying untrusted_check.
    * ``EVALPLUS_MAX_MEMORY_BYTES`` is the test process's own address space plus
      ``memory_budget``. query_maximum_memory_bytes() reads it in the forked test process,
      just before reliability_guard() turns it into RLIMIT_AS: the limit no longer depends
      on what the worker held when it forked (evalplus 0.3.1: 4 GiB in total, so a worker
      fat with ground truth fails answers that need memory; docs/EVALUATION.md).
    """

    def __init__(self, task_timeout: float = 60.0, memory_budget: int | None = None) -> None:
        self.task_timeout = task_timeout
        self.memory_budget = memory_budget

    def getenv(self, key: str, default: Any = None) -> Any:
        if key == "EVALPLUS_TIMEOUT_PER_TASK":
            return self.task_timeout
        if key == "EVALPLUS_MAX_MEMORY_BYTES" and self.memory_budget is not None:
            return str(address_space_bytes() + self.memory_budget)
        return os.getenv(key, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def address_space_bytes() -> int:
    """This process's virtual memory size (what RLIMIT_AS limits), from /proc."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def load_checker() -> types.ModuleType:
    """``evalplus.eval`` with the find_zero fix applied."""
    import evalplus.eval as checker

    patch_find_zero(checker)
    return checker  # type: ignore[no-any-return]
