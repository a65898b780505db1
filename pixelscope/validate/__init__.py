"""Is the data fit for use: drift between profiles (drift.py, no torch, no GX), expectation
suites (suites.py), running them with Great Expectations (expectations.py), and the validate
step (step.py). Not the `quality` issue finder (issues/quality.py): that flags single images."""
