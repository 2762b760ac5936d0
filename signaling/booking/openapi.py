"""The OpenAPI 3.1 description of the REST API (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "Malformed JSON body", 401: "Missing or unknown API key",
               404: "No such booking or room", 409: "Conflict with another booking",
               413: "Body too large", 422: "A field is invalid (see error.field)"}
    return {str(s): {"description": meaning[s],
                     "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _ok(description: str, schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": description,
                          "content": {"application/json": {"schema": schema}}}}


_BOOKING_ID = {"name": "booking_id", "in": "path", "required": True,
               "schema": {"type": "integer"}}


def openapi_document(base_url: str) -> dict[str, Any]:
    booking_ref = {"$ref": "#/components/schemas/Booking"}
    links_ref = {"$ref": "#/components/schemas/Links"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "visio booking API", "version": "1",
                 "description": "Book rooms and hand out meeting links. Authenticate with "
                                "the organisation's API key (`visio admin create-org` prints "
                                "it once): `Authorization: Bearer vk_...`. Times are ISO 8601 "
                                "with an offset; responses are in UTC (`Z`)."},
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/rooms": {"get": {
                "summary": "The organisation's rooms",
                "responses": {**_ok("Rooms", {"type": "object", "properties": {"rooms": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Room"}}}}),
                    **_errors(401)}}},
            "/bookings": {
                "get": {
                    "summary": "Bookings overlapping [from, to), by start time",
                    "parameters": [
                        {"name": "room_id", "in": "query", "schema": {"type": "integer"}},
                        {"name": "from", "in": "query",
                         "schema": {"type": "string", "format": "date-time"}},
                        {"name": "to", "in": "query",
                         "schema": {"type": "string", "format": "date-time"}},
                        {"name": "include_cancelled", "in": "query",
                         "schema": {"type": "boolean", "default": False}}],
                    "responses": {**_ok("Bookings", {"type": "object", "properties": {
                        "bookings": {"type": "array", "items": booking_ref}}}),
                        **_errors(401, 422)}},
                "post": {
                    "summary": "Book a room (refused with 409 if the slot overlaps another)",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/NewBooking"}}}},
                    "responses": {**_ok("The booking and its links", {"allOf": [
                        booking_ref, {"type": "object", "properties": {"links": links_ref}}]},
                        201), **_errors(400, 401, 409, 413, 422)}}},
            "/bookings/{booking_id}": {
                "parameters": [_BOOKING_ID],
                "get": {"summary": "One booking",
                        "responses": {**_ok("The booking", booking_ref), **_errors(401, 404)}},
                "delete": {"summary": "Cancel a booking (it is kept, with status cancelled)",
                           "responses": {**_ok("The cancelled booking", booking_ref),
                                         **_errors(401, 404)}}},
            "/bookings/{booking_id}/links": {
                "parameters": [_BOOKING_ID],
                "get": {"summary": "The host and participant meeting links",
                        "responses": {**_ok("Links", links_ref), **_errors(401, 404, 409)}}},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Room": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"},
                    "max_participants": {"type": "integer"}}},
                "NewBooking": {
                    "type": "object",
                    "required": ["room_id", "title", "start", "end", "expected_participants"],
                    "properties": {
                        "room_id": {"type": "integer"},
                        "title": {"type": "string", "maxLength": 200},
                        "start": {"type": "string", "format": "date-time"},
                        "end": {"type": "string", "format": "date-time"},
                        "expected_participants": {"type": "integer", "minimum": 1},
                        "created_by": {"type": "string",
                                       "description": "who asked, for the record"}}},
                "Booking": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "room_id": {"type": "integer"},
                    "room_name": {"type": "string"}, "title": {"type": "string"},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                    "time_zone": {"type": "string", "example": "Europe/Paris"},
                    "expected_participants": {"type": "integer"},
                    "created_by": {"type": "string"},
                    "status": {"type": "string", "enum": ["booked", "cancelled"]},
                    "cancelled_at": {"type": ["string", "null"], "format": "date-time"}}},
                "Links": {"type": "object", "properties": {
                    "host": {"type": "string", "format": "uri"},
                    "participant": {"type": "string", "format": "uri"},
                    "valid_from": {"type": "string", "format": "date-time",
                                   "description": "15 minutes before the start"},
                    "valid_until": {"type": "string", "format": "date-time"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "field", "message"],
                    "properties": {
                        "code": {"type": "string", "examples": [
                            "conflict", "end_before_start", "in_the_past", "over_capacity",
                            "required", "invalid", "not_found", "unauthorized", "bad_json"]},
                        "field": {"type": "string", "description": "the offending input"},
                        "message": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}}}}}},
            },
        },
    }
