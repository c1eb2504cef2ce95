"""Every SQL statement casestore runs, one module per aggregate; rows come back typed.

forms (forms and their case counters), cases (cases, history), access (incoming webhooks,
users, auth keys), automations (with their once-claims), deliveries (with their attempts),
files, outbox (outbox, parked events, processed events), idempotency (incoming webhooks'
Idempotency-Keys), sessions (console sessions that signed out). Each row type renders its
API JSON with `to_api()`.

Callers pass the connection and own the transaction, and import each module under one name:
`from services.casestore.repo import cases as case_rows` (form_rows, access_rows,
automation_rows, delivery_rows, file_rows, outbox_rows, idempotency_rows likewise).
"""

from shared.db import Queryable

Conn = Queryable  # what every repo function runs its queries on
