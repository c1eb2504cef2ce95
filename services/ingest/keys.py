"""Typed application keys for ingest's aiohttp app."""

from aiohttp import web

from services.ingest.forms_cache import FormCache
from services.ingest.idempotency import Idempotency
from services.ingest.ratelimit import RateLimiter

CACHE = web.AppKey("cache", FormCache)
LIMITER = web.AppKey("limiter", RateLimiter)
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)
