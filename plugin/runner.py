"""One benchmark run of one profile on one dataset: generate, extract, evaluate, score.

No pytest here: the plugin calls :func:`run_benchmark` with a server handle and turns the
:class:`BenchResult` into an assertion and report rows; a notebook can do the same.

Files written under ``out_dir`` (as they are produced; journals appended line by line,
the other files replaced whole and atomically, see plugin.atomic):
    completions.jsonl   raw answers (content, reasoning_content, finish_reason, timings),
                        tagged with the fingerprint; reused by later runs
    samples.jsonl       EvalPlus samples format: task_id + extracted solution
    verdicts.jsonl      per-task verdicts from the sandbox, streamed
    eval_results.json   EvalPlus-compatible results
    summary.json        the BenchResult below
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from plugin import atomic
from plugin.config.defaults import SANDBOX_IMAGE
from plugin.config.profile import Profile, select_tasks
from plugin.datasets import Dataset
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.results import EvalResult, TaskVerdict
from plugin.generation.client import Progress, Retry, generate
from plugin.generation.extract import extract_code, extract_completion
from plugin.generation.fingerprint import (
    file_sha256,
    fingerprint,
    model_identity,
    text_sha256,
    unhashed_bytes,
)
from plugin.generation.request import COMPLETION, PromptMode, Sampling
from plugin.generation.store import Completion, CompletionStore, summarize
from plugin.server.lazy import LazyServer
from plugin.server.spec import MODELS_MOUNT


@dataclass(frozen=True)
class RunOptions:
    sandbox: str = "docker"
    sandbox_image: str = SANDBOX_IMAGE
    limits: Limits = field(default_factory=Limits)
    limit: int | None = None
    concurrency: int | None = None
    eval_workers: int | None = None
    #: seconds the server may fail its health check in a row during generation
    hang_timeout_s: float = Retry.hang_timeout_s
    on_completion: Callable[[Completion, Progress], None] | None = None
    #: one-line notes while the run goes on: answers reused, server starting, sandbox
    on_note: Callable[[str], None] | None = None


@dataclass(frozen=True)
class TaskFacts:
    """One task of a run, as the gate and the report need it (nothing is read back from
    disk): how the answer ended, the program judged, the verdict, the first failing input."""

    task_id: str
    base: str  # pass | fail | timeout | missing
    plus: str
    answer: str  # the completion's content
    solution: str  # the program extracted from it (what was judged)
    finish_reason: str | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    wall_s: float | None  # generation time of the answer
    #: The first input the program failed on (base tests first), if one was recorded.
    first_failing_input: Any = None


@dataclass(frozen=True)
class BenchResult:
    profile: str
    display_name: str
    quant: str
    dataset: str
    dataset_version: str
    dataset_sha256: str
    n_tasks: int
    partial: bool
    base_passed: int
    plus_passed: int
    base_pass_at_1: float  # percent
    plus_pass_at_1: float  # percent
    no_answer: list[str]
    code_from_reasoning: list[str]  # opt-in: empty content, code taken from the reasoning
    thinking_exhausted: list[str]
    truncated: list[str]
    unjudged: list[str]
    generation: Mapping[str, Any]
    requests_sent: int
    gen_wall_s: float
    eval_wall_s: float
    server_started: bool
    load_time_s: float
    build_info: str
    fingerprint: str
    out_dir: str
    verdicts: Mapping[str, Mapping[str, str]] = field(repr=False)
    #: Per task (in the dataset's order); not in summary.json, whose files hold them.
    tasks: Mapping[str, TaskFacts] = field(default_factory=dict, repr=False)
    #: How the tasks were asked: chat or completion (PROMPT_MODE).
    prompt_mode: str = "chat"
    #: The determinism check's comparison (plugin.determinism), when it ran.
    determinism: Mapping[str, Any] | None = None
    #: The sandbox's limit policy (--bench-limits): harness or evalplus.
    limits: str = "harness"
    #: Verdicts the clock decided (machine-sensitive): task id -> why (docs/EVALUATION.md).
    clock_decided: Mapping[str, str] = field(default_factory=dict)
    #: What the fingerprint was computed from (image, model, server flags, sampling...).
    fingerprint_inputs: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["tasks"]
        return data


def sampling_for(profile: Profile) -> Sampling:
    if profile.prompt_mode == COMPLETION:
        # EvalPlus's greedy direct completion sends top_p 1.0 (provider/vllm.py); there is
        # no chat template, so THINKING and REASONING_EFFORT do not apply
        return Sampling(max_tokens=profile.max_tokens, top_p=1.0)
    return Sampling(max_tokens=profile.max_tokens, thinking=profile.thinking,
                    reasoning_effort=profile.reasoning_effort)


def chat_template_file(profile: Profile) -> Path | None:
    """The host file behind ``--chat-template-file`` in EXTRA_ARGS (a path under the
    models mount maps into MODELS_DIR), or None."""
    args = list(profile.extra_args)
    value = None
    for i, arg in enumerate(args):
        if arg == "--chat-template-file" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--chat-template-file="):
            value = arg.split("=", 1)[1]
    if value is None:
        return None
    path = PurePosixPath(value)
    if path.is_relative_to(MODELS_MOUNT):
        return profile.models_dir / path.relative_to(MODELS_MOUNT)
    return Path(value)


def run_fingerprint(profile: Profile, server: LazyServer, dataset: Dataset,
                    sampling: Sampling) -> str:
    """Hash of what can change an answer (see fingerprint_inputs)."""
    return fingerprint(fingerprint_inputs(profile, server, dataset, sampling))


def fingerprint_inputs(profile: Profile, server: LazyServer, dataset: Dataset,
                       sampling: Sampling) -> dict[str, Any]:
    """What can change an answer; for container profiles known without starting the
    server (the image id stands for the llama.cpp build, the model hash for the chat
    template in the GGUF). External servers are asked (/props). Stored with every run, so
    that two runs can say what changed between them (plugin.gate.changes)."""
    if profile.base_url:
        props = server.get().props or {}
        backend: dict[str, Any] = {
            "build_info": props.get("build_info"), "model_path": props.get("model_path"),
            "chat_template_sha256": text_sha256(str(props.get("chat_template") or "")),
            "base_url": profile.base_url}
    else:
        backend = {"image_id": server.image_id(),
                   "model": model_identity(profile.model_path),
                   "ctx": profile.ctx_size, "ngl": profile.n_gpu_layers, "fit": profile.fit,
                   "extra_args": list(profile.extra_args)}
        template_file = chat_template_file(profile)
        if template_file is not None:  # its contents change answers, not only its path
            backend["chat_template_file_sha256"] = (
                file_sha256(template_file) if template_file.is_file()
                else f"missing: {template_file}")
    template = PromptMode(profile.prompt_mode, dataset.name).template_id
    return {"backend": backend, "sampling": asdict(sampling),
            "prompt_template": template, "dataset_sha256": dataset.sha256}


def _subset(dataset: Dataset, tasks: str | None, limit: int | None) -> Dataset:
    """The profile's TASKS subset, then its first ``limit`` tasks (--bench-limit)."""
    ids = select_tasks(tasks, list(dataset.tasks))
    if limit:
        ids = ids[:limit]
    if len(ids) == len(dataset.tasks):
        return dataset
    return replace(dataset, tasks={t: dataset.tasks[t] for t in ids})


