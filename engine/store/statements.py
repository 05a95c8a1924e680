"""Prebuilt statements for the pipeline's hot paths (SQLAlchemy Core, bind parameters, portable SQL).

The per-message statements of the detect, receive and apply steps, built once: through the ORM
each one was built, compiled and synchronised with the session again (about ten times the cost).
They run on the session's connection, inside the batch's transaction; no ORM object stands for
these rows there (the operator actions, rare, still use the ORM in their own transactions).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel

from engine.store import models  # noqa: F401  (registers the tables)

MESSAGES = SQLModel.metadata.tables["message"]
PAIRS = SQLModel.metadata.tables["issuepair"]
STATES = SQLModel.metadata.tables["fieldstate"]
INSERT_MESSAGE = insert(MESSAGES)
INSERT_MESSAGES_RETURNING_ID = insert(MESSAGES).returning(MESSAGES.c.id, sort_by_parameter_order=True)
MOVE_MESSAGE = update(MESSAGES).where(MESSAGES.c.id == bindparam("b_id"))
THIS_PAIR = and_(PAIRS.c.side_id == bindparam("b_side"), PAIRS.c.pair_id == bindparam("b_pair"))
SELECT_PAIR = sa_select(PAIRS).where(THIS_PAIR)
UPDATE_PAIR = update(PAIRS).where(THIS_PAIR)  # SET: the other params
INSERT_PAIR = insert(PAIRS)
THIS_PAIRS_STATES = and_(STATES.c.side_id == bindparam("b_side"), STATES.c.pair_id == bindparam("b_pair"))
SELECT_STATES = sa_select(STATES).where(THIS_PAIRS_STATES)
UPDATE_STATE_BY_ID = update(STATES).where(STATES.c.id == bindparam("b_id"))
UPDATE_STATE = update(STATES).where(THIS_PAIRS_STATES, STATES.c.mapping_id == bindparam("b_mapping"))
INSERT_STATE = insert(STATES)
PAIRS_OF_ISSUES = sa_select(PAIRS).where(
    PAIRS.c.side_id == bindparam("b_side"), PAIRS.c.issue_id.in_(bindparam("b_issues", expanding=True))
)
PAIR_OF_ISSUE = sa_select(PAIRS).where(
    PAIRS.c.side_id == bindparam("b_side"), PAIRS.c.issue_id == bindparam("b_issue")
)
STATES_OF_PAIRS = sa_select(STATES).where(
    STATES.c.side_id == bindparam("b_side"), STATES.c.pair_id.in_(bindparam("b_pairs", expanding=True))
)
STATE_OF_PAIR = sa_select(STATES).where(THIS_PAIRS_STATES, STATES.c.mapping_id == bindparam("b_mapping"))
UPDATE_OUT_SEQ = update(PAIRS).where(PAIRS.c.id == bindparam("b_id"))
