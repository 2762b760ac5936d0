"""Room booking: organisations, admins, rooms, bookings, join tokens, pages and REST API.

Independent of the media plane: the signaling server only asks ``JoinGate``
whether a join may proceed.
"""
