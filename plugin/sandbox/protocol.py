"""What the host and the in-sandbox runner agree on (stdlib only; imported by both sides)."""

from __future__ import annotations

PROTOCOL_VERSION = 1
# Bump when the oracle files change shape: cached expected outputs are then recomputed.
ORACLE_FORMAT = 1
EVALPLUS_VERSION = "0.3.1"

# Per-test time limit: max(MIN_TIME_LIMIT, GT_TIME_LIMIT_FACTOR * reference time), where the
# reference time is measured on this machine by the trusted run. EvalPlus 0.3.1 defaults to
# 1.0 s / 4.0; its master uses 4.0 s / 4.0. See docs/EVALUATION.md ("Time limits").
DEFAULT_MIN_TIME_LIMIT = 4.0
DEFAULT_GT_TIME_LIMIT_FACTOR = 4.0
# EvalPlus caps the time of one untrusted_check call (all base or all plus tests of a task)
# at 60 s. The harness keeps that cap unless the reference solution itself needs more than
# 1/GT_TIME_LIMIT_FACTOR of it; then the cap is GT_TIME_LIMIT_FACTOR * its total time.
EVALPLUS_TASK_TIMEOUT = 60.0
# The runner scales the factor by (probe now / probe at calibration), clamped to this range.
MAX_LOAD_SCALE = 4.0

MANIFEST_NAME = "oracle.json"
TASKS_DIRNAME = "tasks"

# Statuses in runner verdict events (EvalPlus's own strings).
PASS = "pass"
FAIL = "fail"
TIMEOUT = "timeout"
STATUSES = (PASS, FAIL, TIMEOUT)

# Paths inside the container.
RUNNER_MOUNT = "/opt/bench/bench_sandbox"
RUNNER_PACKAGE = "bench_sandbox"
DATASET_MOUNT = "/data/dataset.jsonl.gz"
ORACLE_MOUNT = "/oracle"
SOLUTIONS_MOUNT = "/input/solutions.jsonl"
OUT_MOUNT = "/out"
