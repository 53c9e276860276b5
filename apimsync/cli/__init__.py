"""The ``apimsync`` command line (click). SDKs are imported inside commands so ``--help`` is fast.

``main`` is the group (:mod:`apimsync.cli.base`); each module registers its commands on it: ``run`` (plan, sync,
import, verify), ``specs`` (transform, lint), ``sandbox`` (emulate, demo).
"""

from apimsync.cli import run, sandbox, specs
from apimsync.cli.base import main

__all__ = ["main", "run", "sandbox", "specs"]
