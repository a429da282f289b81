"""Capture fixtures: a fresh database (on the session PostgreSQL) per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


@pytest.fixture(scope="module")
def db_dsn(postgres: Any) -> Iterator[str]:
    """An empty database of its own (publications and slots are per database)."""
    name = f"cap_{uuid.uuid4().hex[:10]}"
    with postgres.connect() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(postgres.dsn, dbname=name)
    with postgres.connect() as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def harmony_dsn(db_dsn: str) -> str:
    from harmony_lab.local.schema import apply_schema

    apply_schema(db_dsn)
    return db_dsn


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        yield c
