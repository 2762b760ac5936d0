"""visio's media plane: an aiortc-based selective forwarding unit that never decodes."""

from sfu.aiortc_bridge import IceSettings
from sfu.allocator import SourceConstraints
from sfu.errors import InvalidSdp, RoomFull, SfuError, StaleRevision, UnknownParticipant
from sfu.service import JoinResult, SfuApi, SfuService, SfuSettings

__all__ = [
    "IceSettings",
    "InvalidSdp",
    "JoinResult",
    "RoomFull",
    "SfuApi",
    "SfuError",
    "SfuService",
    "SfuSettings",
    "SourceConstraints",
    "StaleRevision",
    "UnknownParticipant",
]
