"""Every integer the API accepts is bounded: an integer past signed 64 bits
used to reach SQLite and end in a 500 (`OverflowError`). The walk reads the master's own
OpenAPI schema and finds every integer field of every route (path, query, JSON body,
nested and optional objects included); each gets the integers just past 64 bits on either
side and one far past them, and must answer 4xx, a 422 naming the field. A route added
later is walked without editing this test.

Values of free-form maps (a trial's hyperparameters, babysitting statistics) are the
user's own and are stored as JSON, never in an integer column; the walk leaves them out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gridless.common.bounds import INT32_MAX, INT64_MAX, INT64_MIN
from tests.conftest import TINY_SPEC, Master, tiny_spec

OUT_OF_RANGE = {"2**63": INT64_MAX + 1, "-2**63-1": INT64_MIN - 1, "10**20": 10**20}

# Strings a minimal valid request may need, tried in order against a string field's
# rules: a worker id (letters, digits, `.`, `_`, `:`, `-`), a SHA-256 hex digest.
STRINGS = ["w1", "0" * 64]

Build = Callable[[int], Any]


@dataclass(frozen=True)
class Baseline:
    """A minimal valid request of one operation: required parameters and body parts only."""

    method: str
    route: str  # the path template the schema lists
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any

    def with_part(self, part: str, name: str, value: Any) -> dict[str, Any]:
        """httpx `request` keyword arguments, one path or query parameter (`name`) or the
        body (`part == "body"`) replaced by `value`."""
        path, query, body = dict(self.path), dict(self.query), self.body
        if part == "path":
            path[name] = value
        elif part == "query":
            query[name] = value
        else:
            body = value
        url = self.route.removeprefix("/api/v1").format(**path)
        kwargs: dict[str, Any] = {"method": self.method, "url": url, "params": query}
        if body is not None:
            kwargs["json"] = body
        return kwargs


@dataclass(frozen=True)
class IntegerField:
    """One integer a route accepts, somewhere in a path or query parameter or the body."""

    baseline: Baseline
    part: str  # path, query or body
    name: str  # the parameter's name ("" for the body)
    location: str  # what a 422 names: path.study_id, query.offset, body.checkpoint.size
    schema: dict[str, Any]
    build: Build  # the integer -> the parameter's (or the body's) whole value

    def request(self, value: int) -> dict[str, Any]:
        """httpx `request` keyword arguments with this integer set to `value`."""
        return self.baseline.with_part(self.part, self.name, self.build(value))


class _Schema:
    """The parts of an OpenAPI document the walk needs: `$ref`s, unions, minimal values."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def branches(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The alternatives of an anyOf/oneOf/allOf, null left out; else the schema."""
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                found = [self.resolve(s) for s in schema[key]]
                return [s for s in found if s.get("type") != "null"]
        return [schema]

    def minimal(self, schema: dict[str, Any], where: str) -> Any:
        """A valid value with the required parts only (a union's first alternative)."""
        schema = self.branches(schema)[0]
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object":
            props = schema.get("properties", {})
            return {n: self.minimal(props[n], f"{where}.{n}") for n in schema.get("required", [])}
        if kind == "array":
            return [self.minimal(schema["items"], f"{where}.0")] * schema.get("minItems", 0)
        if kind == "integer":
            return math.ceil(schema.get("minimum", 0))
        if kind == "number":
            return schema.get("minimum", 0.0)
        if kind == "boolean":
            return False
        if kind == "string":
            return _string(schema, where)
        return None

    def integers(
        self, schema: dict[str, Any], where: str, depth: int = 0
    ) -> Iterator[tuple[str, dict[str, Any], Build]]:
        """(location, integer schema, value -> the whole value around it) for every
        integer inside `schema`; the rest of the value is minimal and valid."""
        if depth > 8:  # a schema that refers to itself
            return
        for branch in self.branches(schema):
            kind = branch.get("type")
            if kind == "integer":
                yield where, branch, lambda v: v
            elif kind == "object":
                base = self.minimal(branch, where)
                for name, prop in branch.get("properties", {}).items():
                    for loc, leaf, inner in self.integers(prop, f"{where}.{name}", depth + 1):
                        yield loc, leaf, _in_object(base, name, inner)
            elif kind == "array" and "items" in branch:
                for loc, leaf, inner in self.integers(branch["items"], f"{where}.0", depth + 1):
                    yield loc, leaf, _in_list(inner)


def _in_object(base: dict[str, Any], name: str, inner: Build) -> Build:
    return lambda v: {**base, name: inner(v)}


def _in_list(inner: Build) -> Build:
    return lambda v: [inner(v)]


def _string(schema: dict[str, Any], where: str) -> str:
    for value in STRINGS:
        if schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            if re.search(schema.get("pattern", ""), value) is not None:
                return value
    raise LookupError(f"{where}: no value in STRINGS fits {schema}; add one")


def integer_fields(document: dict[str, Any], known: dict[str, Any]) -> list[IntegerField]:
    """Every integer field of every route in `document`.

    `known` gives path parameters values that exist (a study, a trial), so that the
    answer is the validation's, not a 404 from loading them.
    """
    schema = _Schema(document)
    fields = []
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            params = [schema.resolve(p) for p in operation.get("parameters", [])]
            content = operation.get("requestBody", {}).get("content", {})
            body_schema = content.get("application/json", {}).get("schema")
            baseline = Baseline(
                method=method.upper(),
                route=route,
                path={
                    p["name"]: known.get(p["name"], schema.minimal(p["schema"], p["name"]))
                    for p in params
                    if p["in"] == "path"
                },
                query={
                    p["name"]: schema.minimal(p["schema"], p["name"])
                    for p in params
                    if p["in"] == "query" and p.get("required")
                },
                body=schema.minimal(body_schema, "body") if body_schema else None,
            )
            roots = [(p["in"], p["name"], f"{p['in']}.{p['name']}", p["schema"]) for p in params]
            if body_schema is not None:
                roots.append(("body", "", "body", body_schema))
            for part, name, where, root in roots:
                for location, leaf, build in schema.integers(root, where):
                    fields.append(IntegerField(baseline, part, name, location, leaf, build))
    return fields


