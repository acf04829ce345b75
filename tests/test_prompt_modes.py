"""Prompt modes (PROMPT_MODE=chat|completion), checked against EvalPlus 0.3.1 itself.

Completion mode is EvalPlus's direct completion for base models: the prompt, the stop
strings and the program (prompt + completion, sanitized) come from evalplus's own
functions and from running its own ``codegen`` loop with a stand-in model. The request
building, the endpoint, the configuration and the report are checked here too; nothing
needs Docker (a tiny HTTP server on loopback stands in for llama-server).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults
from plugin.config.settings import SETTINGS, Options, resolve
from plugin.datasets import Dataset, load_dataset
from plugin.errors import ConfigError
from plugin.gate.record import Row
from plugin.generation.client import generate
from plugin.generation.extract import completion_program, extract_completion
from plugin.generation.request import (
    COMPLETION_TEMPLATE_ID,
    PROMPT_TEMPLATE_ID,
    PromptMode,
    Sampling,
    completion_prompt,
    stop_strings,
)
from plugin.report.html import row_cells, summary_sections
from plugin.report.text import markdown_report, terminal_lines
from plugin.runner import run_fingerprint, sampling_for

HUMANEVAL_TASKS = ("HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/163")
MBPP_TASKS = ("Mbpp/2", "Mbpp/3", "Mbpp/4")


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    return {name: load_dataset(name) for name in ("humaneval", "mbpp")}


# --------------------------------------------------------------------- EvalPlus itself


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp", "HumanEval"])
def test_stop_strings_are_evalplus_eos_plus_its_direct_completion_extras(dataset):
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion

    assert list(stop_strings(dataset)) == list(EOS) + extra_eos_for_direct_completion(dataset)


def test_stop_strings_do_not_follow_evalplus_mutating_its_module_list(monkeypatch):
    """EvalPlus decoders do ``self.eos = EOS; self.eos += ...``: the module-level list
    grows. The harness's copy stays as released."""
    from evalplus.provider import utility

    before = stop_strings("mbpp")
    monkeypatch.setattr(utility, "EOS", [*utility.EOS, "\n```\n"])
    assert stop_strings("mbpp") == before
    with pytest.raises(ValueError, match="evalperf"):
        stop_strings("evalperf")


def test_evalplus_codegen_builds_the_prompt_and_program_as_pinned():
    """The lines of evalplus 0.3.1 the harness mirrors (codegen.py:80, 88-89, vllm.py:68):
    a new evalplus that changes them fails here."""
    import evalplus
    from evalplus import codegen

    assert evalplus.__version__ == "0.3.1"
    source = inspect.getsource(codegen.codegen)
    assert 'prompt = task["prompt"].strip() + "\\n"' in source
    assert "solution = prompt + impl if model.is_direct_completion() else impl" in source
    assert 'sanitize(\n                        solution, entrypoint=task["entry_point"]' in source
    spec = importlib.util.find_spec("evalplus.provider.vllm")
    assert spec is not None
    assert spec.origin is not None
    vllm = Path(spec.origin).read_text(encoding="utf-8")  # imports vllm: read, not imported
    assert 'x.outputs[0].text.replace("\\t", "    ")' in vllm
    assert "top_p=0.95 if do_sample else 1.0" in vllm
    assert "self.eos += extra_eos_for_direct_completion(dataset)" in vllm


#: What a base model might write: tabs, a helper after the function, a trailing print.
RAW_COMPLETIONS = [
    "\tif not x:\n\t\treturn None\n\treturn x\n",
    "    return helper(1)\n\ndef helper(y):\n    return y\n\nprint(helper(2))\n",
    "",
    "    for i in range(3):\n        if i ==",  # cut by max_tokens mid-statement
]


