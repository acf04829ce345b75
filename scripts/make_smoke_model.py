#!/usr/bin/env python3
"""Write two tiny random-weight llama-architecture GGUF models for smoke tests.

* ``smoke-tiny.gguf``: ChatML chat template.
* ``smoke-tiny-think.gguf``: ChatML template that opens a ``<think>`` block at the end of
  the generation prompt (unless ``enable_thinking`` is false) and renders an assistant
  message's ``reasoning_content`` as ``<think>\\n...\\n</think>\\n\\n``. Served with
  ``--jinja --reasoning-format deepseek`` every generated token lands in
  ``reasoning_content``; ``content`` is empty and ``finish_reason`` is ``length``, the
  failure seen with GLM-4.7-Flash.

The weights are noise (pass@1 is 0): the models exercise the serving machinery, not the
score. Output is deterministic: the same script version writes byte-identical files.
An existing file is only replaced when its bytes differ (``--force`` always rewrites).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32Array = npt.NDArray[np.float32]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "models"

SEED = 20240501
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX_TRAIN = 4096
RMS_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0
WEIGHT_SCALE = 0.5

CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

THINK_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' and message['reasoning_content'] is defined"
    " and message['reasoning_content'] -%}"
    "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- if message['content'] is defined and message['content'] is not none -%}"
    "{{- message['content'] -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is not defined or enable_thinking -%}"
    "{{- '<think>\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class SmokeModel:
    """One smoke model: file name, model name and chat template."""

    filename: str
    name: str
    chat_template: str


MODELS: tuple[SmokeModel, ...] = (
    SmokeModel("smoke-tiny.gguf", "smoke-tiny", CHATML_TEMPLATE),
    SmokeModel("smoke-tiny-think.gguf", "smoke-tiny-think", THINK_TEMPLATE),
)


def byte_level_tokens() -> list[str]:
    """The 256 GPT-2 byte-level tokens, in byte order (token id == byte value)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def build_vocab() -> tuple[list[str], list[int], list[str]]:
    """Return (tokens, token types, merges).

    llama.cpp refuses a BPE vocabulary without merges, so one merge is added: bytes
    0x00 0x00 ("Ā Ā"), which never occurs in real text, so every text token stays one
    byte.
    """
    import gguf

    byte_tokens = byte_level_tokens()
    merged = byte_tokens[0] + byte_tokens[0]
    tokens = [*byte_tokens, merged, *CONTROL_TOKENS]
    types = [int(gguf.TokenType.NORMAL)] * (len(byte_tokens) + 1) + [
        int(gguf.TokenType.CONTROL)
    ] * len(CONTROL_TOKENS)
    merges = [f"{byte_tokens[0]} {byte_tokens[0]}"]
    return tokens, types, merges


def random_tensors(n_vocab: int) -> list[tuple[str, F32Array]]:
    """Random f32 weights for a llama model; numpy shapes are ggml shapes reversed."""
    rng = np.random.default_rng(SEED)
    head_dim = N_EMBD // N_HEAD

    def mat(rows: int, cols: int) -> F32Array:
        scale = WEIGHT_SCALE / float(np.sqrt(cols))
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def norm() -> F32Array:
        return np.ones(N_EMBD, dtype=np.float32)

    tensors: list[tuple[str, F32Array]] = [
        ("token_embd.weight", (rng.standard_normal((n_vocab, N_EMBD))).astype(np.float32)),
    ]
    for i in range(N_LAYER):
        tensors += [
            (f"blk.{i}.attn_norm.weight", norm()),
            (f"blk.{i}.attn_q.weight", mat(N_HEAD * head_dim, N_EMBD)),
            (f"blk.{i}.attn_k.weight", mat(N_HEAD_KV * head_dim, N_EMBD)),
            (f"blk.{i}.attn_v.weight", mat(N_HEAD_KV * head_dim, N_EMBD)),
            (f"blk.{i}.attn_output.weight", mat(N_EMBD, N_HEAD * head_dim)),
            (f"blk.{i}.ffn_norm.weight", norm()),
            (f"blk.{i}.ffn_gate.weight", mat(N_FF, N_EMBD)),
            (f"blk.{i}.ffn_up.weight", mat(N_FF, N_EMBD)),
            (f"blk.{i}.ffn_down.weight", mat(N_EMBD, N_FF)),
        ]
    tensors += [
        ("output_norm.weight", norm()),
        ("output.weight", mat(n_vocab, N_EMBD) * np.float32(4.0)),
    ]
    return tensors


def write_model(model: SmokeModel, path: Path) -> None:
    """Write ``model`` to ``path`` (overwriting it)."""
    import gguf

    tokens, types, merges = build_vocab()
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(model.name)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(len(tokens))

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_eot_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(model.chat_template)

    for name, data in random_tensors(len(tokens)):
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def ensure_model(model: SmokeModel, out_dir: Path, *, force: bool) -> str:
    """Write ``model`` into ``out_dir`` unless an identical file is there; return status."""
    target = out_dir / model.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_model(model, tmp)
        if not force and target.is_file() and filecmp.cmp(tmp, target, shallow=False):
            return "up to date"
        status = "rewritten" if target.exists() else "written"
        tmp.chmod(0o644)
        os.replace(tmp, target)
        return status
    finally:
        tmp.unlink(missing_ok=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"output directory (default: {DEFAULT_OUT_DIR.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--force", action="store_true", help="rewrite the files even when they are up to date"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        status = ensure_model(model, out_dir, force=args.force)
        size_kb = (out_dir / model.filename).stat().st_size // 1024
        print(f"[smoke-model] {out_dir / model.filename}: {status} ({size_kb} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