def _solutions(profile: Profile, data: Dataset, completions: Mapping[str, Completion],
               ) -> tuple[dict[str, str], list[str]]:
    """Extracted programs; with CODE_FROM_REASONING=on, empty answers fall back to the
    reasoning text (those tasks are returned, to be marked). Completion mode: the prompt
    plus the completion, sanitized, as EvalPlus does for base models."""
    solutions: dict[str, str] = {}
    from_reasoning: list[str] = []
    for task_id, completion in completions.items():
        task = data.tasks[task_id]
        entry_point = task.entry_point
        if profile.prompt_mode == COMPLETION:
            solutions[task_id] = extract_completion(task.prompt, completion.content,
                                                    entry_point)
            continue
        text = completion.content
        if not text.strip() and profile.code_from_reasoning and completion.reasoning_content:
            text = completion.reasoning_content
            from_reasoning.append(task_id)
        solutions[task_id] = extract_code(text, entry_point) if text.strip() else ""
    return solutions, from_reasoning


def _write_samples(path: Path, solutions: Mapping[str, str]) -> None:
    atomic.write_text(path, "".join(json.dumps({"task_id": task_id, "solution": solution})
                                    + "\n" for task_id, solution in solutions.items()))


def run_benchmark(profile: Profile, server: LazyServer, dataset: Dataset, out_dir: Path,
                  options: RunOptions | None = None) -> BenchResult:
    """Generate, extract, evaluate in the sandbox, and score one profile on one dataset."""
    options = options or RunOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _subset(dataset, profile.tasks, options.limit)
    sampling = sampling_for(profile)
    note = options.on_note or (lambda _line: None)
    tag = f"[{profile.name}] {data.name}:"
    if not profile.base_url and (size := _unhashed(profile)) > 1 << 30:
        note(f"{tag} hashing the model file ({size / (1 << 30):.1f} GiB; once per file, "
             "for the fingerprint)")
    inputs = fingerprint_inputs(profile, server, data, sampling)
    fp = fingerprint(inputs)

    started = time.monotonic()
    prompts = {t: task.prompt for t, task in data.tasks.items()}
    store_path = out_dir / "completions.jsonl"
    pending = set(prompts) - set(CompletionStore(store_path).load(fp))
    if len(pending) < len(prompts):
        note(f"{tag} reused {len(prompts) - len(pending)} of {len(prompts)} answers "
             f"(fingerprint {fp})" + ("; nothing to send, no server started" if not pending
                                      else f"; asking for {len(pending)}"))
    if pending and not server.started:
        note(f"{tag} starting llama-server (loading the model; up to "
             f"{profile.health_timeout:.0f} s)")
    handle = server.get() if pending else None  # nothing to ask: the server never starts
    completions, progress = generate(
        handle if handle else "", prompts, sampling, store_path, fp,
        concurrency=options.concurrency or profile.slots,
        mode=PromptMode(profile.prompt_mode, data.name),
        retry=Retry(hang_timeout_s=options.hang_timeout_s,
                    watch_interval_s=min(Retry.watch_interval_s, options.hang_timeout_s / 2)),
        on_completion=options.on_completion)
    gen_wall = time.monotonic() - started

    solutions, from_reasoning = _solutions(profile, data, completions)
    _write_samples(out_dir / "samples.jsonl", solutions)
    note(f"{tag} judging {len(solutions)} programs in the sandbox (limits "
         f"{options.limits.policy})")
    evaluation = evaluate_samples(data, solutions, out_dir / "eval", sandbox=options.sandbox,
                                  image=options.sandbox_image, workers=options.eval_workers,
                                  limits=options.limits, on_verdict=_judged(note, tag, data))
    result = _result(profile, server, data, dataset, fp, completions, progress, evaluation,
                     gen_wall, out_dir, from_reasoning, solutions)
    result = replace(result, limits=options.limits.policy,
                     clock_decided=evaluation.clock_decided(),
                     fingerprint_inputs=json.loads(json.dumps(inputs, default=str)))
    atomic.write_text(out_dir / "summary.json", json.dumps(result.to_json(), indent=1))
    return result


