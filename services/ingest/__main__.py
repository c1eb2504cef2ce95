from services.ingest.app import create_app
from shared.serving import serve

# With CASEWIRE_INGEST_WORKERS > 1 that many ingest processes share the port (SO_REUSEPORT) and
# the kernel spreads connections over them; with one, a second process on the port is an error.
serve("ingest", create_app, lambda s: s.ingest_port, reuse_port=lambda s: s.ingest_workers > 1)
