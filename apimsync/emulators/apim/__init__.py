"""The emulated APIM service (ARM and its gateway): see :mod:`apimsync.emulators.apim.service`."""

from apimsync.emulators.apim.common import MANAGED_IDENTITY_APP_ID, ArmError, Throttle
from apimsync.emulators.apim.service import ApimEmulator

__all__ = ["MANAGED_IDENTITY_APP_ID", "ApimEmulator", "ArmError", "Throttle"]
