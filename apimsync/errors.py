"""Errors apimsync raises on purpose.

    ApimsyncError                 base; str(e) is one line fit for a user, never a secret
    ├── ConfigError               bad configuration file, key, template or CLI input (exit 2)
    │   └── PipelineError         a transforms/*.yaml file that cannot be loaded
    ├── SpecError                 an OpenAPI document that cannot be read (names its origin)
    ├── PolicyError               a policy template that is missing or renders to bad XML
    ├── SourceError               Databricks could not be read
    ├── TargetError               APIM could not be read or written
    ├── UnsafePlanError           a reviewed plan that no longer matches what a sync would do
    └── LockError                 another sync holds the lock
"""

from __future__ import annotations


class ApimsyncError(Exception):
    """Base class: the message is shown to the user as one line."""

    exit_code = 1


class ConfigError(ApimsyncError):
    exit_code = 2


class PipelineError(ConfigError):
    pass


class SpecError(ApimsyncError):
    exit_code = 2


class PolicyError(ApimsyncError):
    exit_code = 2


class SourceError(ApimsyncError):
    pass


class TargetError(ApimsyncError):
    pass


class UnsafePlanError(ApimsyncError):
    """``sync --plan FILE``: the plan was reviewed, but planning again gives another one; nothing was written."""


class LockError(ApimsyncError):
    pass
