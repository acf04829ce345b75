"""Parse ``models.conf``: the INI file that describes every llama-server profile.

The format is the one the user's ``start.sh`` reads (configparser semantics, ``#``/``;``
comments, ``KEY=value``), so both tools can share one file:

    [bench-qwen3-coder]
    NAME=Qwen3-Coder-Next UD-Q6_K_XL (benchmark)
    MODEL=Qwen3-Coder-Next/UD-Q6_K_XL/Qwen3-Coder-Next-UD-Q6_K_XL-00001-of-00003.gguf
    CTX_SIZE=16384
    N_GPU_LAYERS=99
    FIT=off
    EXTRA_ARGS=--jinja -np 1 -ot blk\\.([0-9]|1[0-2])\\.=CUDA0,exps=CPU

``EXTRA_ARGS`` is one shell-quoted string. It is split like an unquoted ``$EXTRA_ARGS``
in bash plus quotes: whitespace separates words, quotes group, and backslashes are kept
literally (``-ot`` regexes such as ``blk\\.`` must reach llama-server unchanged).

Every error is a :class:`~plugin.errors.ConfigError` naming ``file:line`` and the fix.
"""

from __future__ import annotations

import codecs
import configparser
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plugin.errors import ConfigError

BENCH_PREFIX = "bench-"

REQUIRED_KEYS = ("NAME", "MODEL", "CTX_SIZE")
#: Keys a profile may carry, with a one-line meaning (shown in error messages and docs).
KNOWN_KEYS: Mapping[str, str] = {
    "NAME": "human-readable model name",
    "MODEL": "GGUF path, relative to MODELS_DIR (first shard for split models)",
    "CTX_SIZE": "context size passed as -c",
    "N_GPU_LAYERS": "layers offloaded to GPU, passed as -ngl (integer, 'all' or 'auto')",
    "FIT": "on|off, passed as -fit (benchmarks want off)",
    "EXTRA_ARGS": "further llama-server arguments, one shell-quoted string",
    "MODELS_DIR": "directory MODEL is relative to (relative paths: to models.conf's folder)",
    "IMAGE": "Docker image for GPU profiles",
    "CPU_IMAGE": "Docker image for CPU-only profiles (N_GPU_LAYERS=0, no CUDA in -ot)",
    "GPUS": "GPUs to expose: all, none, or device ids like 0,1 (default: from -ot CUDAn)",
    "MAX_TOKENS": "max_tokens sent with each request (EvalPlus uses 768)",
    "HEALTH_TIMEOUT": "seconds to wait for /health to answer 200",
    "THINKING": "auto|on|off: send chat_template_kwargs enable_thinking (off/on) or nothing",
    "REASONING_EFFORT": "reasoning_effort sent with each request (e.g. low|medium|high)",
    "DOCKER_HOST": "Docker engine to start the server on (unix://, tcp://, ssh://)",
    "BASE_URL": "benchmark an already running OpenAI-compatible server (no container)",
    "QUANT": "quantisation label shown in the report (default: guessed from MODEL)",
    "CODE_FROM_REASONING": "on|off: when content is empty, take the code from "
                           "reasoning_content (marked in the report; default off)",
    "API_KEY_ENV": "name of the environment variable holding the server's API key: the "
                   "container gets it as --api-key (LLAMA_API_KEY) and every request sends "
                   "it; the key itself is never written in models.conf",
}

#: llama-server flags the harness sets itself; EXTRA_ARGS must not repeat them.
_RESERVED_FLAGS: Mapping[str, str] = {
    "-m": "MODEL", "--model": "MODEL",
    "-c": "CTX_SIZE", "--ctx-size": "CTX_SIZE",
    "-ngl": "N_GPU_LAYERS", "--n-gpu-layers": "N_GPU_LAYERS", "--gpu-layers": "N_GPU_LAYERS",
    "-fit": "FIT", "--fit": "FIT",
    "--host": "the harness (it binds 0.0.0.0 inside the container)",
    "--port": "the harness (it publishes a free host port)",
    "--api-key": "API_KEY_ENV (the key stays in the environment, out of models.conf)",
    "--api-key-file": "API_KEY_ENV (the harness must know the key to send it)",
}

