"""Every SQL statement casestore runs, one module per aggregate.

Callers pass the connection and own the transaction, and import the module they need under one
name each: `from services.casestore.repo import cases as case_rows`.
"""

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