class _DirectCompletionModel:
    """A stand-in for an EvalPlus base-model decoder: records the prompts it is given and
    returns a fixed completion, with tabs replaced as its vllm/hf decoders do."""

    def __init__(self, completions: dict[str, str]) -> None:
        self.completions = completions
        self.prompts: list[str] = []

    def is_direct_completion(self) -> bool:
        return True

    def codegen(self, prompt: str, do_sample: bool = True, num_samples: int = 200,
                ) -> list[str]:
        self.prompts.append(prompt)
        return [self.completions[prompt].replace("\t", "    ")]

    def __str__(self) -> str:
        return "stand-in"


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_prompt_and_program_equal_what_evalplus_codegen_writes(datasets, dataset,
                                                               tmp_path, monkeypatch):
    """EvalPlus's own ``codegen`` loop, run over real tasks with a stand-in model: the
    prompt it asks for is the harness's prompt, and the sanitized solution it writes is
    the harness's program for the same raw completion."""
    from evalplus import codegen

    data = datasets[dataset]
    ids = HUMANEVAL_TASKS if dataset == "humaneval" else MBPP_TASKS
    tasks = {t: {"task_id": t, "prompt": data.tasks[t].prompt,
                 "entry_point": data.tasks[t].entry_point} for t in ids}
    raw = {t: RAW_COMPLETIONS[i % len(RAW_COMPLETIONS)] for i, t in enumerate(ids)}
    model = _DirectCompletionModel({completion_prompt(data.tasks[t].prompt): raw[t]
                                    for t in ids})
    loader = "get_human_eval_plus" if dataset == "humaneval" else "get_mbpp_plus"
    monkeypatch.setattr(codegen, loader, lambda version="default": tasks)
    target = tmp_path / "samples.jsonl"

    codegen.codegen(str(target), model, dataset, greedy=True)

    assert model.prompts == [completion_prompt(data.tasks[t].prompt) for t in ids]
    written = {r["task_id"]: r["solution"] for r in map(json.loads, target.open())}
    raw_written = {r["task_id"]: r["solution"] for r in
                   map(json.loads, (tmp_path / "samples.raw.jsonl").open())}
    for t in ids:
        task = data.tasks[t]
        assert raw_written[t] == completion_program(task.prompt, raw[t]), t
        assert written[t] == extract_completion(task.prompt, raw[t], task.entry_point), t


def test_a_truncated_function_is_dropped_by_the_sanitizer(datasets):
    """What EvalPlus does with an answer cut mid-statement: the sanitizer keeps only code
    that parses, so the entry point goes and the task fails (scored as written)."""
    task = datasets["humaneval"].tasks["HumanEval/0"]
    program = extract_completion(task.prompt, RAW_COMPLETIONS[3], task.entry_point)
    assert "def has_close_elements" not in program
    assert program == "from typing import List"


# --------------------------------------------------------------------- requests


def test_completion_request_body(datasets):
    task = datasets["mbpp"].tasks["Mbpp/2"]
    sampling = Sampling(max_tokens=768, top_p=1.0)
    body = PromptMode("completion", "mbpp").body(sampling, task.prompt)
    assert body["prompt"] == task.prompt.strip() + "\n"
    assert body["stop"] == list(stop_strings("mbpp"))
    for key, value in {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "max_tokens": 768,
                       "cache_prompt": False, "seed": 1234, "n": 1, "stream": False}.items():
        assert body[key] == value, key
    assert "messages" not in body
    assert "chat_template_kwargs" not in body
    assert "reasoning_effort" not in body


def test_chat_mode_sends_exactly_what_it_sent_before():
    sampling = Sampling(max_tokens=512, thinking="off", reasoning_effort="low")
    mode = PromptMode()
    assert mode.name == "chat"
    assert mode.path == "/v1/chat/completions"
    assert mode.template_id == PROMPT_TEMPLATE_ID == "evalplus-0.3.1-openai-chat"
    assert json.dumps(mode.body(sampling, "def f():\n")) == json.dumps(
        sampling.body("def f():\n"))
    assert PromptMode("completion").path == "/v1/completions"
    assert PromptMode("completion").template_id == COMPLETION_TEMPLATE_ID
    with pytest.raises(ValueError, match="unknown prompt mode"):
        PromptMode("instruct")


