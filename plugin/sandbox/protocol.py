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
# Limit policies (--limits): (min_time_limit, gt_time_limit_factor, scale by load).
# "harness": the defaults above, the factor scaled by measured load (below).
# "evalplus": evalplus 0.3.1's own rules: 1.0 s minimum, factor 4.0, no load scaling.
HARNESS = "harness"
EVALPLUS = "evalplus"
POLICIES = {HARNESS: (DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR, True),
            EVALPLUS: (1.0, 4.0, False)}
# Memory per test process, in both policies: this much address space on top of what the
# process holds when it starts (evalplus 0.3.1: 4 GiB in total, including whatever its
# worker holds, which is how a worker fat with ground truth fails answers that need memory).
MEMORY_BUDGET_BYTES = 4 << 30
# A passing test that used more than this share of its time limit was decided near the
# clock: a machine half as fast would have timed it out.
NEAR_LIMIT = 0.5
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