_SECTION_RE = re.compile(r"^\s*\[(?P<name>.+)\]")  # configparser SECTCRE
_KEY_RE = re.compile(r"(?P<key>.*?)\s*=")  # configparser's OPTCRE, delimiter "="
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
    source: Path
    line: int
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: Name of the environment variable with the API key (never the key itself).
    api_key_env: str | None = None
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
        return int(value) if value and _is_count(value) else 1

    @property
    def uses_gpu(self) -> bool:
        return bool(self.gpus)

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


def _is_count(text: str) -> bool:
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


# --------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "file not found", path=str(path),
            fix="create it (see models.conf in the project) or pass --bench-config PATH",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    data = data.removeprefix(codecs.BOM_UTF8)  # editors that save "UTF-8 with BOM"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x})", path=str(path), line=line,
            fix="save the file as UTF-8",
        ) from None


def _line_map(text: str) -> dict[tuple[str, str], int]:
    """(section, KEY) -> line number, and (section, "") -> header line.

    Mirrors how configparser reads the file: lines end at "\n" only (str.splitlines would
    also split at \f, \x85, \u2028 ... inside values and shift every later number); a
    line indented deeper than the KEY=value line just above continues that value; a
    blank line or a comment ends a value, so an indented KEY=value after one is a key.
    """
    lines: dict[tuple[str, str], int] = {}
    section = configparser.DEFAULTSECT
    in_value, value_indent = False, 0
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            in_value = False
            continue
        indent = len(raw) - len(raw.lstrip())
        if in_value and indent > value_indent:
            continue
        value_indent = indent
        header = _SECTION_RE.match(stripped)
        if header:
            section, in_value = header.group("name"), False
            lines.setdefault((section, ""), number)
            continue
        key = _KEY_RE.match(stripped)
        if key and key.group("key"):
            lines.setdefault((section, key.group("key").upper()), number)
            in_value = True
    return lines


def _parse_ini(text: str, path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, delimiters=("=",),
        comment_prefixes=("#", ";"), inline_comment_prefixes=None,
        empty_lines_in_values=False,
    )
    parser.optionxform = str.upper  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"key outside any section: {exc.line.strip()!r}", path=str(path), line=exc.lineno,
            fix="put it under a [profile-name] header, or under [DEFAULT] for all profiles",
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"section [{exc.section}] appears twice", path=str(path), line=exc.lineno,
            fix="rename or merge one of them; profile names must be unique",
        ) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"key {exc.option} appears twice in [{exc.section}]", path=str(path),
            line=exc.lineno, fix="keep one of them",
        ) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0] if exc.errors else (None, "")
        raise ConfigError(
            f"cannot parse line {line!r}", path=str(path), line=lineno,
            fix="every line must be [section], KEY=value, a comment, or blank",
        ) from None
    return parser


# --------------------------------------------------------------------------- validation


class _Section:
    """Accessor for one section that knows where each key was written."""

    def __init__(self, parser: configparser.ConfigParser, name: str, path: Path,
                 lines: Mapping[tuple[str, str], int]) -> None:
        self.values = parser[name]
        self.name = name
        self.path = path
        self.lines = lines

    def line_of(self, key: str) -> int | None:
        return self.lines.get((self.name, key)) or self.lines.get((configparser.DEFAULTSECT, key))

    def explicit(self, key: str) -> bool:
        return (self.name, key) in self.lines

    def error(self, key: str | None, message: str, fix: str) -> ConfigError:
        line = self.line_of(key) if key else self.lines.get((self.name, ""))
        return ConfigError(f"profile [{self.name}]: {message}", path=str(self.path), line=line,
                           fix=fix)

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else value.strip()

    def required(self, key: str) -> str:
        value = self.get(key)
        if not value:  # written but empty: point at that line, else at the section
            written = self.line_of(key) is not None
            raise self.error(key if written else None,
                             f"has no {key}" + (" (its value is empty)" if written else ""),
                             f"add {key}=... ({KNOWN_KEYS[key]}); known keys: "
                             + ", ".join(KNOWN_KEYS))
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.get(key)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"{key}={value!r} is not a whole number",
                             f"write {key}=<integer> ({KNOWN_KEYS[key]})") from None
        if number < minimum:
            raise self.error(key, f"{key}={number} is below {minimum}",
                             f"use a value >= {minimum}")
        return number

    def number(self, key: str, default: float) -> float:
        value = self.get(key)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"{key}={value!r} is not a number",
                             f"write {key}=<seconds>") from None
        if not number > 0:
            raise self.error(key, f"{key}={value} must be positive", "use a value > 0")
        return number

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.get(key)
        if not value:
            return default
        if value.lower() not in choices:
            raise self.error(key, f"{key}={value!r} is not one of {'|'.join(choices)}",
                             f"write {key}={choices[0]}")
        return value.lower()


