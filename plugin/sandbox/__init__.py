"""Code that runs inside the evaluation sandbox (or, in ``local`` mode, in a subprocess).

Nothing here imports ``plugin.*`` outside this package: the directory is mounted read-only
into the container as the package ``bench_sandbox`` and started with
``python3 -m bench_sandbox``. Only :mod:`.protocol` is meant to be imported by the host.
"""
