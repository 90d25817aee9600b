"""What storage raises: store failures, and plain domain errors the API maps to statuses.

StoreError          the store could not complete an operation (busy, unreachable, full)
  RowRejected       the store refused the data itself; retrying cannot help
  NoStore           a read opened a place that holds no relaylog store (nothing is created)
  QueryTimeout      a read ran past its deadline (storage.base.read_deadline) and was stopped
QueryError          (ValueError) a filter, cursor, grouping or export option is invalid
  FilterError       a filter tree node that cannot be compiled; names the bad node
UnknownDataset      (LookupError) no dataset has that id or name
DatasetExists       (ValueError) a dataset with that name exists already
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not complete an operation (busy, unreachable, full)."""


class RowRejected(StoreError):
    """The store refused the data itself (constraint, type, encoding); retrying cannot help."""


class NoStore(StoreError):
    """The database opened holds no relaylog schema, and the caller asked not to create one."""


class QueryTimeout(StoreError):
    """A read ran past the deadline set by storage.base.read_deadline; the store stopped the
    statement itself (SQLite: interrupted; PostgreSQL: cancelled on the server)."""

    def __init__(self) -> None:
        super().__init__("the read ran past its time limit and was stopped")


class QueryError(ValueError):
    """A query's input is invalid: a filter, cursor, grouping, sort or export option."""


class FilterError(QueryError):
    """A filter tree that cannot be compiled; the message names the bad node."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"invalid filter at {where}: {problem}")


class UnknownDataset(LookupError):
    """No dataset has the given id or name."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no dataset with id or name {ref!r}")


class DatasetExists(ValueError):
    """A dataset with the given name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a dataset named {name!r} exists")
