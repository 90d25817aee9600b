"""The management API's bodies, answers and path parameters as pydantic models and types.

Request bodies are validated with these models; the answer models describe what the handlers
return (schemathesis checks real answers against them). proxy/api/openapi.py makes the
document's schemas from both.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from proxy.gateway.headers import REQUEST_ID_RE
from storage.query.pages import SORT_ALIASES, SORTS, Direction, PageQuery
from storage.query.stats import check_dimensions

MAX_BATCH_ITEMS = 1000
MAX_COMMENT_BYTES = 4096
MAX_SCORE_NAME_CHARS = 128
# Names set in one score call; each is a row and a rollup entry.
MAX_SCORES_PER_CALL = 256
MAX_FEEDBACK_BODY_BYTES = 1024 * 1024
# A filter tree within the node bound is far smaller than this.
MAX_QUERY_BODY_BYTES = 256 * 1024
# Scores are stored as 64-bit floats, which hold every integer up to 2**53 exactly.
MAX_EXACT_INT = 2**53
MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1
MAX_IDS = 10_000
# Text columns in PostgreSQL cannot hold NUL, so no name or id may contain one.
NO_NUL = r"^[^\x00]*$"

JSON_TYPES = {str: "a string", type(None): "null", list: "an array", dict: "an object"}


def json_type(value: object) -> str:
    """How a JSON value's type reads in an error message ("an array", "a number", ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return JSON_TYPES.get(type(value), "unknown")


def _comment_fits(comment: str | None) -> str | None:
    if comment is not None and len(comment.encode()) > MAX_COMMENT_BYTES:
        raise ValueError(f"comment is longer than {MAX_COMMENT_BYTES} bytes")
    if comment is not None and "\x00" in comment:
        raise ValueError("comment may not contain NUL characters")
    return comment


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("names may not contain NUL characters")
    return value


def _score_value(value: object) -> float:
    """JSON booleans become 1/0; integers and finite floats are kept as given."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            raise ValueError("integer scores must lie within ±2**53 to be stored exactly")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value
    raise ValueError(f"score must be a number or a boolean, not {json_type(value)}")


Comment = Annotated[
    StrictStr | None,
    AfterValidator(_comment_fits),
    Field(description="Free text, at most 4 KiB of UTF-8."),
]
ScoreName = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=MAX_SCORE_NAME_CHARS),
    AfterValidator(_no_nul),
]
ScoreValue = Annotated[
    float,
    PlainValidator(_score_value),
    WithJsonSchema({"type": ["number", "boolean"]}),
]
Filter = Annotated[
    Any,
    Field(
        description=(
            'Helicone\'s filter tree: "all", a leaf such as '
            '{"request": {"model": {"equals": "gpt-4o"}}}, or {"left", "operator", "right"}.'
        )
    ),
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=NO_NUL)
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
RequestIds = Annotated[list[RequestId], Field(max_length=MAX_IDS)]


class Body(BaseModel):
    """A JSON object body; `max_bytes` bounds it below server.max_body_bytes when set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_bytes: ClassVar[int | None] = None


class FeedbackBody(Body):
    """`POST /v1/request/{id}/feedback`."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    rating: StrictBool
    comment: Comment = None


class SessionFeedbackBody(Body):
    """`POST /v1/session/{id}/feedback`."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    rating: StrictBool


class LegacyFeedbackBody(Body):
    """`POST /v1/feedback`, as sent by Helicone's old SDKs."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    helicone_id: StrictStr = Field(alias="helicone-id")
    rating: StrictBool


class BatchItem(Body):
    """One entry of `POST /v1/feedback/batch`."""

    request_id: StrictStr
    rating: StrictBool
    comment: Comment = None


class BatchBody(Body):
    """`POST /v1/feedback/batch`; items are validated one by one (see BatchItem)."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    items: list[Any] = Field(
        description=(
            f"At most {MAX_BATCH_ITEMS} items (more is a 413), each "
            "{request_id, rating, comment?}; an invalid item gets its own 400 result and does "
            "not sink the others."
        )
    )


class ScoresBody(Body):
    """`POST /v1/request/{id}/score`; booleans are stored as 1/0, integers within ±2**53."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    scores: Annotated[
        dict[ScoreName, ScoreValue],
        Field(min_length=1, max_length=MAX_SCORES_PER_CALL),
    ]


NEWEST_FIRST: dict[str, Direction] = {"created_at": "desc"}


class QueryBody(Body):
    """Helicone's request query body, plus an opaque `cursor` for deep pages."""

    max_bytes = MAX_QUERY_BODY_BYTES

    filter: Filter = "all"
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    sort: dict[str, Direction] = Field(default_factory=lambda: dict(NEWEST_FIRST))
    cursor: str | None = Field(None, description="The Relaylog-Next-Cursor of the last page.")
    # Helicone SDKs send these; relaylog accepts them and they change nothing.
    isCached: bool | None = None
    includeInputs: bool | None = None
    isPartOfExperiment: bool | None = None
    isScored: bool | None = None

    @field_validator("sort")
    @classmethod
    def _one_known_key(cls, sort: dict[str, str]) -> dict[str, str]:
        if len(sort) != 1:
            raise ValueError("sort by exactly one of created_at, latency, cost")
        (name, direction), *_ = sort.items()
        name = SORT_ALIASES.get(name, name)
        if name not in SORTS:
            raise ValueError(f"cannot sort by {name!r}; use created_at, latency or cost")
        return {name: direction}

    def page(self) -> PageQuery:
        (sort, direction), *_ = self.sort.items()
        return PageQuery(self.filter, sort, direction, self.limit, self.offset, self.cursor)


