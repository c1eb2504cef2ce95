"""ingest: accepts incoming webhooks; answers 200 once the broker confirmed the case."""
