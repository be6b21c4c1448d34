"""Errors a DICOMweb request can end in, each with the status code PS3.18 names."""

from __future__ import annotations

from django.http import JsonResponse


class DicomwebError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JsonResponse:
        return JsonResponse({"error": self.message, "status": self.status}, status=self.status)


def bad_request(message: str) -> DicomwebError:
    return DicomwebError(400, message)


def not_found(message: str) -> DicomwebError:
    return DicomwebError(404, message)


def not_acceptable(message: str) -> DicomwebError:
    return DicomwebError(406, message)


def unsupported_media_type(message: str) -> DicomwebError:
    return DicomwebError(415, message)
