from services.casestore.app import create_app
from shared.serving import serve

serve("casestore", create_app, lambda s: s.casestore_port)
