"""The plain-SQL queries every request runs (`Database.scalar`): the directory generation and the delivery
backlog answer what the ORM queries they replace answered, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from app.errors import Unavailable
from app.models import DirectoryGeneration, Message, MessageStatus
from app.schemas import AgentMessageSchema
from app.services import messages
from app.services.admission import BACKLOG_QUERY, Admission
from app.services.directory import Directory, mark_changed


def test_scalar_answers_the_first_column_of_the_first_row_or_none(db):
    assert db.scalar("SELECT 7, 8") == 7
    assert db.scalar(f"SELECT value FROM {DirectoryGeneration.__tablename__} WHERE id = -1") is None


def test_scalar_raises_a_database_error_as_a_session_would(db):
    with pytest.raises(DBAPIError):
        db.scalar("SELECT value FROM no_such_table")
    assert db.scalar("SELECT 1") == 1  # the pool still serves


def test_the_generation_follows_every_change(db):
    directory = Directory(db)
    before = directory.generation()
    with db.read() as session:
        assert before == session.scalar(select(DirectoryGeneration.value))
    with db.write() as session:
        mark_changed(session)
    assert directory.generation() == before + 1


def test_the_backlog_counts_the_accepted_messages_only(db):
    schema = AgentMessageSchema()
    statuses = [MessageStatus.ACCEPTED] * 3 + [MessageStatus.DELIVERED] * 2 + [MessageStatus.DEAD]
    with db.write() as session:
        for n, status in enumerate(statuses):
            message = messages.new_message(schema.load({
                "from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "message_type": "notification",
                "content": {"n": n}}))
            message.status = status
            session.add(message)
    with db.read() as session:
        orm_count = session.scalar(select(func.count()).select_from(Message)
                                   .where(Message.status == MessageStatus.ACCEPTED))
    assert db.scalar(BACKLOG_QUERY) == orm_count == 3
    admission = Admission(db, max_backlog=4)
    admission.check()  # 3 + 1 fit
    with pytest.raises(Unavailable, match="overloaded") as refused:
        admission.check()  # what this process admitted counts until the next count
    assert refused.value.details == {"backlog": 4, "limit": 4}
