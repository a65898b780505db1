"""Tracking the raw data with DVC: its version (repo.py) and the version stage (step.py).

Not to be confused with versions/, which compares and follows dataset versions (diff, history).
"""