def _unhashed(profile: Profile) -> int:
    try:
        return unhashed_bytes(profile.model_path)
    except OSError:  # a missing model file is reported where it is opened
        return 0


def _judged(note: Callable[[str], None], tag: str,
            data: Dataset) -> Callable[[TaskVerdict], None]:
    """A note at every tenth of the tasks judged (verdicts reused from an earlier run
    count silently)."""
    total, seen = len(data.tasks), [0]
    step = max(1, total // 10)

    def judged(verdict: TaskVerdict) -> None:
        seen[0] += 1
        if not verdict.resumed and seen[0] % step == 0 and seen[0] < total:
            note(f"{tag} judged {seen[0]}/{total}")

    return judged


def _result(profile: Profile, server: LazyServer, data: Dataset, full: Dataset, fp: str,
            completions: Mapping[str, Completion], progress: Progress,
            evaluation: EvalResult, gen_wall: float, out_dir: Path,
            from_reasoning: list[str], solutions: Mapping[str, str]) -> BenchResult:
    stats = summarize(completions.values())
    verdicts = evaluation.verdicts
    n = len(data.tasks)
    # EvalPlus's definition: a task passes "plus" when it passes base AND plus tests
    base = sum(v.base_passed for v in verdicts.values())
    plus = sum(v.plus_passed for v in verdicts.values())
    return BenchResult(
        profile=profile.name, display_name=profile.display_name, quant=profile.quant,
        dataset=data.name, dataset_version=data.version, dataset_sha256=data.sha256,
        n_tasks=n, partial=n < len(full.tasks),
        base_passed=base, plus_passed=plus,
        base_pass_at_1=round(100.0 * base / n, 2) if n else 0.0,
        plus_pass_at_1=round(100.0 * plus / n, 2) if n else 0.0,
        no_answer=[t for t in stats.pop("no_answer") if t not in from_reasoning],
        code_from_reasoning=from_reasoning,
        thinking_exhausted=stats.pop("thinking_exhausted"),
        truncated=stats.pop("truncated"),
        unjudged=[t for t in data.tasks if t not in verdicts
                  or verdicts[t].plus_status not in ("pass", "fail", "timeout")],
        generation=stats, requests_sent=progress.total - progress.reused,
        gen_wall_s=round(gen_wall, 3), eval_wall_s=round(evaluation.wall_s, 3),
        server_started=server.started,
        load_time_s=round(server.get().load_time_s, 3) if server.started else 0.0,
        build_info=_build_info(completions.values(), server),
        fingerprint=fp, out_dir=str(out_dir),
        verdicts={t: {"base": v.base_status, "plus": v.plus_status}
                  for t, v in verdicts.items()},
        tasks={t: _facts(t, completions.get(t), solutions.get(t, ""), verdicts.get(t))
               for t in data.tasks},
        prompt_mode=profile.prompt_mode,
    )


def _facts(task_id: str, completion: Completion | None, solution: str,
           verdict: TaskVerdict | None) -> TaskFacts:
    failing = [*(verdict.base_fail_tests or []), *(verdict.plus_fail_tests or [])] \
        if verdict else []
    return TaskFacts(
        task_id=task_id, base=verdict.base_status if verdict else "",
        plus=verdict.plus_status if verdict else "",
        answer=completion.content if completion else "", solution=solution,
        finish_reason=completion.finish_reason if completion else None,
        completion_tokens=completion.completion_tokens if completion else None,
        reasoning_tokens=completion.reasoning_tokens if completion else None,
        wall_s=completion.wall_s if completion else None,
        first_failing_input=failing[0] if failing else None)


def _build_info(completions: Iterable[Completion], server: LazyServer) -> str:
    """llama.cpp build: answers carry it (system_fingerprint), else /props."""
    for completion in completions:
        if completion.system_fingerprint:
            return completion.system_fingerprint
    return str(server.get().props.get("build_info") or "") if server.started else ""


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
