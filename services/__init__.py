"""The three Casewire services (ingest, casestore, dispatcher) and the `casewire` CLI."""
