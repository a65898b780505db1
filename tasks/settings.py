"""Prefect settings that keep runs local and quiet, set by the project, not left to the user.

PREFECT_HOME lives in the repository (.prefect/: SQLite database, task results), analytics
are off, and the ephemeral server gets 60 s to start on a busy 2-core machine. Values
already in the environment win, so a user can still point at another server.
"""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_HOME", str(PROJECT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
