"""The admin console: server-rendered pages under /console, served by casestore.

Pages call casestore's own repo and domain functions (not its HTTP API); sign-in takes the
admin token and gives a signed, expiring session cookie (session.py).
"""
