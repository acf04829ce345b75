"""Generation: one greedy answer per task through the OpenAI-compatible API.

Prompts are EvalPlus 0.3.1's, byte for byte (:mod:`.request`): its openai backend's chat
prompt, or (PROMPT_MODE=completion) its direct completion for base models through
``/v1/completions``; every sampling parameter is sent explicitly. Completions are
appended to a JSONL store as they arrive, tagged with the run's fingerprint
(:mod:`.store`, :mod:`.fingerprint`), so a killed run resumes with the remaining requests
and an unchanged re-run sends none. Transient failures are retried; a server that is gone
or stops answering is an infrastructure error, never a model failure (:mod:`.client`).
:mod:`.extract` takes the program out of an answer (or prompt + completion) with
EvalPlus's sanitizer.
"""