def _check_keys(section: _Section) -> None:
    for key in section.values:
        if key not in KNOWN_KEYS:
            raise section.error(key, f"unknown key {key}",
                                "remove it or use one of: " + ", ".join(KNOWN_KEYS))


def _extra_args(section: _Section) -> tuple[str, ...]:
    text = section.get("EXTRA_ARGS") or ""
    try:
        args = split_extra_args(text)
    except ValueError as exc:
        raise section.error("EXTRA_ARGS", f"EXTRA_ARGS cannot be split: {exc}",
                            "balance the quotes (EXTRA_ARGS is one shell-quoted string)"
                            ) from None
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _RESERVED_FLAGS:
            raise section.error("EXTRA_ARGS", f"EXTRA_ARGS sets {flag}, which the harness sets",
                                f"remove it; set it via {_RESERVED_FLAGS[flag]}")
    return args


def _api_key_env(section: _Section) -> str | None:
    value = section.get("API_KEY_ENV")
    if not value:
        return None
    if not _ENV_NAME_RE.fullmatch(value):
        raise section.error("API_KEY_ENV", f"API_KEY_ENV={value!r} is not an environment "
                            "variable name", "write the variable's NAME (e.g. "
                            "API_KEY_ENV=LLAMA_BENCH_API_KEY), never the key itself")
    return value


def _gpus(section: _Section, extra_args: tuple[str, ...], n_gpu_layers: str) -> tuple[str, ...]:
    value = section.get("GPUS")
    if value:
        if value.lower() == "none":
            return ()
        if value.lower() == "all":
            return ("all",)
        ids = tuple(part.strip() for part in value.split(","))
        if not all(_is_count(part) for part in ids):
            raise section.error("GPUS", f"GPUS={value!r} is not all, none or ids like 0,1",
                                "write GPUS=all, GPUS=none or GPUS=0,1")
        return ids
    inferred = infer_gpus(extra_args)
    if inferred:
        return inferred
    return () if n_gpu_layers == "0" else ("all",)


def _n_gpu_layers(section: _Section) -> str:
    value = (section.get("N_GPU_LAYERS") or "0").lower()
    if value in ("all", "auto") or _is_count(value):
        return value
    raise section.error("N_GPU_LAYERS", f"N_GPU_LAYERS={value!r} is not a layer count",
                        "write N_GPU_LAYERS=<integer>, all or auto")


def _models_dir(section: _Section, path: Path, defaults: Defaults) -> Path:
    explicit = section.explicit("MODELS_DIR")
    value = section.get("MODELS_DIR") if explicit or not defaults.models_dir else None
    value = value or defaults.models_dir or "models"
    resolved = Path(os.path.expandvars(os.path.expanduser(value)))
    return resolved if resolved.is_absolute() else (path.resolve().parent / resolved)


def _image(section: _Section, gpus: tuple[str, ...], defaults: Defaults) -> str:
    if section.explicit("IMAGE"):
        return section.required("IMAGE")
    if gpus:
        return defaults.image or section.get("IMAGE") or "ghcr.io/ggml-org/llama.cpp:server-cuda"
    return defaults.cpu_image or section.get("CPU_IMAGE") or "ghcr.io/ggml-org/llama.cpp:server"


def _docker_host(section: _Section, defaults: Defaults) -> str | None:
    """The profile's own DOCKER_HOST, else the option's, else [DEFAULT]'s (like MODELS_DIR)."""
    if section.explicit("DOCKER_HOST"):
        return section.get("DOCKER_HOST") or None
    return defaults.docker_host or section.get("DOCKER_HOST") or None


