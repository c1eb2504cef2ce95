"""The deployment artefacts in deploy/ are valid, offline: the alert rules by promtool, the
Kubernetes manifests by kubernetes-validate (built-in kinds) or the CRD schemas we ship (custom
resources), and every metric the dashboard and the alerts query is one Casewire exports."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

import services.casestore.app
import services.dispatcher.app
import services.ingest.app  # noqa: F401  (its metrics register on import)
from tests.crd_schemas import SCHEMAS

DEPLOY = Path(__file__).parent.parent / "deploy"
K8S = DEPLOY / "k8s"
MONITORING = K8S / "monitoring"
KUBERNETES_VERSION = "1.30"
# The series each metric type exposes, so that every name a dashboard panel or an alert queries
# can be checked against what the services register.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"), "gauge": ("",)}
METRIC = re.compile(r"\bcasewire_[a-z0-9_]+")


def manifests() -> list[tuple[str, dict[str, Any]]]:
    files = [p for p in sorted(K8S.rglob("*.yaml")) if p.name != "kustomization.yaml"]
    return [(f"{p.relative_to(DEPLOY)}#{i}", doc) for p in files
            for i, doc in enumerate(yaml.safe_load_all(p.read_text())) if doc]


def exported() -> set[str]:
    """Every series name the three services' prometheus-client registry can expose."""
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return {name for name in names if name.startswith("casewire_")}


def rules() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {"groups": rule["spec"]["groups"]}


@pytest.mark.parametrize(("where", "doc"), manifests(), ids=[m[0] for m in manifests()])
def test_manifest_is_valid(where: str, doc: dict[str, Any]) -> None:
    schema = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if schema is not None:
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", sorted(K8S.rglob("kustomization.yaml")),
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_kustomizations_name_files_that_exist(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    for entry in spec.get("resources", []):
        assert (kustomization.parent / entry).exists(), entry
    for generator in spec.get("configMapGenerator", []):
        for name in generator["files"]:
            assert (kustomization.parent / name).exists(), name


def resources_of(kustomization: Path) -> list[Path]:
    spec = yaml.safe_load(kustomization.read_text())
    return [(kustomization.parent / entry).resolve() for entry in spec.get("resources", [])]


@pytest.mark.parametrize("kustomization", sorted(K8S.rglob("kustomization.yaml")),
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_no_kustomization_includes_a_directory_that_contains_it(kustomization: Path) -> None:
    """kustomize refuses that ("cycle detected"): keda/ once included its parent."""
    here = kustomization.parent.resolve()
    for entry in resources_of(kustomization):
        assert entry.is_file() or not here.is_relative_to(entry), entry


def included(kustomization: Path) -> list[Path]:
    """The manifest files a kustomization deploys, through the directories it includes."""
    files = []
    for entry in resources_of(kustomization):
        files += included(entry / "kustomization.yaml") if entry.is_dir() else [entry]
    return files


@pytest.mark.parametrize("overlay", ["", "keda", "overlays/staging", "overlays/production"])
def test_each_way_to_deploy_has_the_services_and_the_migration_once(overlay: str) -> None:
    files = included(K8S / overlay / "kustomization.yaml")
    assert len(files) == len(set(files)), "a manifest included twice"
    kinds = [(doc["kind"], doc["metadata"]["name"]) for f in files
             for doc in yaml.safe_load_all(f.read_text()) if doc]
    assert {("Deployment", s) for s in ("casestore", "ingest", "dispatcher")} <= set(kinds)
    assert ("Job", "casewire-migrate") in kinds
    engines = {("RabbitmqCluster", "casewire-rabbitmq"), ("Cluster", "casewire-pg")}
    assert engines <= set(kinds) if overlay.startswith("overlays") else not engines & set(kinds)


def test_every_manifest_is_deployed_by_a_kustomization() -> None:
    listed = {(k.parent / r).resolve() for k in K8S.rglob("kustomization.yaml")
              for r in yaml.safe_load(k.read_text()).get("resources", [])}
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    # The Secret is created by hand (or External Secrets), never applied from the repo.
    assert files - listed == {(K8S / "secret.example.yaml").resolve()}


def installed_promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs it (tests/system-tools.sh)")
    return promtool


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    promtool = installed_promtool()
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules()))
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_promtool_sees_the_alerts_fire_on_their_cases(tmp_path: Path) -> None:
    promtool = installed_promtool()
    # promtool compares annotations too: the cases check when each alert fires, and its labels.
    bare = {"groups": [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                                       for r in g["rules"]]} for g in rules()["groups"]]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(bare))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(ALERT_CASES))
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "test.yaml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _fires(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert,
            "exp_alerts": [{"exp_labels": {"severity": SEVERITY[alert], **labels}}]}


