"""Forms, and the case counter each form's cases are numbered by."""

from typing import Any

from services.casestore.repo import Conn
from shared.forms import FORM_COLUMNS, FormDefinition


def _form_args(form: FormDefinition) -> tuple[Any, ...]:
    dumped = form.model_dump(mode="json")
    return (form.id, form.name, dumped["sections"], dumped["fields"], form.statuses,
            form.time_zone)


async def insert_form(conn: Conn, form: FormDefinition) -> None:
    await conn.execute(
        "INSERT INTO forms (id, name, sections, fields, statuses, time_zone)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        *_form_args(form))
    await conn.execute("INSERT INTO case_counters (form_id) VALUES ($1)", form.id)


async def update_form(conn: Conn, form: FormDefinition) -> bool:
    result = await conn.execute(
        "UPDATE forms SET name = $2, sections = $3, fields = $4, statuses = $5, time_zone = $6,"
        " updated_at = now() WHERE id = $1", *_form_args(form))
    return bool(result != "UPDATE 0")


async def delete_form(conn: Conn, form_id: str) -> bool:
    return bool(await conn.execute("DELETE FROM forms WHERE id = $1", form_id) != "DELETE 0")


async def lock_form_for_delete(conn: Conn, form_id: str) -> int | None:
    """Lock the form against new cases (their foreign key check waits) and count its cases.

    None if there is no such form.
    """
    if await conn.fetchval("SELECT 1 FROM forms WHERE id = $1 FOR UPDATE", form_id) is None:
        return None
    return int(await conn.fetchval("SELECT count(*) FROM cases WHERE form_id = $1", form_id))


async def get_form(conn: Conn, form_id: str, *, lock: bool = False) -> FormDefinition | None:
    sql = f"SELECT {FORM_COLUMNS} FROM forms WHERE id = $1" + (" FOR SHARE" if lock else "")
    row = await conn.fetchrow(sql, form_id)
    return FormDefinition.from_record(row) if row else None


async def get_forms(conn: Conn, form_ids: list[str]) -> dict[str, FormDefinition]:
    rows = await conn.fetch(f"SELECT {FORM_COLUMNS} FROM forms WHERE id = ANY($1::text[])",
                            form_ids)
    return {r["id"]: FormDefinition.from_record(r) for r in rows}


async def list_forms(conn: Conn) -> list[FormDefinition]:
    rows = await conn.fetch(f"SELECT {FORM_COLUMNS} FROM forms ORDER BY id")
    return [FormDefinition.from_record(r) for r in rows]
