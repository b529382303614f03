#!/usr/bin/env bash
# Checks the deployment files, as `make deploy-lint` (part of `make lint`) runs
# them: every kustomize overlay renders and keeps what it promises (services,
# probes, replicas, stores, telemetry); every rendered object validates
# against the Kubernetes JSON schemas of the oldest and the newest version
# Cairn supports; checkov finds nothing in the rendered manifests or the
# Dockerfile beyond the exceptions written down in deploy/README.md; the
# example Collector configuration is consistent.
#
# TOOLS names the folder of the tools' executables (the Makefile installs them
# into .tools/python/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${TOOLS:-.tools/python/bin}
# 1.30: the oldest supported (the preStop sleep action is on by default from
# 1.30); 1.37: the newest the validator bundles.
KUBERNETES_VERSIONS=${KUBERNETES_VERSIONS:-1.30.0 1.37.0}

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT

for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    "$TOOLS/kubectl" kustomize "$overlay" >"$rendered/$name.yaml"
    echo "deploy-lint: rendered $name: $(grep -c '^kind:' "$rendered/$name.yaml") objects"
done

# What each overlay promises (deploy/README.md), checked on what it renders.
"$TOOLS/python" - "$rendered" <<'PYTHON'
import sys, yaml
services = ["profile", "journey", "recommendation", "feedback"]
def load(overlay):
    objects = {}
    for document in yaml.safe_load_all(open(f"{sys.argv[1]}/{overlay}.yaml")):
        objects[(document["kind"], document["metadata"]["name"])] = document
    return objects
def require(condition, message):
    if not condition:
        sys.exit(f"deploy-lint: {message}")
for overlay in ("dev", "prod"):
    objects = load(overlay)
    for service in services:
        name = f"cairn-{service}"
        deployment = objects.get(("Deployment", name))
        require(deployment, f"{overlay}: no Deployment {name}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        require(container["args"] == ["serve", "--only", service], f"{overlay}: {name} does not run `cairn serve --only {service}`")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            require("grpc" in container.get(probe, {}), f"{overlay}: {name} has no gRPC {probe}")
        for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            require((kind, name) in objects, f"{overlay}: no {kind} {name}")
        hpa = objects.get(("HorizontalPodAutoscaler", name))
        if overlay == "dev":
            require(deployment["spec"].get("replicas") == 1, f"dev: {name} is not one replica")
            require(hpa is None, f"dev: {name} is autoscaled")
        else:
            require("replicas" not in deployment["spec"], f"prod: {name} sets replicas; its autoscaler owns them")
            require(hpa and hpa["spec"]["minReplicas"] >= 3, f"prod: {name} may run fewer than three replicas")
            rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
            require(rolling.get("maxUnavailable") == 0, f"prod: {name} does not roll with maxUnavailable 0")
    require(("Job", "cairn-migrate") in objects, f"{overlay}: no migration Job")
    stores = {name for kind, name in objects if kind == "Deployment"} & {"postgres", "redis"}
    require(stores == ({"postgres", "redis"} if overlay == "dev" else set()),
            f"{overlay}: in-cluster stores are {sorted(stores)}")
    settings = next(o for (kind, name), o in objects.items() if kind == "ConfigMap" and name.startswith("cairn-settings"))
    require((overlay == "prod") == ("OTEL_EXPORTER_OTLP_ENDPOINT" in settings["data"]),
            f"{overlay}: the OTLP endpoint is {'missing' if overlay == 'prod' else 'set'}")
    print(f"deploy-lint: {overlay} keeps its promises (services, probes, replicas, stores, telemetry)")
PYTHON

for version in $KUBERNETES_VERSIONS; do
    "$TOOLS/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$rendered"/*.yaml
    echo "deploy-lint: every object validates against Kubernetes $version (strict)"
done

# The Dockerfile beside the manifests, so that one checkov run scans both.
cp deploy/docker/Dockerfile "$rendered/Dockerfile"
"$TOOLS/checkov" --directory "$rendered" --framework kubernetes dockerfile \
    --skip-download --compact --quiet \
    --output cli --output json --output-file-path "console,$rendered/checkov.json"
"$TOOLS/python" - "$rendered/checkov.json" <<'PYTHON'
import json, sys
reports = json.load(open(sys.argv[1]))
reports = reports if isinstance(reports, list) else [reports]
scanned = {report["check_type"]: report["summary"] for report in reports}
for framework in ("kubernetes", "dockerfile"):
    summary = scanned.get(framework)
    if not summary or summary["passed"] == 0:
        sys.exit(f"deploy-lint: checkov scanned no {framework} resources")
    if summary["parsing_errors"]:
        sys.exit(f"deploy-lint: checkov could not parse {summary['parsing_errors']} {framework} files")
    if summary["failed"]:
        sys.exit(f"deploy-lint: checkov found {summary['failed']} {framework} problems")
    print(f"deploy-lint: checkov {framework}: {summary['passed']} passed, "
          f"{summary['failed']} failed, {summary['skipped']} skipped (deploy/README.md says why)")
PYTHON

# The Collector example: every pipeline names only components it defines.
"$TOOLS/python" - deploy/otel-collector.yaml <<'PYTHON'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
pipelines = config["service"]["pipelines"]
for name, pipeline in pipelines.items():
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline.get(kind, []):
            if component not in (config.get(kind) or {}):
                sys.exit(f"deploy-lint: {sys.argv[1]}: pipeline {name} names undefined {kind[:-1]} {component}")
print(f"deploy-lint: {sys.argv[1]}: {len(pipelines)} pipelines, every component defined")
PYTHON
