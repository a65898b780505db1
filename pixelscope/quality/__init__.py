"""Is the data fit for use: drift between profiles (drift.py, no torch, no GX), expectation
suites (suites.py) and running them with Great Expectations (validate.py)."""
