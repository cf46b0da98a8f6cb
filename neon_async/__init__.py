"""neon_async: the one async implementation under ``neon_trio`` and ``neon_asyncio``.

Every class here runs on whichever event loop its ``backend`` names; the bindings subclass
them with their backend and nothing else. Users import ``neon_trio`` or ``neon_asyncio``.
"""

from neon_async.backend import Backend, Stream
from neon_async.client import Client, CopyOut, Notification, Notifications, Pipeline

__all__ = ["Backend", "Stream", "Client", "CopyOut", "Notification", "Notifications", "Pipeline"]