class CountBody(Body):
    """`POST /v1/request/count/query`: Helicone's count of the requests matching a filter tree."""

    filter: Filter = "all"
    # Helicone SDKs send it; relaylog accepts it and it changes nothing.
    isCached: bool | None = None


MAX_PROPERTY_KEY_CHARS = 256
MAX_PROPERTY_VALUE_BYTES = 1024


def _value_fits(value: str) -> str:
    if len(value.encode()) > MAX_PROPERTY_VALUE_BYTES:
        raise ValueError(f"value is longer than {MAX_PROPERTY_VALUE_BYTES} bytes")
    return value


class PropertyBody(Body):
    """`PUT /v1/request/{id}/property`: set one property (the key is stored lowercased)."""

    max_bytes = MAX_FEEDBACK_BODY_BYTES

    key: Annotated[
        StrictStr,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=MAX_PROPERTY_KEY_CHARS, pattern=NO_NUL
        ),
    ]
    value: Annotated[StrictStr, StringConstraints(pattern=NO_NUL), AfterValidator(_value_fits)]


class StatsBody(Body):
    """A filter tree and up to three dimensions to group by."""

    max_bytes = MAX_QUERY_BODY_BYTES

    filter: Filter = "all"
    group_by: list[str] = Field(
        default_factory=list,
        max_length=3,
        description="Up to three of day, model, user, outcome, path, property:NAME.",
    )

    @field_validator("group_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("group_by")
    @classmethod
    def _known_dimensions(cls, names: list[str]) -> list[str]:
        check_dimensions(names)
        return names


class DatasetCreateBody(Body):
    """`POST /v1/helicone-dataset`: a name, and request ids and/or a filter tree."""

    datasetName: Name
    requestIds: RequestIds = Field(default_factory=list)
    filter: Filter = None
    description: Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)] | None = None
    # Helicone's optional metadata; relaylog keeps none of it.
    meta: dict[str, Any] | None = None


class DatasetMutateBody(Body):
    """`POST /v1/helicone-dataset/{id}/mutate`."""

    addRequests: RequestIds = Field(default_factory=list)
    removeRequests: RequestIds = Field(default_factory=list)
    addFilter: Filter = None


class DatasetListBody(Body):
    """`POST /v1/helicone-dataset/query`: all datasets, or those with these ids."""

    datasetIds: list[RequestId] | None = Field(None, max_length=MAX_IDS)


# Path parameters.
RequestIdParam = Annotated[
    str,
    StringConstraints(pattern=f"^{REQUEST_ID_RE.pattern}$"),
    Field(
        description="A Helicone-Request-Id as logged (1-128 of [A-Za-z0-9._:@-]).",
        examples=["ticket-42-1700000000"],
    ),
]
SessionIdParam = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), Field(examples=["chat-7"])
]
DatasetRefParam = Annotated[str, StringConstraints(min_length=1)]

Timestamp = Annotated[str, Field(description="UTC, e.g. 2025-01-31T12:00:00.000Z")]


class Answer(BaseModel):
    """What a handler returns inside the envelope's `data` (documentation and tests only)."""


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]
    queue_depth: int
    dropped: int


class Feedback(Answer):
    """A request's rating as stored."""

    request_id: str
    rating: bool
    comment: str | None = None
    created_at: Timestamp
    updated_at: Timestamp


class SessionFeedback(Answer):
    """A session's rating as stored."""

    session_id: str
    rating: bool
    created_at: Timestamp
    updated_at: Timestamp


class Scores(Answer):
    request_id: str
    scores: dict[str, float]


class BatchItemResult(Answer):
    """One item's own status, answer and error."""

    index: int
    request_id: str | None
    status: int
    data: Feedback | None
    error: str | None


class BatchResult(Answer):
    stored: int
    failed: int
    results: list[BatchItemResult]


class RecordFeedback(Answer):
    rating: bool
    comment: str | None
    created_at: Timestamp
    updated_at: Timestamp


class SessionRating(Answer):
    rating: bool
    created_at: Timestamp
    updated_at: Timestamp


class Session(Answer):
    id: str
    path: str | None
    name: str | None
    feedback: SessionRating | None


class LoggedRequest(Answer):
    """One logged exchange with its feedback, scores, properties and session (storage's record)."""

    id: str
    created_at: Timestamp
    method: str
    path: str
    status: int | None = None
    outcome: str
    model: str | None = None
    is_stream: bool
    properties: dict[str, str]
    feedback: RecordFeedback | None = None
    scores: dict[str, float]
    session: Session | None = None
