"""models.conf parsing: the seed profiles, and a clear error for every malformed input."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plugin.config.keys import KNOWN_KEYS, REQUIRED_KEYS
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, guess_quant, infer_gpus, split_extra_args
from plugin.errors import ConfigError
from plugin.pytest_plugin import _load

ROOT = Path(__file__).resolve().parents[1]
SEED_BENCH = {"bench-glm-flash-q4", "bench-glm-flash", "bench-gpt-oss-120b",
              "bench-qwen3-coder-q5", "bench-qwen3-coder", "bench-qwen3-coder-q6k"}
PRODUCTION = {"glm-flash-q4", "glm-flash", "glm-flash-exp", "gpt-oss-120b",
              "qwen3-coder-q5", "qwen3-coder", "qwen3-coder-q6k"}


@pytest.fixture(scope="module")
def conf():
    return load_models_conf(ROOT / "models.conf")


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "models.conf"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_project_models_conf_has_the_seed_profiles(conf):
    names = set(conf.profiles)
    assert PRODUCTION <= names
    bench = {p.name for p in conf.bench_profiles}
    assert bench == SEED_BENCH | {"bench-smoke", "bench-canary", "bench-canary-think",
                                  "bench-gemma3-270m"}
    assert "bench-glm-flash-exp" not in names


def test_seed_sampler_updates_applied_exactly(conf):
    for name in ("qwen3-coder-q5", "qwen3-coder", "qwen3-coder-q6k"):
        args = conf.profiles[name].extra_args
        assert args[args.index("--min-p") + 1] == "0.01"
    for name in ("glm-flash-q4", "glm-flash"):
        assert conf.profiles[name].extra_args == (
            "--jinja", "-np", "1", "--temp", "1.0", "--top-p", "0.95", "--min-p", "0.01")
    assert conf.profiles["glm-flash-exp"].extra_args == ("--jinja", "-np", "1")
    gpt = conf.profiles["gpt-oss-120b"].extra_args
    assert gpt[:7] == ("--jinja", "-np", "1", "--temp", "1.0", "--top-p", "1.0")
    assert gpt.index("--top-p") < gpt.index("-ot")


def test_bench_profiles_mirror_production(conf):
    for bench in SEED_BENCH:
        prod = conf.profiles[bench.removeprefix("bench-")]
        profile = conf.profiles[bench]
        assert profile.ctx_size == 16384
        assert (profile.model, profile.n_gpu_layers, profile.fit) == (
            prod.model, prod.n_gpu_layers, prod.fit)
        assert infer_gpus(profile.extra_args) == infer_gpus(prod.extra_args)
        ot = [a for i, a in enumerate(profile.extra_args) if profile.extra_args[i - 1] == "-ot"]
        prod_ot = [a for i, a in enumerate(prod.extra_args) if prod.extra_args[i - 1] == "-ot"]
        assert ot == prod_ot
        assert not {"--temp", "--top-p", "--top-k", "--min-p"} & set(profile.extra_args)


def test_ot_regex_reaches_the_server_byte_for_byte(conf):
    args = conf.profiles["bench-qwen3-coder"].extra_args
    assert args[args.index("-ot") + 1] == (
        r"blk\.([0-9]|1[0-2])\.=CUDA0,blk\.(1[3-8])\.=CUDA1,exps=CPU")
    assert conf.profiles["bench-qwen3-coder"].gpus == ("0", "1")
    assert conf.profiles["bench-glm-flash"].gpus == ("all",)
    assert conf.profiles["bench-canary"].gpus == ()


def test_model_dirs_resolve_per_profile(conf):
    canary = conf.profiles["bench-canary"].model_path
    assert canary.resolve() == (ROOT / "models/canary/canary-humaneval.gguf").resolve()
    assert conf.profiles["bench-canary-think"].model_path.resolve() == canary.resolve()
    assert conf.profiles["bench-smoke"].models_dir == ROOT / "build/models"
    assert conf.profiles["bench-gemma3-270m"].models_dir == ROOT / "build/models"
    assert conf.profiles["bench-qwen3-coder"].models_dir == Path("/srv/models")


def test_defaults_override_only_default_section(tmp_path):
    overridden = load_models_conf(ROOT / "models.conf", Defaults(
        models_dir="/data/gguf", cpu_image="local/llama.cpp:server", max_tokens=512))
    assert overridden.profiles["bench-qwen3-coder"].models_dir == Path("/data/gguf")
    # profiles that name their own MODELS_DIR keep it
    assert overridden.profiles["bench-canary"].models_dir == ROOT / "models/canary"
    assert overridden.profiles["bench-canary"].image == "local/llama.cpp:server"
    assert overridden.profiles["bench-qwen3-coder"].image.endswith("server-cuda")
    assert overridden.profiles["bench-canary"].max_tokens == 512


def test_split_extra_args_keeps_backslashes_and_quotes():
    assert split_extra_args(r'-ot "blk\.(1[3-8])\.=CUDA1" --alias "my model"') == (
        "-ot", r"blk\.(1[3-8])\.=CUDA1", "--alias", "my model")


@pytest.mark.parametrize(("model", "quant"), [
    ("Qwen3-Coder-Next-UD-Q6_K_XL-00001-of-00003.gguf", "UD-Q6_K_XL"),
    ("GLM-4.7-Flash-Q8_0.gguf", "Q8_0"),
    ("gpt-oss-120b-mxfp4-00001-of-00003.gguf", "MXFP4"),
    ("plain.gguf", "-"),
])
def test_guess_quant(model, quant):
    assert guess_quant(model) == quant


GOOD = "[bench-x]\nNAME=X\nMODEL=x.gguf\nCTX_SIZE=4096\n"


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("NAME=X\n[bench-x]\n", 1, "outside any section"),
    (GOOD + "[bench-x]\nNAME=Y\n", 5, "appears twice"),
    (GOOD + "NAME=Y\n", 5, "NAME appears twice"),
    ("[bench-x]\nNAME=X\nCTX_SIZE=4096\n", 1, "has no MODEL"),
    (GOOD + "N_GPU_LAYERS=lots\n", 5, "N_GPU_LAYERS='lots'"),
    (GOOD.replace("4096", "4k"), 4, "CTX_SIZE='4k' is not a whole number"),
    (GOOD + "FIT=maybe\n", 5, "FIT='maybe'"),
    (GOOD + "PROMPT_MODE=instruct\n", 5, "PROMPT_MODE='instruct' is not one of chat|completion"),
    (GOOD + "EXTRA_ARGS=--alias \"unbalanced\n", 5, "cannot be split"),
    (GOOD + "EXTRA_ARGS=--jinja -c 8192\n", 5, "sets -c"),
    (GOOD + "MODLE=typo.gguf\n", 5, "unknown key MODLE"),
    (GOOD + "HEALTH_TIMEOUT=-3\n", 5, "must be positive"),
    (GOOD + "GPUS=first\n", 5, "GPUS='first'"),
    ("# only a comment\n", 1, "no profiles"),
    ("", 1, "no profiles"),
    ("[DEFAULT]\nBOGUS=1\n" + GOOD, 2, "unknown key BOGUS"),
    ("[bench x]\nNAME=X\nMODEL=x\nCTX_SIZE=1\n", 1, "profile name"),
])
def test_malformed_input_names_file_line_and_fix(tmp_path, text, line, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_models_conf(path)
    message = str(info.value)
    assert f"{path}:{line}:" in message
    assert needle in message
    assert "fix:" in message


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.encode() + b"NAME2=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"models.conf:5: not valid UTF-8"):
        load_models_conf(path)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="--bench-config"):
        load_models_conf(tmp_path / "nope.conf")


_KEYS = st.sampled_from(["NAME", "MODEL", "CTX_SIZE", "N_GPU_LAYERS", "FIT", "EXTRA_ARGS",
                         "GPUS", "MAX_TOKENS", "BOGUS", "HEALTH_TIMEOUT", "THINKING"])
_VALUES = st.one_of(st.text(max_size=20), st.integers(-5, 10**6).map(str),
                    st.sampled_from(['"', "'", "on", "off", "all", "0,1", "-c 1", "\\"]))
_LINES = st.one_of(
    st.tuples(_KEYS, _VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["[bench-a]", "[bench-a]", "[DEFAULT]", "[b c]", "# c", "", "=x", "  x"]),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, max_size=12), raw=st.binary(max_size=8))
@example(lines=["[bench-a]"], raw=b"]")  # section "bench-a]": found by this test once
def test_any_content_gives_profiles_or_a_config_error(tmp_path, lines, raw):
    """Property: whatever the file holds, the result is profiles or a ConfigError with a
    file:line location - never another exception."""
    path = write(tmp_path, "\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    error: ConfigError | None = None
    try:
        conf = load_models_conf(path)
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert str(path) in str(error)
        assert error.line is not None
        return
    for profile in conf.profiles.values():
        assert profile.model
        assert profile.ctx_size > 0


# ------------------------------------------------------ one defect, reported at its line
# Each strategy below writes a valid models.conf ([DEFAULT] or not, one to three profiles,
# keys in any order and letter case, spaces around "=", comments and blank lines between,
# indented keys where configparser allows them, LF or CRLF, an optional UTF-8 BOM, any
# text in free-form values) and injects exactly ONE defect of its category. Property: the
# load fails with a ConfigError at the defect's own line, with a fix, and the plugin turns
# it into a pytest.UsageError with the same text.

@dataclass(frozen=True)
class _Line:
    text: str
    section: str | None = None  # header and key lines: the section they belong to
    key: str | None = None  # key lines: the KEY (upper case)


@dataclass(frozen=True)
class Case:
    content: bytes
    line: int  # 1-based line of the defect
    needle: str  # regular expression the message must contain


_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"),
                max_size=12)
_WORD = _TEXT.filter(lambda text: text.strip() != "")
_FILLER = st.lists(st.one_of(
    st.sampled_from(["", "   ", "\t"]),
    st.tuples(st.sampled_from(["#", ";", "  # ", "\t;"]), _TEXT).map("".join)), max_size=2)
_SECTION = st.from_regex(r"(bench-)?[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True).filter(
    lambda name: name != "DEFAULT")
_ARG = st.one_of(
    st.sampled_from(["--jinja", "-np", "2", "-ot", r"blk\.([0-9]|1[0-2])\.=CUDA0,exps=CPU",
                     "--alias", "-fa", "--temp", "0.7"]),
    st.from_regex(r"[A-Za-z0-9_.,=\\()|\[\]]{1,10}", fullmatch=True))


def _extra_args(quote: str) -> st.SearchStrategy[list[str]]:
    """EXTRA_ARGS words: plain words, and groups quoted with ``quote`` (balanced)."""
    group = st.lists(_ARG, min_size=1, max_size=3).map(lambda words: quote + " ".join(words)
                                                       + quote)
    return st.lists(st.one_of(_ARG, group), max_size=5)


_VALID: dict[str, st.SearchStrategy[str]] = {
    "NAME": _WORD, "MODEL": _WORD, "CTX_SIZE": st.integers(1, 1 << 20).map(str),
    "N_GPU_LAYERS": st.sampled_from(["0", "99", "all", "AUTO"]),
    "FIT": st.sampled_from(["on", "off", "OFF"]),
    "THINKING": st.sampled_from(["auto", "on", "Off"]),
    "CODE_FROM_REASONING": st.sampled_from(["on", "off"]),
    "PROMPT_MODE": st.sampled_from(["chat", "completion", "Completion"]),
    "MAX_TOKENS": st.integers(1, 4096).map(str),
    "HEALTH_TIMEOUT": st.floats(0.5, 1e4).map(str),
    "GPUS": st.sampled_from(["all", "none", "0", "0,1"]),
    "EXTRA_ARGS": st.sampled_from(['"', "'"]).flatmap(_extra_args).map(" ".join),
    "QUANT": _WORD, "REASONING_EFFORT": _WORD, "IMAGE": _WORD,
}
_OPTIONAL = [k for k in _VALID if k not in REQUIRED_KEYS]
_DEFAULT_KEYS = ["MODELS_DIR", "CPU_IMAGE", "MAX_TOKENS", "HEALTH_TIMEOUT", "EXTRA_ARGS"]
_VALID.update({"MODELS_DIR": _WORD, "CPU_IMAGE": _WORD})


def _assign(draw: st.DrawFn, key: str, value: str) -> str:
    written = draw(st.sampled_from([key, key.lower(), key.title()]))
    return written + draw(st.sampled_from(["=", " = ", "= ", " ="])) + value


@st.composite
def _valid_conf(draw: st.DrawFn) -> list[_Line]:
    lines = [_Line(text) for text in draw(_FILLER)]
    if draw(st.booleans()):
        lines.append(_Line("[DEFAULT]", "DEFAULT"))
        for key in draw(st.lists(st.sampled_from(_DEFAULT_KEYS), unique=True, max_size=3)):
            lines.append(_Line(_assign(draw, key, draw(_VALID[key])), "DEFAULT", key))
            lines += [_Line(text) for text in draw(_FILLER)]
    for name in draw(st.lists(_SECTION, min_size=1, max_size=3, unique=True)):
        lines.append(_Line(f"[{name}]", name))
        keys = [*REQUIRED_KEYS,
                *draw(st.lists(st.sampled_from(_OPTIONAL), unique=True, max_size=4))]
        for key in draw(st.permutations(keys)):
            lines.append(_Line(_assign(draw, key, draw(_VALID[key])), name, key))
            lines += [_Line(text) for text in draw(_FILLER)]
    return lines


def _layout(draw: st.DrawFn, lines: list[_Line]) -> list[str]:
    """The lines' text; a key line may be indented where that does not make it continue
    the value above (after a header, a comment or a blank line)."""
    texts = []
    for index, line in enumerate(lines):
        after_key = index > 0 and lines[index - 1].key is not None
        indent = line.key is not None and not after_key and draw(st.booleans())
        texts.append(("  " if indent else "") + line.text)
    return texts


def _join(draw: st.DrawFn, encoded: list[bytes]) -> bytes:
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    end = draw(st.sampled_from([newline, b""]))
    return bom + newline.join(encoded) + (end if encoded else b"")


@st.composite
def _rendered(draw: st.DrawFn, lines: list[_Line]) -> bytes:
    return _join(draw, [text.encode() for text in _layout(draw, lines)])


def _case(draw: st.DrawFn, lines: list[_Line], index: int, needle: str) -> Case:
    return Case(draw(_rendered(lines)), index + 1, needle)


def _span(lines: list[_Line], section: str) -> tuple[int, int]:
    """Index of the section's header, and the index just past its last line."""
    start = next(i for i, line in enumerate(lines) if line.section == section and not line.key)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].section is not None and lines[i].key is None), len(lines))
    return start, end


