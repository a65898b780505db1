"""Prefect tasks: thin wrappers over pixelscope's step functions (retries, cache keys, logging).

Importing this package applies the project's Prefect settings (see tasks/settings.py).
"""

from tasks import settings as _settings  # noqa: F401  (must run before prefect is imported)
