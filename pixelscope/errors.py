"""Every error a user can fix, in one tree (this module imports nothing from the package).

The CLI and the flows catch `PixelscopeError` only: its message says what is wrong and how
to fix it, and is printed without a traceback. Anything else is a bug and keeps its
traceback.

    PixelscopeError
    ├── ConfigError          a params file, override, plugin module or option that cannot be used
    └── StepError            a step cannot run on what it was given
        ├── InputMissing     a file or folder the step needs is not there (names the command that makes it)
        ├── BadInput         a file that is there but is not what it should be (corrupt, foreign, empty)
        ├── WeightsError     model weights missing or not matching their checksum
        ├── StoreError       a tensor / embedding store that does not match what is asked of it
        ├── VersioningError  the project is not set up for DVC versioning, or DVC refused
        ├── StorageError     an object store refused or cannot be reached (names the bucket)
        └── ValidationFailed the expectation suites failed and validate.on_failure is `fail`
"""

from __future__ import annotations


class PixelscopeError(Exception):
    """Base of every error the user can act on; the message is the whole story."""


class ConfigError(PixelscopeError):
    """A params file, override or option that cannot be used; the message names the key."""


class StepError(PixelscopeError):
    """A step cannot run on what it was given (message says what to fix)."""


class InputMissing(StepError):
    """A file or folder a step needs does not exist (message names it and what makes it)."""


class BadInput(StepError):
    """A file exists but cannot be used: corrupt, from another tool, or empty."""


class WeightsError(StepError):
    """Weights that are missing or do not match: the message says how to fix it."""


class StoreError(StepError):
    """A store folder whose layout does not match (dtype, row shape, missing key)."""


class VersioningError(StepError):
    """The project is not set up for versioning (message says how to fix it)."""


class StorageError(StepError):
    """An object store that refuses (credentials), has no such bucket, or cannot be reached."""


class ValidationFailed(StepError):
    """The suites failed and validate.on_failure is `fail`: the message lists what failed."""