class _Recorder(BaseHTTPRequestHandler):
    """llama-server's two endpoints, answering a fixed text; requests are recorded."""

    requests: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        if self.path == "/v1/completions":
            choice: dict[str, Any] = {"text": "\treturn 1\n", "index": 0,
                                      "finish_reason": "stop"}
        else:
            choice = {"message": {"role": "assistant", "content": "```python\nx\n```"},
                      "finish_reason": "stop"}
        data = json.dumps({"choices": [choice], "usage": {"prompt_tokens": 9,
                                                           "completion_tokens": 4},
                           "timings": {"predicted_per_second": 20.0}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_completion_mode_asks_v1_completions_and_stores_the_text(recorder, tmp_path,
                                                                  datasets):
    prompts = {t: datasets["humaneval"].tasks[t].prompt for t in HUMANEVAL_TASKS[:2]}
    store = tmp_path / "completions.jsonl"
    results, _ = generate(recorder, prompts, Sampling(top_p=1.0), store, "fp",
                          mode=PromptMode("completion", "humaneval"))
    assert [path for path, _ in _Recorder.requests] == ["/v1/completions"] * 2
    sent = {body["prompt"] for _, body in _Recorder.requests}
    assert sent == {completion_prompt(p) for p in prompts.values()}
    assert all(c.content == "\treturn 1\n" and c.finish_reason == "stop"
               for c in results.values())
    stored = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["content"] for r in stored] == ["\treturn 1\n"] * 2

    _Recorder.requests.clear()
    generate(recorder, prompts, Sampling(), tmp_path / "chat.jsonl", "fp")
    assert [path for path, _ in _Recorder.requests] == ["/v1/chat/completions"] * 2


def test_a_chat_answer_to_a_completion_request_is_malformed():
    import httpx

    from plugin.generation.client import MalformedResponseError, parse_completion_body

    chat = httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})
    text = httpx.Response(200, json={"choices": [{"text": "x"}]})
    assert parse_completion_body(chat)["choices"][0]["message"]["content"] == "x"
    assert parse_completion_body(text, text=True)["choices"][0]["text"] == "x"
    with pytest.raises(MalformedResponseError, match=r"choices\[0\].text"):
        parse_completion_body(chat, text=True)
    with pytest.raises(MalformedResponseError, match=r"choices\[0\].message"):
        parse_completion_body(text)


# --------------------------------------------------------------------- configuration

CONF = ("[bench-base]\nNAME=b\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
        "PROMPT_MODE=Completion\n"
        "[bench-chat]\nNAME=c\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\nTHINKING=off\n")


def test_prompt_mode_key_default_and_option(tmp_path):
    path = tmp_path / "models.conf"
    path.write_text(CONF, encoding="utf-8")
    profiles = load_models_conf(path).profiles
    assert profiles["bench-base"].prompt_mode == "completion"
    assert profiles["bench-base"].where("PROMPT_MODE") == f"{path}:6"
    assert profiles["bench-chat"].prompt_mode == "chat"

    setting = next(s for s in SETTINGS if s.name == "prompt-mode")
    value, where = resolve(setting, None, {"BENCH_PROMPT_MODE": "chat"}, None)
    assert (value, where) == ("chat", "environment BENCH_PROMPT_MODE")
    options = Options.resolve(lambda s: "chat" if s is setting else None, {}, lambda s: None)
    assert options.prompt_mode == "chat"
    overridden = load_models_conf(path, Defaults(prompt_mode=options.prompt_mode,
                                                 origins=options.origins)).profiles
    assert overridden["bench-base"].prompt_mode == "chat"
    assert overridden["bench-base"].where("PROMPT_MODE") == "command line --bench-prompt-mode"
    with pytest.raises(ConfigError, match="BENCH_PROMPT_MODE='base' is not one of"):
        resolve(setting, None, {"BENCH_PROMPT_MODE": "base"}, None)


