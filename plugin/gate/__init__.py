"""The regression gate (README "Gate", docs/GATE.md): judge a result and remember it.

* :mod:`.references`: reference-scores.json (published scores, per-profile references);
* :mod:`.verdicts`: the decision, against the reference (tolerance) and the pinned
  baseline run (exact McNemar test on the tasks that flipped; :mod:`.stats`);
* :mod:`.record`: the judged :class:`~.record.Row` of one profile x dataset;
* :mod:`.assess`: judge and store in :mod:`.history` (SQLite), in one transaction;
* :mod:`.checks`: run-level problems that fail a test whatever its score.
"""
