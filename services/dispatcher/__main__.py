from services.dispatcher.app import create_app
from shared.serving import serve

serve("dispatcher", create_app, lambda s: s.dispatcher_port)