def _build_profile(section: _Section, path: Path, defaults: Defaults) -> Profile:
    _check_keys(section)
    for key in REQUIRED_KEYS:  # CTX_SIZE too: without it llama-server would get -c 0
        section.required(key)
    model = section.required("MODEL")
    extra_args = _extra_args(section)
    n_gpu_layers = _n_gpu_layers(section)
    gpus = _gpus(section, extra_args, n_gpu_layers)
    key_lines = {key: section.line_of(key) or 0 for key in section.values}
    overrides = _overrides(section, gpus, defaults)
    return Profile(
        name=section.name,
        display_name=section.required("NAME"),
        model=model,
        models_dir=_models_dir(section, path, defaults),
        ctx_size=section.integer("CTX_SIZE", 0, minimum=1),
        n_gpu_layers=n_gpu_layers,
        fit=section.choice("FIT", ("off", "on"), None),
        extra_args=extra_args,
        image=_image(section, gpus, defaults),
        gpus=gpus,
        max_tokens=defaults.max_tokens or section.integer("MAX_TOKENS", 768, minimum=1),
        health_timeout=defaults.health_timeout or section.number("HEALTH_TIMEOUT", 600.0),
        thinking=section.choice("THINKING", ("auto", "on", "off"), "auto") or "auto",
        reasoning_effort=section.get("REASONING_EFFORT") or None,
        docker_host=_docker_host(section, defaults),
        base_url=defaults.base_url or section.get("BASE_URL") or None,
        quant=section.get("QUANT") or guess_quant(model),
        code_from_reasoning=section.choice("CODE_FROM_REASONING", ("off", "on"), "off") == "on",
        source=path,
        line=section.lines.get((section.name, ""), 0),
        key_lines=key_lines,
        api_key_env=_api_key_env(section),
        overrides=overrides,
    )


def _overrides(section: _Section, gpus: tuple[str, ...], defaults: Defaults) -> dict[str, str]:
    """The keys of the profile whose value an option or variable supplied, and where from."""
    origin = defaults.origins
    used = {"HEALTH_TIMEOUT": ("health-timeout", defaults.health_timeout),
            "MAX_TOKENS": ("max-tokens", defaults.max_tokens),
            "BASE_URL": ("base-url", defaults.base_url)}
    if not section.explicit("IMAGE"):
        used["IMAGE" if gpus else "CPU_IMAGE"] = (
            ("image", defaults.image) if gpus else ("cpu-image", defaults.cpu_image))
    if not section.explicit("MODELS_DIR"):
        used["MODELS_DIR"] = ("models-dir", defaults.models_dir)
    if not section.explicit("DOCKER_HOST"):
        used["DOCKER_HOST"] = ("docker-host", defaults.docker_host)
    return {key: origin.get(name, f"--bench-{name}") for key, (name, value) in used.items()
            if value}


@dataclass(frozen=True)
class ModelsConf:
    path: Path
    profiles: Mapping[str, Profile]

    @property
    def bench_profiles(self) -> list[Profile]:
        return [p for p in self.profiles.values() if p.is_bench]


def load_models_conf(path: Path | str, defaults: Defaults | None = None) -> ModelsConf:
    """Read and validate every profile of ``path``. Raises ConfigError on any problem."""
    path = Path(path)
    defaults = defaults or Defaults()
    text = _read_text(path)
    lines = _line_map(text)
    parser = _parse_ini(text, path)
    if not parser.sections():
        raise ConfigError("no profiles", path=str(path), line=1,
                          fix="add at least one [bench-NAME] section with NAME, MODEL, CTX_SIZE")
    for key in parser.defaults():
        if key not in KNOWN_KEYS:
            raise ConfigError(
                f"[DEFAULT]: unknown key {key}", path=str(path),
                line=lines.get((configparser.DEFAULTSECT, key)),
                fix="remove it or use one of: " + ", ".join(KNOWN_KEYS))
    profiles: dict[str, Profile] = {}
    for name in parser.sections():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(
                f"profile name [{name}] has characters other than letters, digits, . _ -",
                path=str(path), line=lines.get((name, "")), fix="rename the section")
        section = _Section(parser, name, path, lines)
        profiles[name] = _build_profile(section, path, defaults)
    return ModelsConf(path=path, profiles=profiles)
