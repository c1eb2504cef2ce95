"""Turn the run's checks into failures (anything lost), warnings and readable lines."""

from typing import Any


def evaluate(checks: dict[str, Any], casewire: dict[str, Any], limits: dict[str, Any]
             ) -> tuple[list[str], list[str], list[str]]:
    failures: list[str] = []
    warnings: list[str] = []
    lines: list[str] = []
    for key, value in checks.items():
        if not key.startswith("cases:"):
            continue
        form = key.split(":", 1)[1]
        lines.append(f"{form}: {value['accepted']:,} accepted, {value['stored']:,} cases, "
                     f"{value['lost']} lost, {value['duplicates']} duplicated; answers "
                     f"{value['answers']}")
        if value["lost"]:
            failures.append(f"{value['lost']} accepted requests of {form} have no case")
        if value["duplicates"]:
            failures.append(f"{value['duplicates']} requests of {form} became two cases")
        if value["stored_but_unanswered"]:
            warnings.append(f"{value['stored_but_unanswered']} cases of {form} were stored "
                            "for requests the load generator got no 200 for")
        rejected = {k: v for k, v in value["answers"].items() if k != "200"}
        if rejected:
            warnings.append(f"{form}: requests not accepted: {rejected}")
    d = checks["deliveries"]
    lines.append(f"deliveries: {d['cases']:,} cases, {d['received']:,} received, {d['lost']} "
                 f"lost, {d['duplicates']} duplicated, {d['unexpected']} unexpected")
    if d["lost"]:
        failures.append(f"{d['lost']} cases were never delivered")
    if d["duplicates"]:
        warnings.append(f"{d['duplicates']} deliveries arrived twice (at-least-once)")
    if d["unexpected"] or d["unparseable"]:
        failures.append(f"{d['unexpected'] + d['unparseable']} deliveries match no case")
    _isolation(checks.get("isolation"), casewire.get("isolation"), failures, warnings, lines)
    _timers(casewire.get("timers"), failures, warnings, lines)
    _distant(casewire.get("distant"), failures, warnings, lines)
    log = checks["delivery_log"]
    lines.append(f"delivery log: {log['succeeded']:,} succeeded, {log['failed']} failed, "
                 f"{log.get('waiting', 0)} still waiting of {log['expected']:,}")
    if log["failed"] or log["succeeded"] < log["expected"]:
        failures.append(f"delivery log: {log['succeeded']} succeeded and {log['failed']} "
                        f"failed of {log['expected']}")
    queues = checks["queues"]
    lines.append("queues at the end: " + ", ".join(f"{k} {v}" for k, v in queues.items()))
    for name, depth in queues.items():
        if depth:
            failures.append(f"{depth} messages left in {name}")
    dead = [name for name, alive in checks["services_alive"].items() if not alive]
    lines.append("services alive to the end: " + ("yes" if not dead else f"no: {dead}"))
    if dead:
        failures.append(f"services died: {', '.join(dead)}")
    if not casewire["storage"]["complete"]:
        failures.append("not every accepted case reached Postgres in time")
    if not casewire["delivery_burst"]["complete"]:
        failures.append("not every case of the burst was delivered in time")
    for name, mem in casewire["memory"].items():
        if not mem["flat"]:
            warnings.append(f"{name} RSS grew {mem['soak_growth_mib']:.1f} MiB over the soak")
    ceiling = limits["loadgen_ceiling"]["rate"] if "loadgen_ceiling" in limits else None
    if ceiling and ceiling < 2 * limits["aiohttp"]["rate"]:
        warnings.append(f"the load generator's ceiling ({ceiling:,.0f} req/s) is less than "
                        "twice bare aiohttp's rate: it may limit the HTTP figures")
    for form_key in ("ingest", "ingest_latency"):
        errors = casewire[form_key].get("errors")
        if errors:
            warnings.append(f"{form_key}: load generator errors {errors}")
    return failures, warnings, lines


def _isolation(check: dict[str, Any] | None, figures: dict[str, Any] | None,
               failures: list[str], warnings: list[str], lines: list[str]) -> None:
    """Nothing of the healthy endpoint lost; its goals beside the hanging one are warnings."""
    if not check or not figures:
        return
    hanging = figures["hanging_endpoint"]
    lines.append(f"isolation: {check['cases']:,} healthy cases, {check['received']:,} "
                 f"received, {check['lost']} lost, {check['duplicates']} duplicated; the "
                 f"hanging endpoint held {hanging['held_open']} requests open, its deliveries "
                 f"{hanging['deliveries']}")
    if check["lost"]:
        failures.append(f"isolation: {check['lost']} healthy cases were never delivered")
    if check["unexpected"]:
        failures.append(f"isolation: {check['unexpected']} deliveries match no case")
    if check["duplicates"]:
        warnings.append(f"isolation: {check['duplicates']} deliveries arrived twice")
    if (figures["throughput_ratio"] or 0) < 0.9:
        warnings.append(f"isolation: the healthy endpoint beside a hanging one reached "
                        f"{figures['throughput_ratio'] or 0:.2f} of its throughput alone "
                        "(goal 0.90)")
    if (figures["p99_ratio"] or 0) > 2:
        warnings.append(f"isolation: its p99 beside a hanging one was "
                        f"{figures['p99_ratio']:.1f}x its p99 alone (goal 2x)")


def _timers(figures: dict[str, Any] | None, failures: list[str], warnings: list[str],
            lines: list[str]) -> None:
    if not figures:
        return
    lines.append(f"timers: {figures['fired']:,} of {figures['burst']:,} due timers fired")
    if figures["fired"] != figures["burst"]:
        failures.append(f"timers: {figures['burst'] - figures['fired']:,} due timers never fired")
    elif (figures["rate"] or 0) < 2000:
        warnings.append(f"timers: fired at {figures['rate'] or 0:,.0f}/s, under the 2,000/s goal")


def _distant(figures: dict[str, Any] | None, failures: list[str], warnings: list[str],
             lines: list[str]) -> None:
    """Every case to a distant receiver arrived; the outage's goal is a warning."""
    if not figures:
        return
    for bucket, got in figures["receivers"].items():
        lines.append(f"{bucket}: {got['accepted']:,} accepted, {got['delivered']:,} delivered")
        if got["delivered"] < got["accepted"]:
            failures.append(f"{got['accepted'] - got['delivered']} cases to {bucket} were "
                            "never delivered")
    outage = figures.get("outage")
    if outage:
        share = next(v for k, v in outage.items() if k.startswith("within_"))
        lines.append(f"outage: {outage['arrived']:,} of {outage['accepted']:,} arrived, "
                     f"{share:.1%} within 150 s of the first POST")
        if share < 0.95:
            warnings.append(f"outage: only {share:.1%} arrived within 150 s (goal 95%)")
