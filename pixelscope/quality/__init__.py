"""Is the data fit for use: drift between profiles (drift.py, no torch, no GX), expectation
suites (suites.py), running them with Great Expectations (expectations.py), and the validate
step (validate.py)."""
