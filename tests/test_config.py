"""models.conf parsing: the seed profiles, and a clear error for every malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plugin.config import (
    Defaults,
    guess_quant,
    infer_gpus,
    load_models_conf,
    split_extra_args,
)
from plugin.errors import ConfigError

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
    assert bench == SEED_BENCH | {"bench-smoke", "bench-canary", "bench-canary-think"}
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
    assert canary.resolve() == (ROOT.parent / "shared/models/canary-humaneval.gguf").resolve()
    assert conf.profiles["bench-smoke"].models_dir == ROOT / "build/models"
    assert conf.profiles["bench-qwen3-coder"].models_dir == Path("/srv/models")


def test_defaults_override_only_default_section(tmp_path):
    overridden = load_models_conf(ROOT / "models.conf", Defaults(
        models_dir="/data/gguf", cpu_image="local/llama.cpp:server", max_tokens=512))
    assert overridden.profiles["bench-qwen3-coder"].models_dir == Path("/data/gguf")
    # profiles that name their own MODELS_DIR keep it
    assert overridden.profiles["bench-canary"].models_dir.name == "models"
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