def _find(lines: list[_Line], section: str, key: str) -> int | None:
    return next((i for i, line in enumerate(lines)
                 if (line.section, line.key) == (section, key)), None)


def _profiles(lines: list[_Line]) -> list[str]:
    return [line.section for line in lines
            if line.section not in (None, "DEFAULT") and line.key is None]


def _set_key(draw: st.DrawFn, lines: list[_Line], section: str, key: str,
             value: str) -> int:
    """Write KEY=value in the section (replacing its line, else at any place in it)."""
    line = _Line(_assign(draw, key, value), section, key)
    index = _find(lines, section, key)
    if index is None:
        start, end = _span(lines, section)
        index = draw(st.integers(start + 1, end))
        lines.insert(index, line)
    else:
        lines[index] = line
    return index


@st.composite
def _missing_key(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    section = draw(st.sampled_from(_profiles(lines)))
    key = draw(st.sampled_from(REQUIRED_KEYS))
    index = _find(lines, section, key)
    assert index is not None
    where = rf"profile \[{re.escape(section)}\]: has no {key}"
    if draw(st.booleans()):  # the line is gone: reported at the section's header
        del lines[index]
        return _case(draw, lines, _span(lines, section)[0], where)
    lines[index] = _Line(_assign(draw, key, draw(st.sampled_from(["", " ", "\t"]))),
                         section, key)
    return _case(draw, lines, index, where + r" \(its value is empty\)")


_NOT_INT = st.one_of(  # int() rejects all of these, or they are below 1
    st.sampled_from(["4k", "1e4", "12.5", "0x10", "1,024", "\u00b2", "-", "four", "9" * 5000]),
    st.integers(max_value=0).map(str),
    st.tuples(_TEXT, st.sampled_from("abcxyz.,/:*"), _TEXT).map("".join))
_NOT_POSITIVE = st.one_of(  # float() rejects all of these, or they are not > 0
    st.sampled_from(["0", "-3", "nan", "NaN", "soon", "1,5", "-inf", "5m", "1 s"]),
    st.floats(max_value=0, allow_nan=False).map(repr),
    st.tuples(_TEXT, st.sampled_from(",/:*"), _TEXT).map("".join))
_NOT_LAYERS = st.one_of(  # neither all, auto nor ASCII digits
    st.sampled_from(["-1", "lots", "1.5", "\u00b2", "\u0663", "99 layers", "0x10", "+3"]),
    st.tuples(_TEXT, st.sampled_from(".,/:*-"), _TEXT).map("".join))
_BAD_NUMBERS = {
    "CTX_SIZE": (_NOT_INT, "(is not a whole number|is below 1)"),
    "MAX_TOKENS": (_NOT_INT, "(is not a whole number|is below 1)"),
    "HEALTH_TIMEOUT": (_NOT_POSITIVE, "(is not a number|must be positive)"),
    "N_GPU_LAYERS": (_NOT_LAYERS, "is not a layer count"),
}


@st.composite
def _bad_number(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    section = draw(st.sampled_from(_profiles(lines)))
    key = draw(st.sampled_from(sorted(_BAD_NUMBERS)))
    values, problem = _BAD_NUMBERS[key]
    index = _set_key(draw, lines, section, key, draw(values.filter(str.strip)))
    return _case(draw, lines, index, rf"profile \[{re.escape(section)}\]: {key}=.* {problem}")


_CHOICES = {"FIT": ("off", "on"), "THINKING": ("auto", "on", "off"),
            "CODE_FROM_REASONING": ("off", "on"), "PROMPT_MODE": ("chat", "completion")}


@st.composite
def _bad_choice(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    section = draw(st.sampled_from(_profiles(lines)))
    key = draw(st.sampled_from([*_CHOICES, "GPUS"]))
    if key == "GPUS":
        value = draw(st.sampled_from(["first", "0;1", "-1", "1.5", "\u00b9", "gpu0", "0,,1",
                                      "all,0", "0, x"]))
        needle = "is not all, none or ids"
    else:
        value = draw(_WORD.filter(lambda v: v.strip().lower() not in _CHOICES[key]))
        needle = "is not one of " + "[|]".join(_CHOICES[key])
    index = _set_key(draw, lines, section, key, value)
    return _case(draw, lines, index, rf"{key}=.* {needle}")


@st.composite
def _duplicate_section(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    section = draw(st.sampled_from(_profiles(lines)))
    start, end = _span(lines, section)
    later = [i for i in range(end, len(lines) + 1)
             if i == len(lines) or (lines[i].section is not None and lines[i].key is None)]
    at = draw(st.sampled_from(later))
    body = [line for line in lines[start + 1:end] if line.key]
    copy = [_Line(f"[{section}]", section),
            *draw(st.lists(st.sampled_from(body), max_size=2, unique=True))]
    lines[at:at] = copy
    return _case(draw, lines, at, rf"section \[{re.escape(section)}\] appears twice")


@st.composite
def _duplicate_key(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    index = draw(st.sampled_from([i for i, line in enumerate(lines) if line.key]))
    section, key = lines[index].section, lines[index].key
    assert section is not None
    assert key is not None
    at = draw(st.integers(index + 1, _span(lines, section)[1]))
    lines.insert(at, _Line(_assign(draw, key, draw(_VALID[key])), section, key))
    return _case(draw, lines, at, rf"key {key} appears twice in \[{re.escape(section)}\]")


@st.composite
def _unbalanced_quote(draw: st.DrawFn) -> Case:
    """One stray quote outside the quoted groups: the value then holds an odd number of
    that quote character and none of the other, so it cannot be balanced."""
    lines = draw(_valid_conf())
    section = draw(st.sampled_from(_profiles(lines)))
    quote = draw(st.sampled_from(['"', "'"]))
    words = draw(_extra_args(quote))
    stray = quote + draw(st.one_of(st.just(""), _ARG))
    plain = [i for i, word in enumerate(words) if not word.startswith(quote)]
    if plain and draw(st.booleans()):  # inside a plain word
        i = draw(st.sampled_from(plain))
        cut = draw(st.integers(0, len(words[i])))
        words[i] = words[i][:cut] + quote + words[i][cut:]
    else:  # between words
        words.insert(draw(st.integers(0, len(words))), stray)
    index = _set_key(draw, lines, section, "EXTRA_ARGS", " ".join(words))
    return _case(draw, lines, index,
                 rf"profile \[{re.escape(section)}\]: EXTRA_ARGS cannot be split")


_UNKNOWN_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True).filter(
    lambda key: key.upper() not in KNOWN_KEYS)


@st.composite
def _unknown_key(draw: st.DrawFn) -> Case:
    lines = draw(_valid_conf())
    sections = [line.section for line in lines if line.section and not line.key]
    section = draw(st.sampled_from(sections))
    start, end = _span(lines, section)
    at = draw(st.integers(start + 1, end))
    key = draw(_UNKNOWN_KEY)
    lines.insert(at, _Line(f"{key}={draw(_TEXT)}", section, key.upper()))
    return _case(draw, lines, at, rf"unknown key {re.escape(key.upper())}\n")


_INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe9", b"\xc0\xaf", b"\xed\xa0\x80",
                 b"\xf4\x90\x80\x80"]


@st.composite
def _non_utf8(draw: st.DrawFn) -> Case:
    """Bytes that are not UTF-8, at a character boundary of any line."""
    texts = _layout(draw, draw(_valid_conf()))
    index = draw(st.integers(0, len(texts) - 1))
    cut = draw(st.integers(0, len(texts[index])))
    encoded = [text.encode() for text in texts]
    encoded[index] = (texts[index][:cut].encode() + draw(st.sampled_from(_INVALID_UTF8))
                      + texts[index][cut:].encode())
    return Case(_join(draw, encoded), index + 1, r"not valid UTF-8 \(byte 0x[0-9a-f]{2}\)")


@st.composite
def _empty(draw: st.DrawFn) -> Case:
    """Nothing, blanks, comments, or a [DEFAULT] section alone: no profile at all."""
    lines = [_Line(text) for text in draw(_FILLER)]
    if draw(st.booleans()):
        lines.append(_Line("[DEFAULT]", "DEFAULT"))
        for key in draw(st.lists(st.sampled_from(_DEFAULT_KEYS), unique=True, max_size=2)):
            lines.append(_Line(_assign(draw, key, draw(_VALID[key])), "DEFAULT", key))
    return _case(draw, lines, 0, "no profiles")


class _OptionsOnly:
    """What plugin.pytest_plugin._load reads of a pytest.Config: --bench-config only."""

    def __init__(self, conf: Path) -> None:
        self.rootpath = conf.parent
        self.conf = conf

    def getoption(self, dest: str) -> str | None:
        return str(self.conf) if dest == "bench_config" else None

    def getini(self, name: str) -> str:
        return ""


@pytest.fixture
def no_bench_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """BENCH_MAX_TOKENS and friends would replace the file's values (and hide defects)."""
    for name in [n for n in os.environ if n.startswith("BENCH_")]:
        monkeypatch.delenv(name)


def _assert_reported(tmp_path: Path, case: Case) -> None:
    path = write(tmp_path, case.content)
    with pytest.raises(ConfigError) as info:
        load_models_conf(path)
    error, message = info.value, str(info.value)
    assert (error.path, error.line) == (str(path), case.line), message
    assert message.startswith(f"{path}:{case.line}: "), message
    assert re.search(case.needle, message), message
    assert error.fix
    assert f"\n  fix: {error.fix}" in message
    with pytest.raises(pytest.UsageError) as usage:  # the plugin's boundary
        _load(cast(pytest.Config, _OptionsOnly(path)))
    assert str(usage.value) == message


_DEFECT_SETTINGS = settings(max_examples=40, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])
GOOD_BYTES = GOOD.encode()


@_DEFECT_SETTINGS
@given(case=_missing_key())
# CTX_SIZE missing or empty was accepted as 0 (llama-server would have got -c 0)
@example(case=Case(b"[bench-x]\nNAME=X\nMODEL=x.gguf\n", 1, "has no CTX_SIZE"))
@example(case=Case(GOOD_BYTES.replace(b"4096", b""), 4, r"has no CTX_SIZE \(its value"))
def test_missing_key_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_bad_number())
# str.isdigit() accepted superscript and non-ASCII digits
@example(case=Case(GOOD_BYTES + "N_GPU_LAYERS=\u00b2\n".encode(), 5, "not a layer count"))
def test_bad_number_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_bad_choice())
@example(case=Case(GOOD_BYTES + "GPUS=\u00b9\n".encode(), 5, "is not all, none or ids"))
def test_bad_choice_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_duplicate_section())
def test_duplicate_section_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_duplicate_key())
def test_duplicate_key_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_unbalanced_quote())
def test_unbalanced_quote_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_unknown_key())
# a form feed inside a value shifted every later line number by one (str.splitlines)
@example(case=Case(b"[bench-x]\nNAME=X\x0cY\nMODEL=m\nCTX_SIZE=1\nBOGUS=1\n", 5,
                   "unknown key BOGUS"))
