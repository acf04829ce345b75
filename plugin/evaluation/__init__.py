"""Evaluation of generated programs with EvalPlus, inside a Docker sandbox (host side;
the in-container side is :mod:`plugin.sandbox`). Docs: docs/EVALUATION.md.

:func:`.judging.evaluate_samples` judges one program per task:

1. Verdicts already journaled (``verdicts.jsonl``) for the same program, dataset and time
   limits (:mod:`.plan`) are reused: a killed run resumes.
2. Expected outputs of the canonical solutions come from a trusted sandbox run, cached
   per dataset, evalplus version, sandbox runtime and machine (:mod:`.oracle`).
3. One hardened sandbox container (:mod:`.backends`) judges the rest with a pool of
   workers and streams verdicts as JSON lines (:mod:`.events`), appended to the journal.
4. ``eval_results.json`` is written in evalplus 0.3.1's format (:mod:`.results`).

Nothing produced by a container that ran generated code is unpickled here; the host reads
JSON only.
"""
