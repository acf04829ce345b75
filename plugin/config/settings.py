"""The harness's settings: one table for command line, environment and ini file.

Each setting is a ``--bench-*`` option, an environment variable ``BENCH_*`` and an ini key
``bench_*`` with one shared help text. Resolution order: command line, environment, ini,
default (as pytest-timeout does). This module imports no pytest: the plugin registers the
table, the CLI can read it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.config.defaults import PROMPT_MODES, SANDBOX_IMAGE
from plugin.config.profile import parse_tasks
from plugin.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str  # e.g. "health-timeout" -> --bench-health-timeout, BENCH_HEALTH_TIMEOUT
    help: str
    default: Any = None
    kind: Callable[[str], Any] = str
    flag: bool = False  # a store_true option (command line and environment only)
    flag_ini: bool = False  # a flag that an ini key may set too
    on_in_ci: bool = False  # a flag whose default is on when CI=true (GitHub Actions, ...)
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def option(self) -> str:
        return f"--bench-{self.name}"

    @property
    def dest(self) -> str:
        return f"bench_{self.name.replace('-', '_')}"

    @property
    def env(self) -> str:
        return f"BENCH_{self.name.replace('-', '_').upper()}"

    @property
    def ini(self) -> str:
        return self.dest


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("must be between 0 and 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _slots(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError("must be 2 or more (parallel slots)")
    return value


def _task_spec(text: str) -> str:
    if text.strip() != "all":
        parse_tasks(text)  # ValueError says which item is wrong
    return text.strip()


SETTINGS: tuple[Setting, ...] = (
    Setting("config", "models.conf to read profiles from (default: models.conf in the rootdir)",
            metavar="PATH"),
    Setting("list", "list the bench profiles of models.conf and exit", flag=True),
    Setting("models-dir", "directory with the GGUF files; replaces MODELS_DIR of [DEFAULT] "
            "(profiles that set their own MODELS_DIR keep it)", metavar="DIR"),
    Setting("image", "llama-server image for GPU profiles (replaces IMAGE of [DEFAULT])",
            metavar="IMAGE"),
    Setting("cpu-image", "llama-server image for CPU-only profiles (replaces CPU_IMAGE)",
            metavar="IMAGE"),
    Setting("health-timeout", "seconds to wait for llama-server /health (default 600, or "
            "HEALTH_TIMEOUT of the profile)", kind=_positive_float, metavar="SECONDS"),
    Setting("max-tokens", "max_tokens per request, for every profile (default: MAX_TOKENS "
            "of the profile, 768)", kind=int, metavar="N"),
    Setting("prompt-mode", "how every profile asks (replaces each PROMPT_MODE): chat "
            "(EvalPlus's chat prompt, /v1/chat/completions) or completion (EvalPlus's "
            "direct completion of the task's code, /v1/completions; for base models)",
            choices=PROMPT_MODES),
    Setting("reports-dir", "where samples, verdicts, logs and reports go", default="reports",
            metavar="DIR"),
    Setting("datasets-dir", "directory holding the EvalPlus release files "
            "(HumanEvalPlus-v0.1.10.jsonl.gz ...); searched before the download cache",
            metavar="DIR"),
    Setting("references", "reference scores JSON (default: reference-scores.json in the "
            "rootdir)", metavar="PATH"),
    Setting("tolerance", "default tolerance in percentage points below the reference pass@1",
            default=5.0, kind=float, metavar="PP"),
    Setting("alpha", "significance level of the exact McNemar test against the pinned "
            "baseline: a drop with p < alpha fails even inside the tolerance",
            default=0.05, kind=_probability, metavar="P"),
    Setting("strict", "gate mode: a selected profile that cannot produce a score (model file "
            "missing, image missing, server that does not start, GPUs missing) is an error "
            "that fails the run, not a skip; on by default when CI=true (BENCH_STRICT=0 "
            "turns it off)", flag=True, flag_ini=True, on_in_ci=True),
    Setting("update-baseline", "pin this run's results as the new baseline of each profile x "
            "dataset (history database); the run is still judged against the old one",
            flag=True),
    Setting("history", "history database (SQLite) every result is stored in (default: "
            "history.sqlite in the reports dir)", metavar="PATH"),
    Setting("sandbox", "where generated code runs: docker (sandbox container) or local "
            "(a subprocess on this machine: NOT a sandbox)", default="docker",
            choices=("docker", "local")),
    Setting("sandbox-image", "image of the evaluation sandbox",
            default=SANDBOX_IMAGE, metavar="IMAGE"),
    Setting("limits", "time and memory limit policy of the sandbox: harness (min 4 s per "
            "test, factor 4 scaled by load) or evalplus (evalplus 0.3.1's rules: min 1 s, "
            "factor 4, unscaled); see docs/EVALUATION.md", default="harness",
            choices=("harness", "evalplus")),
    Setting("limit", "only the first N tasks of each dataset (development; a partial run "
            "is gated against a pinned baseline only, task by task)",
            kind=_non_negative_int, metavar="N"),
    Setting("tasks", "task subset of every profile, replacing each TASKS: ids and ranges "
            "(HumanEval/0-11 Mbpp/2-13), or 'all' for every task", kind=_task_spec,
            metavar="SPEC"),
    Setting("determinism", "run the selected profiles a second time with -np N and N "
            "requests in flight, everything else identical, and report which answers and "
            "verdicts change (no gate)", kind=_slots, metavar="N"),
    Setting("concurrency", "requests in flight per server (default: the profile's -np slots)",
            kind=int, metavar="N"),
    Setting("hang-timeout", "seconds llama-server may fail its health check in a row during "
            "generation (hung, paused) before the profile's run ends as an error; answers "
            "received so far are kept", default=300.0, kind=_positive_float,
            metavar="SECONDS"),
    Setting("docker-host", "Docker engine for profiles without their own DOCKER_HOST "
            "(unix://, tcp://, ssh://); replaces DOCKER_HOST of [DEFAULT]; default: the "
            "DOCKER_HOST environment variable or the local socket", metavar="URL"),
    Setting("base-url", "benchmark every selected profile against this running "
            "OpenAI-compatible server (e.g. http://gpu-box:8080) instead of starting one: "
            "no container, no GPU lock; select the profile that describes it with -k",
            metavar="URL"),
    Setting("lock-dir", "directory of the per-GPU lock files shared by xdist workers and "
            "concurrent runs on this machine (default: /tmp/llama-bench-locks)",
            metavar="DIR"),
)



def resolve(setting: Setting, cli_value: Any, environ: Mapping[str, str],
            ini_value: Any) -> tuple[Any, str | None]:
    """(value, where it came from): command line, then environment, then ini, then the
    default, converted by kind. Where: ``command line --bench-x``, ``environment
    BENCH_X`` or ``ini key bench_x`` (for error messages); None for the default."""
    for where, name, raw in ((f"command line {setting.option}", setting.option, cli_value),
                             (f"environment {setting.env}", setting.env,
                              environ.get(setting.env)),
                             (f"ini key {setting.ini}", f"ini key {setting.ini}", ini_value)):
        if raw is None or raw == "" or raw == []:
            continue
        if setting.flag:
            on = bool(raw) if not isinstance(raw, str) else raw.lower() in ("1", "true", "yes")
            return on, where
        return _convert(setting, raw, name), where
    if setting.on_in_ci:
        return environ.get("CI", "").lower() == "true", None
    return setting.default, None


@dataclass(frozen=True)
class Options:
    """Every setting, resolved; ``origins``: setting name -> where a value that is not the
    default came from."""

    config: str | None
    list: bool
    models_dir: str | None
    image: str | None
    cpu_image: str | None
    health_timeout: float | None
    max_tokens: int | None
    prompt_mode: str | None
    reports_dir: str
    datasets_dir: str | None
    references: str | None
    tolerance: float
    alpha: float
    strict: bool
    update_baseline: bool
    history: str | None
    sandbox: str
    sandbox_image: str
    limits: str
    limit: int | None
    tasks: str | None
    determinism: int | None
    concurrency: int | None
    hang_timeout: float
    docker_host: str | None
    base_url: str | None
    lock_dir: str | None
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(cls, cli: Callable[[Setting], Any], environ: Mapping[str, str],
                ini: Callable[[Setting], Any]) -> Options:
        """``cli(setting)`` and ``ini(setting)``: the raw values (None when unset)."""
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for setting in SETTINGS:
            value, where = resolve(setting, cli(setting), environ, ini(setting))
            values[setting.name.replace("-", "_")] = value
            if where:
                origins[setting.name] = where
        return cls(**values, origins=origins)


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        value = setting.kind(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ConfigError(f"{origin}={raw!r} is invalid: {exc}",
                          fix=f"{setting.option}: {setting.help}") from None
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{origin}={raw!r} is not one of {', '.join(setting.choices)}",
                          fix=f"{setting.option}: {setting.help}")
    return value