def test_a_bad_prompt_mode_is_reported_even_under_the_option(tmp_path):
    path = tmp_path / "models.conf"
    path.write_text(CONF.replace("Completion", "base"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"models.conf:6: profile \[bench-base\]: "
                                          r"PROMPT_MODE='base' is not one of chat\|completion"):
        load_models_conf(path, Defaults(prompt_mode="chat"))


def test_the_project_gemma_profile_is_a_completion_profile():
    root = Path(__file__).resolve().parents[1]
    profile = load_models_conf(root / "models.conf").profiles["bench-gemma3-270m"]
    assert profile.prompt_mode == "completion"
    assert profile.model_path == root / "build" / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert (profile.ctx_size, profile.n_gpu_layers, profile.fit, profile.quant) == (
        4096, "0", "off", "Q4_K_M")
    assert profile.extra_args == ("-np", "1", "-t", "2")


def test_the_mode_is_in_the_fingerprint_and_sampling(tmp_path, datasets):
    from types import SimpleNamespace

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    path = tmp_path / "models.conf"
    path.write_text(CONF + "[bench-base-chat]\nNAME=b\nMODEL=m.gguf\nCTX_SIZE=512\n"
                    "N_GPU_LAYERS=0\n", encoding="utf-8")
    profiles = load_models_conf(path, Defaults(models_dir=str(tmp_path))).profiles
    base, chat = profiles["bench-base"], profiles["bench-base-chat"]
    assert sampling_for(base) == Sampling(max_tokens=768, top_p=1.0)
    assert sampling_for(profiles["bench-chat"]) == Sampling(max_tokens=768, thinking="off")
    server = SimpleNamespace(image_id=lambda: "sha256:x")
    data = datasets["humaneval"]
    fp_base = run_fingerprint(base, server, data, sampling_for(base))
    fp_chat = run_fingerprint(chat, server, data, sampling_for(chat))
    same_sampling = run_fingerprint(base, server, data, sampling_for(chat))
    assert len({fp_base, fp_chat, same_sampling}) == 3  # the template id alone counts


# --------------------------------------------------------------------- report


def _row(**values: Any) -> Row:
    base = {"run_id": "s/h/bench-gemma3-270m/humaneval", "profile": "bench-gemma3-270m",
            "name": "Gemma 3 270M", "quant": "Q4_K_M", "dataset": "humaneval",
            "n_tasks": 164, "partial": False, "base_passed": 10, "plus_passed": 8,
            "base_pass_at_1": 6.1, "plus_pass_at_1": 4.88, "gate": "no_baseline",
            "gate_message": "no baseline", "no_answer": 0, "truncated": 3}
    return Row.from_json({**base, **values})


def test_the_report_shows_the_completion_mode_beside_the_quant():
    row = _row(prompt_mode="completion")
    assert row_cells(row)[1] == "Q4_K_M, completion"
    assert "Q4_K_M, completion" in terminal_lines([row])[1]
    report = markdown_report([row], [], date="2026-12-01")
    assert "| Gemma 3 270M | Q4_K_M, completion |" in report
    assert "Local: Gemma 3 270M (Q4_K_M, completion)" in report
    assert "<td>Q4_K_M, completion</td>" in "".join(summary_sections([row], []))
    assert Row.from_json(json.loads(json.dumps(row.to_json()))) == row


@pytest.mark.parametrize("mode", [None, "chat"])
def test_chat_rows_and_rows_from_before_the_mode_show_the_quant_alone(mode):
    values = {} if mode is None else {"prompt_mode": mode}
    row = _row(**values)
    assert row.prompt_mode == mode
    assert row_cells(row)[1] == "Q4_K_M"
    assert "| Gemma 3 270M | Q4_K_M |" in markdown_report([row], [], date="2026-12-01")


def test_an_empty_completion_is_an_answer_in_completion_mode_not_in_chat():
    from types import SimpleNamespace

    from plugin.gate.checks import run_problems

    def result(mode):
        return SimpleNamespace(no_answer=["HumanEval/109"], thinking_exhausted=[],
                               unjudged=[], out_dir="out", prompt_mode=mode)

    assert run_problems(result("completion")) == []
    assert "got no answer" in run_problems(result("chat"))[0]