# an indented key after a blank line is a key for configparser, but had no line number
@example(case=Case(GOOD_BYTES + b"\n  BOGUS=1\n", 6, "unknown key BOGUS"))
# a UTF-8 byte-order mark made the first header "a key outside any section"
@example(case=Case(b"\xef\xbb\xbf" + GOOD_BYTES + b"BOGUS=1\n", 5, "unknown key BOGUS"))
def test_unknown_key_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_non_utf8())
@example(case=Case(b"\xef\xbb\xbf[bench-x]\nNAME=caf\xe9\n", 2, "not valid UTF-8"))
def test_non_utf8_is_reported_at_its_line(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@_DEFECT_SETTINGS
@given(case=_empty())
@example(case=Case(b"", 1, "no profiles"))
def test_empty_file_is_reported_at_line_1(tmp_path, no_bench_env, case):
    _assert_reported(tmp_path, case)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_valid_files_load_and_know_where_each_key_is(tmp_path, data):
    """The generator behind the defect tests writes valid files (so each defect above is
    the only one), and every key's recorded line is the line it is on."""
    lines = data.draw(_valid_conf())
    path = write(tmp_path, data.draw(_rendered(lines)))
    conf = load_models_conf(path)
    assert sorted(conf.profiles) == sorted(_profiles(lines))
    for index, line in enumerate(lines):
        if line.section in conf.profiles and line.key is None:
            assert conf.profiles[line.section].line == index + 1
        elif line.section in conf.profiles:
            assert conf.profiles[line.section].where(line.key) == f"{path}:{index + 1}"
        elif line.section == "DEFAULT" and line.key:  # inherited, unless overridden
            for profile in conf.profiles.values():
                if _find(lines, profile.name, line.key) is None:
                    assert profile.key_lines[line.key] == index + 1


# ------------------------------------------------- the same errors from a real pytest run
CLI_CASES = {
    "missing key": (GOOD.replace("CTX_SIZE=4096\n", ""), 1, "has no CTX_SIZE"),
    "bad number": (GOOD.replace("4096", "4k"), 4, "CTX_SIZE='4k' is not a whole number"),
    "duplicate section": (GOOD + "\n" + GOOD, 6, "section [bench-x] appears twice"),
    "unbalanced quotes": (GOOD + "EXTRA_ARGS=--alias 'my model\n", 5, "cannot be split"),
    "unknown key": (GOOD + "MODLE=typo.gguf\n", 5, "unknown key MODLE"),
    "non-UTF-8": (GOOD.encode() + b"NAME2=caf\xe9\n", 5, "not valid UTF-8"),
    "empty file": ("", 1, "no profiles"),
}


@pytest.mark.parametrize(("how", "category"), [
    *(("--bench-config", category) for category in CLI_CASES),
    ("--bench-list", "unbalanced quotes"),
    ("BENCH_CONFIG", "non-UTF-8"),
])
def test_pytest_run_with_a_bad_file_is_a_usage_error(tmp_path, how, category):
    """`pytest bench_tests` on a malformed file: exit code 4 (usage error), the message
    names file:line and the fix, and no traceback is shown."""
    import subprocess
    import sys

    text, line, needle = CLI_CASES[category]
    path = write(tmp_path, text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    args = [sys.executable, "-m", "pytest", "bench_tests", "--collect-only", "-q"]
    if how == "BENCH_CONFIG":
        env["BENCH_CONFIG"] = str(path)
    else:
        args += ["--bench-config", str(path)] + (["--bench-list"] if how == "--bench-list"
                                                 else [])
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert f"ERROR: {path}:{line}: " in done.stderr, output
    assert needle in done.stderr
    assert "\n  fix: " in done.stderr
    assert "Traceback" not in output
    assert "collected" not in output  # stopped before collecting anything
