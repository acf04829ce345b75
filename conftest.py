"""Root conftest: loads the benchmark plugin for bench_tests/ and tests/."""

pytest_plugins = ["plugin.pytest_plugin"]
