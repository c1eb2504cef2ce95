"""dispatcher: evaluates outgoing-webhook automations on case events and sends the requests."""
