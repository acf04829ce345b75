"""Generation pieces that need no server: request body, answer classification, store."""

from __future__ import annotations

import json
from pathlib import Path

from plugin.gate.references import Reference
from plugin.gate.verdicts import judge
from plugin.generation.request import Sampling, user_message
from plugin.generation.store import Completion, CompletionStore, summarize


def _completion(task: str = "T/0", content: str = "x", finish: str = "stop",
                reasoning: str = "") -> Completion:
    return Completion.from_response(task, "fp", {
        "choices": [{"message": {"content": content, "reasoning_content": reasoning},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        "timings": {"predicted_per_second": 50.0, "prompt_per_second": 500.0},
    }, wall_s=0.1, attempts=1)


def test_prompt_is_evalplus_openai_backend_byte_for_byte():
    prompt = "\ndef f(x):\n    \"\"\"doc\"\"\"\n\n"
    assert user_message(prompt) == (
        "Please provide a self-contained Python script that solves the following problem "
        "in a markdown code block:\n```python\ndef f(x):\n    \"\"\"doc\"\"\"\n```")
    body = Sampling().body(prompt)
    assert body["messages"][0] == {"role": "system",
                                   "content": "You are a helpful assistant good at coding."}
    assert body["messages"][1]["content"] == user_message(prompt)


def test_every_sampling_parameter_is_sent():
    body = Sampling(max_tokens=512).body("p")
    for key, value in {"temperature": 0.0, "top_k": 1, "top_p": 0.95, "min_p": 0.0,
                       "repeat_penalty": 1.0, "seed": 1234, "cache_prompt": False,
                       "max_tokens": 512, "n": 1}.items():
        assert body[key] == value, key
    assert "chat_template_kwargs" not in body
    assert Sampling(thinking="off").body("p")["chat_template_kwargs"] == {
        "enable_thinking": False}
    assert Sampling(reasoning_effort="high").body("p")["reasoning_effort"] == "high"


def test_classification_of_answers():
    assert _completion().outcome == "ok"
    assert _completion(finish="length").outcome == "truncated"
    empty = _completion(content="", finish="length", reasoning="let me think")
    assert empty.outcome == "no_answer"
    assert empty.thinking_exhausted
    assert not _completion(content="", finish="stop").thinking_exhausted
    none_content = Completion.from_response("T/1", "fp", {"choices": [
        {"message": {"content": None}, "finish_reason": "stop"}]}, 0.0, 1)
    assert none_content.outcome == "no_answer"


def test_summary_lists_problem_tasks():
    stats = summarize([_completion("T/0"), _completion("T/1", finish="length"),
                       _completion("T/2", content="", finish="length", reasoning="hm")])
    assert stats["no_answer"] == ["T/2"]
    assert stats["thinking_exhausted"] == ["T/2"]
    assert stats["truncated"] == ["T/1"]
    assert stats["completion_tokens"] == 15
    assert stats["gen_tokens_per_s"] == 50.0


def test_store_keeps_fingerprints_apart_and_survives_a_torn_line(tmp_path):
    store = CompletionStore(tmp_path / "c.jsonl")
    store.append(_completion("T/0"))
    with (tmp_path / "c.jsonl").open("a") as fh:
        fh.write('{"task_id": "T/1", "fingerp')  # a kill in the middle of a write
    assert set(store.load("fp")) == {"T/0"}
    assert store.load("other") == {}
    line = json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])
    assert line["fingerprint"] == "fp"


def _ref(value: float | None, tol: float = 2.0) -> Reference:
    return Reference("bench-x", "humaneval", value, None, tol, "test")


def test_gate_outcomes():
    """The tolerance part of the gate, without a baseline."""
    assert judge(80.0, {}, _ref(81.0), None).status == "pass"
    fail = judge(78.0, {}, _ref(81.0), None)
    assert fail.status == "fail_tolerance"
    assert "reference 81.00% +/- 2.00 pp (delta -3.00 pp" in fail.message
    assert "FAIL: below reference - tolerance = 79.00%" in fail.message
    assert judge(79.0, {}, _ref(81.0), None).status == "pass"  # exactly at the floor
    assert judge(50.0, {}, _ref(None), None).status == "no_baseline"
    assert judge(0.0, {}, _ref(81.0), None, partial=True).status == "partial"


def test_a_chat_template_file_counts_in_the_fingerprint_by_its_contents(tmp_path):
    """The thinking canary's template is a file in MODELS_DIR named in EXTRA_ARGS: editing
    it changes the answers, so it must change the fingerprint (stored answers are then
    not reused), while profiles without one keep their fingerprint."""
    from types import SimpleNamespace

    from plugin.config.models_conf import load_models_conf
    from plugin.config.profile import Defaults
    from plugin.datasets import load_dataset
    from plugin.runner import chat_template_file, run_fingerprint, sampling_for

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "t.jinja").write_text("{{ messages }}")
    conf = tmp_path / "models.conf"
    conf.write_text("[bench-a]\nNAME=a\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"MODELS_DIR={tmp_path}\n"
                    "EXTRA_ARGS=--jinja --chat-template-file /models/t.jinja -np 1\n"
                    "[bench-b]\nNAME=b\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"MODELS_DIR={tmp_path}\nEXTRA_ARGS=--chat-template-file={tmp_path}/t.jinja\n"
                    "[bench-c]\nNAME=c\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"MODELS_DIR={tmp_path}\n", encoding="utf-8")
    profiles = load_models_conf(conf, Defaults(cpu_image="img")).profiles
    assert chat_template_file(profiles["bench-a"]) == tmp_path / "t.jinja"
    assert chat_template_file(profiles["bench-b"]) == tmp_path / "t.jinja"
    assert chat_template_file(profiles["bench-c"]) is None
    server = SimpleNamespace(image_id=lambda: "sha256:x")
    dataset = load_dataset("humaneval", mini=True)

    def fp(name):
        profile = profiles[name]
        return run_fingerprint(profile, server, dataset, sampling_for(profile))

    before, plain = fp("bench-a"), fp("bench-c")
    (tmp_path / "t.jinja").write_text("{{ messages }}!")
    assert fp("bench-a") != before
    assert fp("bench-c") == plain
    (tmp_path / "t.jinja").unlink()
    assert fp("bench-a") not in (before, plain)  # a missing file is a value too


def test_extraction_loads_evalplus_sanitize_without_hf_datasets() -> None:
    """evalplus.sanitize imports evalplus.data, which imports HF datasets (seconds); the
    harness imports the same sanitize with stand-ins during the import only."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "started = time.perf_counter()\n"
        "from plugin.generation.extract import extract_code\n"
        "out = extract_code('```python\\ndef f():\\n    return 1\\n```', 'f')\n"
        "took = time.perf_counter() - started\n"
        "assert out.strip() == 'def f():\\n    return 1', out\n"
        "assert 'datasets' not in sys.modules, 'HF datasets was imported'\n"
        "import datasets, evalplus.data\n"
        "assert getattr(datasets, '__file__', None), 'a stand-in was left in sys.modules'\n"
        "assert callable(evalplus.data.get_human_eval_plus)\n"
        "print(f'{took:.3f}')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
