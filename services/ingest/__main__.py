from services.ingest.app import create_app
from shared.service import serve

serve("ingest", create_app, lambda s: s.ingest_port)
