"""Rows rendered: pytest-html cells, summary and per-test extras (:mod:`.html`), the
terminal table and REPORT.md (:mod:`.text`), summary.json and summary.html
(:mod:`.outputs`), plots (:mod:`.plots`); ``python -m plugin report`` rebuilds them all
from the history (:mod:`.cli`)."""