@pytest.fixture
def walked(any_master: Master) -> Iterator[tuple[httpx.Client, list[IntegerField]]]:
    """A client of a master holding a study and a claimed trial, and the fields to walk."""
    study = any_master.service.create_study(tiny_spec())
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as api:
        claimed = api.post("/workers/claim", json={"worker_id": "w1"}).json()
        known = {"study_id": study.id, "trial_id": claimed["assignment"]["trial_id"]}
        document = httpx.get(any_master.url + "/openapi.json").json()
        yield api, integer_fields(document, known)


def _within_64_bits(schema: dict[str, Any]) -> bool:
    """Whether an integer schema has both bounds and admits nothing past 64 bits (exact
    arithmetic: the document may hold the bounds as floats)."""
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + 1
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        high = math.ceil(schema["exclusiveMaximum"]) - 1
    return low is not None and high is not None and INT64_MIN <= low and high <= INT64_MAX


def test_the_walk_finds_every_integer_with_64_bit_bounds(master: Master) -> None:
    """The schema states the bounds: a minimum and a maximum within 64 bits, everywhere;
    and the walk reaches the two requests that once crashed it and a nested field."""
    fields = integer_fields(httpx.get(master.url + "/openapi.json").json(), known={})
    found = {(f.baseline.method, f.baseline.route, f.location) for f in fields}
    assert ("POST", "/api/v1/workers/heartbeat", "body.trial_id") in found
    assert ("GET", "/api/v1/studies/{study_id}/checkpoints", "query.trial_id") in found
    assert ("POST", "/api/v1/trials/{trial_id}/reports", "body.checkpoint.size") in found
    assert len(fields) >= 30, "the walk reaches every route's integers"
    unbounded = [
        f"{f.baseline.method} {f.baseline.route} {f.location}: {f.schema}"
        for f in fields
        if not _within_64_bits(f.schema)
    ]
    assert unbounded == []


@pytest.mark.parametrize("bad", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_every_integer_field_refuses_values_past_64_bits(
    walked: tuple[httpx.Client, list[IntegerField]], bad: int
) -> None:
    api, fields = walked
    failures = []
    for field in fields:
        response = api.request(**field.request(bad))
        where = f"{field.baseline.method} {field.baseline.route} {field.location}={bad}"
        if not 400 <= response.status_code < 500:
            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif response.status_code == 422:
            detail = str(response.json()["detail"])
            if not detail.startswith(f"{field.location}: "):
                failures.append(f"{where}: 422 does not name the field: {detail!r}")
    assert failures == []


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "answer"),
    [
        ("GET", f"/trials/{INT32_MAX}", None, 404, {"detail": f"no trial {INT32_MAX}"}),
        (
            "POST",
            "/workers/heartbeat",
            {"worker_id": "w1", "trial_id": INT32_MAX},
            404,
            {"detail": f"no trial {INT32_MAX}"},
        ),
        (
            "GET",
            f"/studies/1/checkpoints?trial_id={INT32_MAX}",
            None,
            200,
            {"data": [], "count": 0},
        ),
        (
            "GET",
            f"/trials/{INT32_MAX + 1}",
            None,
            422,
            {"detail": f"path.trial_id: Input should be less than {INT32_MAX + 1}"},
        ),
        (
            "POST",
            "/workers/heartbeat",
            {"worker_id": "w1", "trial_id": 99999999999999999999},
            422,
            {"detail": f"body.trial_id: Input should be less than {INT32_MAX + 1}"},
        ),
        (
            "GET",
            "/studies/1/checkpoints?trial_id=99999999999999999999",
            None,
            422,
            {"detail": f"query.trial_id: Input should be less than {INT32_MAX + 1}"},
        ),
    ],
    ids=["path-max", "heartbeat-max", "query-max", "path-past", "heartbeat-past", "query-past"],
)
def test_ids_on_either_side_of_the_column_border(
    any_master: Master,
    method: str,
    url: str,
    body: Any,
    status: int,
    answer: dict[str, Any],
) -> None:
    """The largest id an INTEGER column holds (PostgreSQL's is 32 bits) is a lookup that
    finds nothing, on both databases; one past it is a 422, never a DataError's 503."""
    any_master.service.create_study(tiny_spec())
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as api:
        response = api.request(method, url, json=body)
    assert (response.status_code, response.json()) == (status, answer)


def test_a_64_bit_seed_is_stored_on_both_databases(any_master: Master) -> None:
    """Seeds are BIGINT (migration 0005): the spec's largest seed is no 503 on PostgreSQL."""
    body = {**TINY_SPEC, "seed": INT64_MAX}
    with httpx.Client(base_url=any_master.url + "/api/v1", timeout=30) as api:
        response = api.post("/studies", json=body)
        assert response.status_code == 201, response.text
        assert api.get(f"/studies/{response.json()['id']}").json()["seed"] == INT64_MAX
