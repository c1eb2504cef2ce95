"""JSON Schemas for the custom resources in deploy/k8s, which kubernetes-validate (built-in
kinds only, offline) cannot check: the part of each CRD's schema these manifests use, strict
about unknown keys so a misspelt field fails. Taken from the Prometheus Operator's
(monitoring.coreos.com/v1), KEDA's (keda.sh/v1alpha1), the RabbitMQ Cluster Operator's
(rabbitmq.com/v1beta1) and CloudNativePG's (postgresql.cnpg.io/v1) CRDs."""

from typing import Any

STRING = {"type": "string"}
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}
LABELS = {"type": "object", "additionalProperties": STRING}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "namespace": STRING, "labels": LABELS, "annotations": LABELS}}
SELECTOR = _closed({"matchLabels": LABELS, "matchExpressions": {"type": "array"}})


def resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _closed({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                    "metadata": METADATA, "spec": spec},
                   ("apiVersion", "kind", "metadata", "spec"))


RELABELING = _closed({"sourceLabels": {"type": "array", "items": STRING},
                      "targetLabel": STRING, "regex": STRING, "replacement": STRING,
                      "action": STRING, "separator": STRING})
SERVICE_MONITOR = resource("monitoring.coreos.com/v1", "ServiceMonitor", _closed({
    "selector": SELECTOR, "jobLabel": STRING,
    "namespaceSelector": _closed({"any": {"type": "boolean"},
                                  "matchNames": {"type": "array", "items": STRING}}),
    "endpoints": {"type": "array", "minItems": 1, "items": _closed({
        "port": STRING, "path": STRING, "scheme": {"enum": ["http", "https"]},
        "interval": DURATION, "scrapeTimeout": DURATION,
        "relabelings": {"type": "array", "items": RELABELING},
        "metricRelabelings": {"type": "array", "items": RELABELING}})}},
    ("selector", "endpoints")))

RULE = _closed({"alert": STRING, "record": STRING, "expr": STRING, "for": DURATION,
                "labels": LABELS, "annotations": LABELS}, ("expr",))
PROMETHEUS_RULE = resource("monitoring.coreos.com/v1", "PrometheusRule", _closed({
    "groups": {"type": "array", "minItems": 1, "items": _closed({
        "name": STRING, "interval": DURATION,
        "rules": {"type": "array", "minItems": 1, "items": RULE}}, ("name", "rules"))}},
    ("groups",)))

TRIGGER = _closed({
    "type": STRING, "name": STRING, "metricType": {"enum": ["AverageValue", "Value",
                                                          "Utilization"]},
    "metadata": {"type": "object", "additionalProperties": STRING},
    "authenticationRef": _closed({"name": STRING, "kind": STRING}, ("name",))},
    ("type", "metadata"))
SCALED_OBJECT = resource("keda.sh/v1alpha1", "ScaledObject", _closed({
    "scaleTargetRef": _closed({"name": STRING, "kind": STRING, "apiVersion": STRING},
                              ("name",)),
    "minReplicaCount": {"type": "integer", "minimum": 0},
    "maxReplicaCount": {"type": "integer", "minimum": 1},
    "pollingInterval": {"type": "integer"}, "cooldownPeriod": {"type": "integer"},
    "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
    "advanced": {"type": "object"}}, ("scaleTargetRef", "triggers")))
TRIGGER_AUTHENTICATION = resource("keda.sh/v1alpha1", "TriggerAuthentication", _closed({
    "secretTargetRef": {"type": "array", "items": _closed(
        {"parameter": STRING, "name": STRING, "key": STRING},
        ("parameter", "name", "key"))}}))

QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+(m|Ki|Mi|Gi|Ti)?$"},
                      {"type": "integer"}]}
RESOURCES = _closed({"requests": {"type": "object", "additionalProperties": QUANTITY},
                     "limits": {"type": "object", "additionalProperties": QUANTITY}})
RABBITMQ_CLUSTER = resource("rabbitmq.com/v1beta1", "RabbitmqCluster", _closed({
    "replicas": {"type": "integer", "minimum": 0}, "image": STRING, "resources": RESOURCES,
    "persistence": _closed({"storage": QUANTITY, "storageClassName": STRING}),
    "rabbitmq": _closed({"additionalConfig": STRING, "advancedConfig": STRING,
                         "additionalPlugins": {"type": "array", "items": STRING},
                         "envConfig": STRING}),
    "service": _closed({"type": STRING, "annotations": LABELS}),
    "affinity": {"type": "object"}, "tolerations": {"type": "array"},
    "override": {"type": "object"}}))
SYNCHRONOUS = _closed({"method": {"enum": ["any", "first"]},
                       "number": {"type": "integer", "minimum": 1},
                       "dataDurability": {"enum": ["required", "preferred"]},
                       "maxStandbyNamesFromCluster": {"type": "integer"}},
                      ("method", "number"))
POSTGRES_CLUSTER = resource("postgresql.cnpg.io/v1", "Cluster", _closed({
    "instances": {"type": "integer", "minimum": 1}, "imageName": STRING,
    "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
    "postgresql": _closed({"parameters": {"type": "object", "additionalProperties": STRING},
                           "synchronous": SYNCHRONOUS, "pg_hba": {"type": "array"}}),
    "bootstrap": _closed({"initdb": _closed({"database": STRING, "owner": STRING,
                                             "secret": _closed({"name": STRING})})}),
    "enableSuperuserAccess": {"type": "boolean"},
    "storage": _closed({"size": QUANTITY, "storageClass": STRING}),
    "resources": RESOURCES, "affinity": {"type": "object"}, "monitoring": {"type": "object"}},
    ("instances", "storage")))

SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
           ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
           ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
           ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
           ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
           ("postgresql.cnpg.io/v1", "Cluster"): POSTGRES_CLUSTER}
