"""Configuration: what to benchmark and how.

* :mod:`.models_conf` reads ``models.conf``, the INI file shared with the user's
  ``start.sh`` (one ``[section]`` per llama-server configuration; only ``[bench-*]`` are
  benchmarks), and returns frozen :class:`~.profile.Profile` objects. ``EXTRA_ARGS`` is
  split like an unquoted ``$EXTRA_ARGS`` in bash plus quotes, with backslashes kept (``-ot``
  regexes reach llama-server unchanged). Every error is a ConfigError naming
  ``file:line`` and the fix.
* :mod:`.settings` is the table of ``--bench-*`` options, ``BENCH_*`` variables and
  ``bench_*`` ini keys, resolved into a frozen :class:`~.settings.Options`.
* :mod:`.defaults` holds every default more than one module needs (images, timeouts).
"""