SEVERITY = {"CasewireDeadLettersPresent": "warning", "CasewireOutboxStuck": "critical",
            "CasewireConsumerMissing": "critical", "CasewireIngestUnavailable": "critical",
            "CasewireDeliveryFailureRatioHigh": "warning"}
DEAD, WORK = "casewire.dead-letters", "casewire.dispatcher"
ALERT_CASES = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
    "interval": "1m",
    "input_series": [
        {"series": f'casewire_queue_messages_ready{{queue="{DEAD}"}}', "values": "0 0 3x10"},
        {"series": f'casewire_queue_consumers{{queue="{WORK}"}}', "values": "1 1 0x10"},
        {"series": f'casewire_queue_consumers{{queue="{DEAD}"}}', "values": "0x12"},
        {"series": "casewire_outbox_oldest_seconds", "values": "0 0 30 90 150 210 270 330"},
        {"series": 'casewire_http_requests_total{service="ingest",status="503"}',
         "values": "0+10x20"},
        {"series": 'casewire_delivery_attempts_total{verdict="succeeded"}',
         "values": "0+10x40"},
        {"series": 'casewire_delivery_attempts_total{verdict="retry"}', "values": "0+30x40"},
    ],
    "alert_rule_test": [
        {"eval_time": "1m", "alertname": "CasewireDeadLettersPresent", "exp_alerts": []},
        _fires("CasewireDeadLettersPresent", "5m", queue=DEAD),
        _fires("CasewireConsumerMissing", "6m", queue=WORK),  # dead letters need none
        {"eval_time": "3m", "alertname": "CasewireOutboxStuck", "exp_alerts": []},
        _fires("CasewireOutboxStuck", "7m"),
        _fires("CasewireIngestUnavailable", "15m"),
        _fires("CasewireDeliveryFailureRatioHigh", "35m"),
    ]}]}


def dashboard_queries() -> list[str]:
    board = orjson.loads((MONITORING / "casewire-dashboard.json").read_bytes())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_dashboard_and_alerts_query_only_metrics_casewire_exports() -> None:
    queries = [*dashboard_queries(), *(r["expr"] for g in rules()["groups"] for r in g["rules"])]
    used = {name for query in queries for name in METRIC.findall(query)}
    assert used - exported() == set()
    # The pipeline, the delivery engine and retention all show on the board or alert.
    assert {"casewire_delivery_attempts_total", "casewire_deliveries_waiting",
            "casewire_http_requests_total", "casewire_retention_purged_total",
            "casewire_queue_messages_ready", "casewire_outbox_oldest_seconds",
            "casewire_dead_letters_total", "casewire_ingest_cases_total"} <= used


def test_every_dashboard_panel_has_a_title_and_a_query() -> None:
    board = orjson.loads((MONITORING / "casewire-dashboard.json").read_bytes())
    assert board["uid"] == "casewire"
    for panel in board["panels"]:
        assert panel["title"]
        assert panel["targets"]
        assert all(t["expr"].strip() for t in panel["targets"])
