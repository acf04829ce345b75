"""What changed between two runs, from their stored fingerprint inputs (plugin.gate.changes)."""

from __future__ import annotations

from plugin.gate.changes import flatten, what_changed

BEFORE = {
    "backend": {"image_id": "sha256:" + "a" * 64,
                "model": {"files": [{"file": "m.gguf", "size": 10, "mtime_ns": 1,
                                     "sha256": "b" * 64}]},
                "ctx": 4096, "ngl": 0, "fit": "off", "extra_args": ["-np", "1"]},
    "sampling": {"max_tokens": 768, "temperature": 0.0},
    "prompt_template": "evalplus-chat-v1", "dataset_sha256": "c" * 64,
}


def _after(**changes: object) -> dict:
    after = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BEFORE.items()}
    for path, value in changes.items():
        section, key = path.split("__")
        after[section] = {**after[section], key: value}
    return after


def test_nothing_changed_and_unknown_inputs() -> None:
    assert what_changed(BEFORE, BEFORE) == []
    assert what_changed(None, BEFORE) is None
    assert what_changed(BEFORE, {}) is None


def test_each_change_is_named_in_words() -> None:
    after = _after(sampling__max_tokens=430, backend__image_id="sha256:" + "d" * 64,
                   backend__extra_args=["-np", "4"])
    assert what_changed(BEFORE, after) == [
        "EXTRA_ARGS -np 1 -> -np 4",
        "image sha256:aaaaaaaaaaaa -> sha256:dddddddddddd",
        "max_tokens 768 -> 430",
    ]


def test_a_new_model_file_shows_its_hash_size_and_date() -> None:
    after = _after(backend__model={"files": [{"file": "m.gguf", "size": 11, "mtime_ns": 2,
                                              "sha256": "e" * 64}]})
    assert what_changed(BEFORE, after) == [
        "model m.gguf mtime_ns 1 -> 2", "model m.gguf sha256 bbbbbbbbbbbb -> eeeeeeeeeeee",
        "model m.gguf size 10 -> 11"]
    assert flatten(BEFORE)["model m.gguf sha256"] == "b" * 64


def test_keys_on_one_side_only() -> None:
    after = {**BEFORE, "backend": {**BEFORE["backend"], "chat_template_file_sha256": "f" * 64}}
    assert what_changed(BEFORE, after) == ["chat_template_file_sha256 (none) -> ffffffffffff"]
