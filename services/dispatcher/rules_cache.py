"""Each form's definition and enabled automations, cached until a case event proves them old.

casestore gives a form a new revision whenever the form or one of its automations changes (a
trigger, migration 003) and stamps every case event with the revision in force when the case
changed. An event whose revision is newer than the cached one reloads the form; any other is
judged by the cache. So an automation applies to every case changed after it was saved, exactly
as if it were read per event, without the two queries per event that would cost.
"""

import asyncio

from services.dispatcher.repo import FormRules, Reader


class RulesCache:
    def __init__(self, reader: Reader):
        self._reader = reader
        self._rules: dict[str, FormRules] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def get(self, form_id: str, revision: int) -> FormRules | None:
        """The form's rules at `revision` or newer; None if the form no longer exists."""
        cached = self._rules.get(form_id)
        if cached is not None and cached.revision >= revision:
            return cached
        # One load per form at a time: a burst of new events would otherwise each query.
        async with self._loading.setdefault(form_id, asyncio.Lock()):
            cached = self._rules.get(form_id)
            if cached is not None and cached.revision >= revision:
                return cached
            loaded = await self._reader.form_rules(form_id)
            if loaded is None:
                self._rules.pop(form_id, None)
                self._loading.pop(form_id, None)
            else:
                self._rules[form_id] = loaded
            return loaded
