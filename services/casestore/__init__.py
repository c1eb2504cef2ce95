"""casestore: sole owner of Postgres; admin API, command consumer and outbox relay."""
