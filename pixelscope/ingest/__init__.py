"""Ingest: every file of a raw folder -> one manifest row (step.py); the first stage."""
