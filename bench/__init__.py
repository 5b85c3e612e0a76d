"""The benchmark harness: a fake upstream, test uploads, wrk, and the gateway under test.

Run it with `make bench` (or `python -m bench.run --help`); see bench/README.md.
"""
