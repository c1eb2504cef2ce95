"""Console sessions that signed out (migration 012): refused until their cookie expires."""

from datetime import datetime

from services.casestore.repo import Conn


async def has_ended(conn: Conn, nonce_hash: bytes) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM console_sessions_ended WHERE nonce_hash = $1", nonce_hash))


async def end(conn: Conn, nonce_hash: bytes, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO console_sessions_ended (nonce_hash, expires_at) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING", nonce_hash, expires_at)
