"""A profile of models.conf, validated and frozen, and its derived facts."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plugin.errors import ConfigError

BENCH_PREFIX = "bench-"
_CUDA_RE = re.compile(r"CUDA(\d+)")
_QUANT_RE = re.compile(r"(UD-)?(I?Q\d(_[A-Z0-9]+)*|MXFP4|F16|BF16|F32)", re.IGNORECASE)


@dataclass(frozen=True)
class Defaults:
    """Values from outside models.conf (options/env) that override its [DEFAULT] section."""

    models_dir: str | None = None
    image: str | None = None
    cpu_image: str | None = None
    health_timeout: float | None = None
    max_tokens: int | None = None
    #: Docker engine for profiles without their own DOCKER_HOST (replaces [DEFAULT]'s).
    docker_host: str | None = None
    #: Running server every profile is benchmarked against (replaces every BASE_URL).
    base_url: str | None = None
    #: Prompt mode of every profile (replaces each PROMPT_MODE).
    prompt_mode: str | None = None
    #: Task subset of every profile (replaces each TASKS; "all": every task).
    tasks: str | None = None
    #: Where each of these came from (setting name -> "command line --bench-cpu-image",
    #: "environment BENCH_CPU_IMAGE", ...), so errors blame the right place.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Profile:
    """One section of models.conf, validated."""

    name: str
    display_name: str
    model: str
    models_dir: Path
    ctx_size: int
    n_gpu_layers: str
    fit: str | None
    extra_args: tuple[str, ...]
    image: str
    gpus: tuple[str, ...]
    max_tokens: int
    health_timeout: float
    thinking: str
    reasoning_effort: str | None
    docker_host: str | None
    base_url: str | None
    quant: str
    code_from_reasoning: bool
    #: chat (EvalPlus's chat prompt to /v1/chat/completions) or completion (its direct
    #: completion prompt to /v1/completions, for base models).
    prompt_mode: str
    source: Path
    line: int
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: Name of the environment variable with the API key (never the key itself).
    api_key_env: str | None = None
    #: The fixed task subset (TASKS / --bench-tasks, see :func:`select_tasks`); None: all.
    tasks: str | None = None
    #: Keys whose value came from outside models.conf: key -> where (command line, ...).
    overrides: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_bench(self) -> bool:
        return self.name.startswith(BENCH_PREFIX)

    @property
    def model_path(self) -> Path:
        return self.models_dir / self.model

    @property
    def slots(self) -> int:
        """Parallel slots (``-np``/``--parallel``); llama-server's default here is 1."""
        value = _flag_value(self.extra_args, ("-np", "--parallel"))
        return int(value) if value and is_count(value) else 1

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The server's API key, read from API_KEY_ENV's variable at the time of use.

        Raises ConfigError (naming API_KEY_ENV's line and the fix) when the variable is
        unset or empty: a profile that asks for a key never runs without one.
        """
        if not self.api_key_env:
            return None
        value = (os.environ if environ is None else environ).get(self.api_key_env, "")
        if not value.strip():
            raise ConfigError(
                f"profile [{self.name}]: API_KEY_ENV={self.api_key_env}, but the environment "
                f"variable {self.api_key_env} is unset or empty", path=str(self.source),
                line=self.key_lines.get("API_KEY_ENV") or self.line,
                fix=f"export {self.api_key_env}=<the server's API key> before running, or "
                    "remove API_KEY_ENV")
        return value.strip()

    def where(self, key: str | None = None) -> str:
        """Where a key's value came from: the option or variable that replaced it, else
        ``file:line`` of the key (or of the section)."""
        if key and key in self.overrides:
            return self.overrides[key]
        line = self.key_lines.get(key, self.line) if key else self.line
        return f"{self.source}:{line}"


def is_count(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() or
    llama-server then reject."""
    return text.isascii() and text.isdigit()


def _flag_value(args: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$")


def shard_files(model_path: Path) -> list[Path]:
    """A GGUF file, or every shard of a split model named by its first
    (``-00001-of-00003.gguf``)."""
    match = _SHARD_RE.match(model_path.name)
    if not match:
        return [model_path]
    total = int(match.group("total"))
    stem = match.group("stem")
    return [model_path.with_name(f"{stem}-{i:05d}-of-{total:05d}.gguf")
            for i in range(1, total + 1)]


def split_extra_args(text: str) -> tuple[str, ...]:
    """Split EXTRA_ARGS: quotes group words, backslashes stay literal (regexes survive)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return tuple(lexer)


def cuda_indices(extra_args: tuple[str, ...]) -> tuple[str, ...]:
    """CUDA device indices named by ``-ot ...=CUDAn`` overrides, in order of appearance."""
    found: list[str] = []
    for i, arg in enumerate(extra_args):
        value = None
        if arg in ("-ot", "--override-tensor") and i + 1 < len(extra_args):
            value = extra_args[i + 1]
        elif arg.startswith("--override-tensor="):
            value = arg.split("=", 1)[1]
        for gpu in _CUDA_RE.findall(value or ""):
            if gpu not in found:
                found.append(gpu)
    return tuple(found)


def infer_gpus(extra_args: tuple[str, ...]) -> tuple[str, ...]:
    """The GPUs to expose for ``-ot ...=CUDAn`` overrides: 0..max(n). Inside the container
    CUDAn is the n-th GPU it sees, so naming CUDA1 needs two GPUs even when no override
    names CUDA0 (and the host's GPU n stays CUDAn)."""
    indices = [int(i) for i in cuda_indices(extra_args)]
    return tuple(str(i) for i in range(max(indices) + 1)) if indices else ()


def guess_quant(model: str) -> str:
    stem = Path(model).name.removesuffix(".gguf")
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    matches = [m.group(0) for m in _QUANT_RE.finditer(stem)]
    return matches[-1].upper() if matches else "-"


@dataclass(frozen=True)
class ModelsConf:
    path: Path
    profiles: Mapping[str, Profile]

    @property
    def bench_profiles(self) -> list[Profile]:
        return [p for p in self.profiles.values() if p.is_bench]


_TASK_ITEM = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9_]*)/(?P<lo>\d+)(?:-(?P<hi>\d+))?")


def parse_tasks(spec: str) -> tuple[tuple[str, int, int], ...]:
    """``HumanEval/0-11, HumanEval/53 Mbpp/2`` -> ((prefix, first, last), ...); ValueError
    names the first item that is not ``Prefix/N`` or ``Prefix/N-M``."""
    items = []
    for item in re.split(r"[\s,]+", spec.strip()):
        match = _TASK_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not a task id (HumanEval/53) or range (Mbpp/2-13)")
        lo = int(match["lo"])
        hi = int(match["hi"]) if match["hi"] else lo
        if hi < lo:
            raise ValueError(f"{item!r}: the range ends before it starts")
        items.append((match["prefix"], lo, hi))
    return tuple(items)


def select_tasks(spec: str | None, task_ids: Sequence[str]) -> list[str]:
    """The ids of ``task_ids`` (one dataset, in order) that ``spec`` names; every id when
    ``spec`` is empty or names none of this dataset's tasks (another dataset's subset)."""
    if not spec:
        return list(task_ids)
    items = parse_tasks(spec)
    prefixes = {task_id.split("/")[0] for task_id in task_ids}
    mine = [(lo, hi) for prefix, lo, hi in items if prefix in prefixes]
    if not mine:
        return list(task_ids)
    chosen = []
    for task_id in task_ids:
        number = task_id.rsplit("/", 1)[-1]
        if number.isdigit() and any(lo <= int(number) <= hi for lo, hi in mine):
            chosen.append(task_id)
    return chosen
