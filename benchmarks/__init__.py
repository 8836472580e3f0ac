"""kgrec benchmark suites (run as ``python -m benchmarks.<name>``)."""
