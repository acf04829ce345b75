"""Read and validate models.conf: INI parsing, file:line errors, one Profile per section."""

from __future__ import annotations

import codecs
import configparser
import os
import re
from collections.abc import Mapping
from pathlib import Path

from plugin.config import defaults as D
from plugin.config.keys import KNOWN_KEYS, REQUIRED_KEYS, RESERVED_FLAGS
from plugin.config.profile import (
    Defaults,
    ModelsConf,
    Profile,
    guess_quant,
    infer_gpus,
    is_count,
    parse_tasks,
    split_extra_args,
)
from plugin.errors import ConfigError

_SECTION_RE = re.compile(r"^\s*\[(?P<name>.+)\]")  # configparser SECTCRE
_KEY_RE = re.compile(r"(?P<key>.*?)\s*=")  # configparser's OPTCRE, delimiter "="
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        if flag in RESERVED_FLAGS:
            raise section.error("EXTRA_ARGS", f"EXTRA_ARGS sets {flag}, which the harness sets",
                                f"remove it; set it via {RESERVED_FLAGS[flag]}")
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
        if not all(is_count(part) for part in ids):
            raise section.error("GPUS", f"GPUS={value!r} is not all, none or ids like 0,1",
                                "write GPUS=all, GPUS=none or GPUS=0,1")
        return ids
    inferred = infer_gpus(extra_args)
    if inferred:
        return inferred
    return () if n_gpu_layers == "0" else ("all",)


def _n_gpu_layers(section: _Section) -> str:
    value = (section.get("N_GPU_LAYERS") or "0").lower()
    if value in ("all", "auto") or is_count(value):
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
        return defaults.image or section.get("IMAGE") or D.GPU_IMAGE
    return defaults.cpu_image or section.get("CPU_IMAGE") or D.CPU_IMAGE


def _docker_host(section: _Section, defaults: Defaults) -> str | None:
    """The profile's own DOCKER_HOST, else the option's, else [DEFAULT]'s (like MODELS_DIR)."""
    if section.explicit("DOCKER_HOST"):
        return section.get("DOCKER_HOST") or None
    return defaults.docker_host or section.get("DOCKER_HOST") or None


def _prompt_mode(section: _Section, defaults: Defaults) -> str:
    """The option's mode, else the profile's PROMPT_MODE (checked either way), else chat."""
    written = section.choice("PROMPT_MODE", D.PROMPT_MODES, D.PROMPT_MODE)
    return defaults.prompt_mode or written or D.PROMPT_MODE


def _tasks(section: _Section, defaults: Defaults) -> str | None:
    """The option's subset ("all": every task), else the profile's TASKS (checked)."""
    written = section.get("TASKS") or None
    if written is not None:
        try:
            parse_tasks(written)
        except ValueError as exc:
            raise section.error("TASKS", f"TASKS={written!r}: {exc}",
                                f"write TASKS=<ids and ranges> ({KNOWN_KEYS['TASKS']})"
                                ) from None
    if defaults.tasks is not None:
        return None if defaults.tasks == "all" else defaults.tasks
    return written


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
        max_tokens=defaults.max_tokens or section.integer("MAX_TOKENS", D.MAX_TOKENS, minimum=1),
        health_timeout=(defaults.health_timeout
                        or section.number("HEALTH_TIMEOUT", D.HEALTH_TIMEOUT_S)),
        thinking=section.choice("THINKING", ("auto", "on", "off"), "auto") or "auto",
        reasoning_effort=section.get("REASONING_EFFORT") or None,
        docker_host=_docker_host(section, defaults),
        base_url=defaults.base_url or section.get("BASE_URL") or None,
        quant=section.get("QUANT") or guess_quant(model),
        code_from_reasoning=section.choice("CODE_FROM_REASONING", ("off", "on"), "off") == "on",
        prompt_mode=_prompt_mode(section, defaults),
        source=path,
        line=section.lines.get((section.name, ""), 0),
        key_lines=key_lines,
        api_key_env=_api_key_env(section),
        tasks=_tasks(section, defaults),
        overrides=overrides,
    )


def _overrides(section: _Section, gpus: tuple[str, ...], defaults: Defaults) -> dict[str, str]:
    """The keys of the profile whose value an option or variable supplied, and where from."""
    origin = defaults.origins
    used = {"HEALTH_TIMEOUT": ("health-timeout", defaults.health_timeout),
            "MAX_TOKENS": ("max-tokens", defaults.max_tokens),
            "BASE_URL": ("base-url", defaults.base_url),
            "PROMPT_MODE": ("prompt-mode", defaults.prompt_mode)}
    if not section.explicit("IMAGE"):
        used["IMAGE" if gpus else "CPU_IMAGE"] = (
            ("image", defaults.image) if gpus else ("cpu-image", defaults.cpu_image))
    if not section.explicit("MODELS_DIR"):
        used["MODELS_DIR"] = ("models-dir", defaults.models_dir)
    if not section.explicit("DOCKER_HOST"):
        used["DOCKER_HOST"] = ("docker-host", defaults.docker_host)
    found = {key: origin.get(name, f"--bench-{name}") for key, (name, value) in used.items()
             if value}
    if defaults.tasks is not None:  # "all" too: it asks for every task
        found["TASKS"] = origin.get("tasks", "--bench-tasks")
    return found


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
