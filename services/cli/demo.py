"""The demo `casewire run` sets up: a form with its incoming webhook, and the automation the
banner suggests for sending its cases to a receiver."""


import aiohttp

from shared.settings import Settings

DEMO_FORM = {
    "id": "demo",
    "name": "Demo",
    "sections": [{"name": "Request"}, {"name": "Handling"}],
    "fields": [
        {"id": "text-field", "label": "Text", "type": "text", "mandatory": True, "section": 0},
        {"id": "email", "label": "E-mail", "type": "email", "section": 0},
        {"id": "due-date", "label": "Due date", "type": "date", "section": 0},
        {"id": "priority", "label": "Priority", "type": "select", "section": 0,
         "options": ["low", "normal", "high"]},
        {"id": "notes", "label": "Internal notes", "type": "textarea", "section": 1},
    ],
    "statuses": ["registered", "in_progress", "closed"],
}


async def ensure_demo(settings: Settings, token: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{settings.casestore_port}/api"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/forms/demo") as resp:
            exists = resp.status == 200
        if not exists:
            async with http.post(f"{base}/forms", json=DEMO_FORM) as resp:
                resp.raise_for_status()
        async with http.get(f"{base}/forms/demo/incoming-webhook") as resp:
            if resp.status == 200:
                hook: dict[str, str] = await resp.json()
                return hook
        async with http.put(f"{base}/forms/demo/incoming-webhook", json={"enabled": True}) as resp:
            resp.raise_for_status()
            created: dict[str, str] = await resp.json()
            return created


DEMO_RECEIVER = "http://127.0.0.1:9000/hook"
DEMO_AUTOMATION = {
    "name": "Demo: new cases to a receiver",
    "when": [{"event": "case_created"}],
    "action": {"type": "outgoing_webhook",
               "content": [{"key": "caseNumber", "meta": "case_number"},
                           {"key": "text", "field": "text-field"}],
               "settings": {"method": "POST", "url": DEMO_RECEIVER, "attempts": 3}},
}
