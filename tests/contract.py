"""Does a response conform to the served OpenAPI document? For tests that talk to the app.

Strict on purpose: the status must be documented for the operation, the content type must be
one of its media types exactly, every required header must be there and match its schema,
and a JSON body must validate against its schema (whose objects are closed, so an extra field
fails). An unknown path must be the documented 404 and a method other than GET the 405 with
`Allow: GET`, both with the ErrorResponse body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
from jsonschema import Draft202012Validator

from carebench.server import openapi

STATUSES = {
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "FhirNotFound": 404,
    "FhirMethodNotAllowed": 405,
}


def document_for(routes: Mapping[str, Any]) -> dict[str, Any]:
    """The document a server with these routes serves, decoded."""
    decoded: dict[str, Any] = msgspec.json.decode(openapi.encoded(frozenset(routes)))
    return decoded


def response_problems(
    document: dict[str, Any], method: str, path: str, response: httpx.Response
) -> list[str]:
    """What in `response` (to `method path`) the document does not allow; [] when it conforms."""
    status = response.status_code
    path = documented_path(document, path)
    operation = document["paths"].get(path, {}).get(method.lower())
    if operation is None:
        # What every path answers outside the operations: components/responses.
        kind = "MethodNotAllowed" if path in document["paths"] else "NotFound"
        if path.startswith("/fhir/"):
            kind = f"Fhir{kind}"
        responses = {str(STATUSES[kind]): document["components"]["responses"][kind]}
    else:
        responses = operation["responses"]
    documented = responses.get(str(status))
    if documented is None:
        return [f"{method} {path}: undocumented status {status}"]
    content_type = response.headers.get("content-type", "")
    media = documented["content"].get(content_type)
    if media is None:
        return [f"{status}: undocumented content type {content_type!r}"]
    problems = _header_problems(document, documented.get("headers", {}), response)
    if content_type in (openapi.JSON, openapi.FHIR_JSON):
        problems += _body_problems(document, media["schema"], response)
    return problems


def documented_path(document: dict[str, Any], path: str) -> str:
    """The document's path (template) that `path` falls under; `path` itself when none."""
    if path in document["paths"]:
        return path
    template: str
    for template in document["paths"]:
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if "{" in template and re.fullmatch(pattern, path):
            return template
    return path


def _body_problems(
    document: dict[str, Any], schema: dict[str, Any], response: httpx.Response
) -> list[str]:
    try:
        body = json.loads(response.content)
    except ValueError as bad:
        return [f"{response.status_code}: body is not JSON ({bad})"]
    # The schema's $refs point into the document's components.
    validator = Draft202012Validator({**schema, "components": document["components"]})
    return [
        f"{response.status_code} body: {error.message}" for error in validator.iter_errors(body)
    ]


def _header_problems(
    document: dict[str, Any], headers: dict[str, Any], response: httpx.Response
) -> list[str]:
    problems = []
    for name, header in headers.items():
        value: Any = response.headers.get(name)
        if value is None:
            if header.get("required"):
                problems.append(f"{response.status_code}: missing header {name}")
            continue
        schema = header["schema"]
        if schema.get("type") == "integer":
            try:
                value = int(value)
            except ValueError:
                problems.append(f"{response.status_code}: header {name} {value!r} not an integer")
                continue
        validator = Draft202012Validator({**schema, "components": document["components"]})
        problems += [f"header {name}: {error.message}" for error in validator.iter_errors(value)]
    return problems


class ConformanceHook:
    """An httpx response hook failing the test on a response that does not conform."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked = 0

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        problems = response_problems(self.document, request.method, request.url.path, response)
        assert not problems, f"{request.method} {request.url}: {problems}"
        self.checked += 1
