#!/usr/bin/env python3
"""Checks of the rendered deployment manifests, run by scripts/validate-deploy.sh.

Input: rendered multi-document YAML streams (kustomize overlays, helm template runs). Each
stream is checked for

  schema      every object against the Kubernetes OpenAPI schemas shipped in
              kubernetes-validate (strict: unknown fields fail), for each --k8s-version;
              the custom resources against the structural schemas in k8s/schemas/
              (an object of any other kind fails: nothing goes unchecked silently)
  references  ConfigMaps, Secrets, ServiceAccounts, Services, ports and selectors that the
              objects name exist in the same render (or are made by an operator in it: the
              CloudNativePG `<cluster>-app` Secret; or are declared external); ServiceMonitors
              set job to the service name (jobLabel app.kubernetes.io/component)
  policy      the three services: /ready readiness and /health liveness probes on the http
              port, *_LISTEN=0.0.0.0:8080, DATABASE_URL from a Secret, every environment
              variable one the README documents, uid 10001, a PodDisruptionBudget, an
              autoscaler (redirect on CPU) unless replicas are fixed, scrape annotations or a
              ServiceMonitor, the wait-for-schema init container, a migrate Job; every
              container of every pod: requests and limits, no privilege escalation, read-only
              root filesystem, all capabilities dropped, non-root, RuntimeDefault seccomp
  edge        the IngressRoute's two rules are exactly the local edge's rules
              (config/traefik/dynamic.yml), point at the api and redirect Services, carry
              rate-limit Middlewares equal to the local edge's, and
              deploy/compose-traefik.yml routes and limits the same way
  access      every pod (services, migrate Job, NATS, Valkey, the CloudNativePG instances) is
              selected by a NetworkPolicy; the backing servers admit no edge and no other
              namespace's pods but the operator's and Prometheus'; each service logs in to a
              bundled NATS as its own user; the NATS auth.conf and Valkey acl.conf the
              ConfigMaps carry are byte-identical to config/nats/auth.conf and
              config/valkey/acl.conf
  backends    bundled CloudNativePG cluster size, NATS cluster routes match the StatefulSet,
              Valkey replicas follow a Service that selects the primary
  alerts      every PrometheusRule holds exactly the groups of
              monitoring/prometheus/rules/shortline.yml

and pairs of renders (--parity A:B) must describe the same system: the same objects by kind
and name, and the same spec/data once the labels and annotations that only say who rendered
them (managed-by, helm.sh/chart, version, checksum/*) are dropped.

--compose FILE adds checks of compose.yml beyond its JSON schema (check-jsonschema does that
part): bind-mounted files exist, the services and replica counts the issue asks for, and
that Prometheus scrapes the three services.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("api", "redirect", "analytics")
LISTEN_VARS = {"api": "API_LISTEN", "redirect": "REDIRECT_LISTEN", "analytics": "ANALYTICS_LISTEN"}
CRD_SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_cluster.json",
    ("traefik.io/v1alpha1", "IngressRoute"): "traefik.io_v1alpha1_ingressroute.json",
    ("traefik.io/v1alpha1", "Middleware"): "traefik.io_v1alpha1_middleware.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
ALERT_RULES = ROOT / "monitoring" / "prometheus" / "rules" / "shortline.yml"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# Labels and annotations that only say who rendered an object.
RENDERER_LABELS = {"app.kubernetes.io/managed-by", "helm.sh/chart", "app.kubernetes.io/version"}
RENDERER_ANNOTATION_PREFIXES = ("checksum/", "helm.sh/")


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.checks = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.errors.append(f"{where}: {message}")
        return ok


def load_stream(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise SystemExit(f"{path}: not a Kubernetes object: {str(d)[:200]}")
    return docs


def ident(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    return None


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in POD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def component(obj: dict) -> str | None:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


# ---------------------------------------------------------------------------------- schema

_schema_cache: dict = {}


def _cached_schema_contents(filename: str, desired_version: str):
    key = filename
    if key not in _schema_cache:
        _schema_cache[key] = _original_schema_contents(filename, desired_version)
    return _schema_cache[key]


# kubernetes-validate reads the (large) definitions file for every object: cache it.
_original_schema_contents = kv.schema_contents
kv.schema_contents = _cached_schema_contents


def check_schemas(name: str, docs: list[dict], versions: list[str], rep: Report) -> None:
    crd_validators = {}
    for key, file in CRD_SCHEMAS.items():
        schema = json.loads((ROOT / "k8s" / "schemas" / file).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        crd_validators[key] = jsonschema.Draft202012Validator(schema)
    for obj in docs:
        where = f"{name}: {ident(obj)}"
        key = (obj.get("apiVersion"), obj["kind"])
        if key in crd_validators:
            errs = sorted(crd_validators[key].iter_errors(obj), key=lambda e: list(e.path))
            rep.check(
                not errs,
                where,
                "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errs[:5]),
            )
            continue
        for version in versions:
            try:
                kv.validate(obj, version, strict=True)
                rep.check(True, where, "")
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                rep.check(False, where, f"Kubernetes {version} schema: {path}: {e.message}")
            except kv.SchemaNotFoundError:
                rep.check(
                    False,
                    where,
                    f"no schema for {obj.get('apiVersion')} {obj['kind']} in Kubernetes {version} "
                    "(and none in k8s/schemas/)",
                )


# ------------------------------------------------------------------------------ references


def check_references(name: str, docs: list[dict], external_secrets: set[str], rep: Report) -> None:
    configmaps = {d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"] for d in by_kind(docs, "Secret")}
    # CloudNativePG makes <cluster>-app (the application owner's credentials, key `uri`).
    secrets |= {f"{d['metadata']['name']}-app" for d in by_kind(docs, "Cluster")}
    secrets |= external_secrets
    accounts = {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")} | {"default"}
    workloads = [d for d in docs if d["kind"] in POD_KINDS]

    for obj in workloads:
        where = f"{name}: {ident(obj)}"
        spec = pod_spec(obj)
        rep.check(
            spec.get("serviceAccountName", "default") in accounts,
            where,
            f"ServiceAccount {spec.get('serviceAccountName')} is not defined",
        )
        for c in all_containers(spec):
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    rep.check(ef["configMapRef"]["name"] in configmaps, where,
                              f"ConfigMap {ef['configMapRef']['name']} is not defined")
                if "secretRef" in ef:
                    rep.check(ef["secretRef"]["name"] in secrets, where,
                              f"Secret {ef['secretRef']['name']} is not defined")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    rep.check(ref["secretKeyRef"]["name"] in secrets, where,
                              f"Secret {ref['secretKeyRef']['name']} (env {e['name']}) is not defined")
                if "configMapKeyRef" in ref:
                    rep.check(ref["configMapKeyRef"]["name"] in configmaps, where,
                              f"ConfigMap {ref['configMapKeyRef']['name']} is not defined")
        for v in spec.get("volumes", []):
            if "configMap" in v:
                rep.check(v["configMap"]["name"] in configmaps, where,
                          f"ConfigMap {v['configMap']['name']} (volume) is not defined")
            if "secret" in v:
                rep.check(v["secret"]["secretName"] in secrets, where,
                          f"Secret {v['secret']['secretName']} (volume) is not defined")
        if obj["kind"] == "StatefulSet":
            svc = find(docs, "Service", obj["spec"]["serviceName"])
            rep.check(svc is not None and svc["spec"].get("clusterIP") == "None", where,
                      f"serviceName {obj['spec']['serviceName']} is not a headless Service here")
        sel = obj["spec"].get("selector", {}).get("matchLabels")
        if sel is not None:
            rep.check(selects(sel, pod_labels(obj)), where, "selector does not match its pod labels")

    for svc in by_kind(docs, "Service"):
        where = f"{name}: {ident(svc)}"
        sel = svc["spec"].get("selector", {})
        targets = [w for w in workloads if w["kind"] != "Job" and selects(sel, pod_labels(w))]
        if not rep.check(bool(targets), where, f"selector {sel} matches no pods"):
            continue
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            for w in targets:
                ports = [p for c in pod_spec(w)["containers"] for p in c.get("ports", [])]
                ok = any(p.get("name") == tp or p["containerPort"] == tp for p in ports)
                rep.check(ok, where, f"targetPort {tp} is not a port of {ident(w)}")

    for pdb in by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        rep.check(any(w["kind"] != "Job" and selects(sel, pod_labels(w)) for w in workloads),
                  f"{name}: {ident(pdb)}", f"selector {sel} matches no pods")

    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        rep.check(find(docs, ref["kind"], ref["name"]) is not None, f"{name}: {ident(hpa)}",
                  f"scaleTargetRef {ref['kind']}/{ref['name']} is not defined")
        rep.check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], f"{name}: {ident(hpa)}",
                  "minReplicas > maxReplicas")

    for sm in by_kind(docs, "ServiceMonitor"):
        sel = sm["spec"]["selector"].get("matchLabels", {})
        svcs = [s for s in by_kind(docs, "Service") if selects(sel, s["metadata"].get("labels", {}))]
        where = f"{name}: {ident(sm)}"
        if rep.check(bool(svcs), where, f"selector {sel} matches no Service labels"):
            for ep in sm["spec"]["endpoints"]:
                rep.check(any(p.get("name") == ep["port"] for s in svcs for p in s["spec"]["ports"]),
                          where, f"endpoint port {ep['port']} is not a named Service port")
            # The dashboards and alert rules (monitoring/) select job=api|redirect|analytics.
            job_label = sm["spec"].get("jobLabel")
            jobs = {s["metadata"].get("labels", {}).get(job_label or "") for s in svcs}
            rep.check(job_label == "app.kubernetes.io/component" and len(jobs) == 1 and jobs <= set(SERVICES),
                      where, f"jobLabel {job_label!r} does not give job = the service name (got {sorted(map(str, jobs))})")


# ----------------------------------------------------------------------------- alert rules


def check_alert_rules(name: str, docs: list[dict], rep: Report) -> None:
    """Every PrometheusRule holds exactly the groups of monitoring/prometheus/rules/shortline.yml."""
    want = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    for pr in by_kind(docs, "PrometheusRule"):
        got = pr["spec"].get("groups")
        rep.check(got == want, f"{name}: {ident(pr)}",
                  "groups differ from monitoring/prometheus/rules/shortline.yml "
                  "(run python3 scripts/sync_prometheus_rules.py)")


# ---------------------------------------------------------------------------------- policy


def documented_env_vars() -> set[str]:
    """Every variable in the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def check_policy(name: str, docs: list[dict], rep: Report) -> None:
    documented = documented_env_vars()
    rep.check(len(documented) > 20, name, "could not read the README configuration table")
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    monitors = by_kind(docs, "ServiceMonitor")

    for obj in docs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{name}: {ident(obj)}"
        psc = spec.get("securityContext", {})
        rep.check(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot is not true")
        rep.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where,
                  "pod seccompProfile is not RuntimeDefault")
        rep.check(spec.get("automountServiceAccountToken") is False, where,
                  "automountServiceAccountToken is not false (nothing here talks to the API)")
        for c in all_containers(spec):
            cw = f"{where} container {c['name']}"
            res = c.get("resources", {})
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    rep.check(r in res.get(section, {}), cw, f"no {section}.{r}")
            sc = c.get("securityContext", {})
            rep.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation is not false")
            rep.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem is not true")
            rep.check("ALL" in sc.get("capabilities", {}).get("drop", []), cw, "capabilities do not drop ALL")
            rep.check(":" in c["image"] and not c["image"].endswith(":latest"), cw,
                      f"image {c['image']} has no pinned tag")

    deployments = {component(d): d for d in by_kind(docs, "Deployment")}
    for svc in SERVICES:
        dep = deployments.get(svc)
        if not rep.check(dep is not None, name, f"no Deployment for the {svc} service"):
            continue
        where = f"{name}: {ident(dep)}"
        spec = pod_spec(dep)
        psc = spec["securityContext"]
        rep.check(psc.get("runAsUser") == 10001, where, "runAsUser is not 10001 (the image's user)")
        main = spec["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        rep.check(ports.get("http") == 8080, where, "no container port http: 8080")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            http = main.get(probe, {}).get("httpGet", {})
            rep.check(http.get("path") == path and http.get("port") in ("http", 8080), where,
                      f"{probe} is not GET {path} on the http port")
        env = {e["name"]: e for e in main.get("env", [])}
        rep.check(env.get(LISTEN_VARS[svc], {}).get("value") == "0.0.0.0:8080", where,
                  f"{LISTEN_VARS[svc]} is not 0.0.0.0:8080")
        rep.check("secretKeyRef" in env.get("DATABASE_URL", {}).get("valueFrom", {}), where,
                  "DATABASE_URL does not come from a Secret")
        names = set(env)
        for ef in main.get("envFrom", []):
            cm = configmaps.get(ef.get("configMapRef", {}).get("name"))
            if cm:
                names |= set(cm.get("data", {}))
        undocumented = sorted(names - documented)
        rep.check(not undocumented, where,
                  f"environment variables not in the README configuration table: {undocumented}")
        for required in ("NATS_URL", "NATS_PREFIX") + (("VALKEY_URL", "TRUSTED_PROXIES") if svc == "redirect" else ()):
            rep.check(required in names, where, f"{required} is not set")
        inits = [c for c in spec.get("initContainers", []) if c["name"] == "wait-for-schema"]
        rep.check(bool(inits) and inits[0].get("command", [])[-1:] == ["migrate"]
                  and inits[0]["command"][0].endswith("shortline-api"), where,
                  "no wait-for-schema init container running `shortline-api migrate`")
        labels = pod_labels(dep)
        pdbs = [p for p in by_kind(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"]["matchLabels"], labels)]
        rep.check(len(pdbs) == 1, where, f"{len(pdbs)} PodDisruptionBudgets select it (want 1)")
        hpas = [h for h in by_kind(docs, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]]
        if "replicas" in dep["spec"]:
            rep.check(not hpas, where, "has both fixed replicas and an autoscaler")
        elif rep.check(len(hpas) == 1, where, "no autoscaler and no fixed replicas"):
            metrics = hpas[0]["spec"]["metrics"]
            has_cpu = any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)
            rep.check(has_cpu, f"{name}: {ident(hpas[0])}", "does not scale on CPU")
            for m in metrics:
                if m["type"] == "External":
                    rep.check(svc == "analytics"
                              and m["external"]["metric"]["name"] == "shortline_analytics_consumer_pending",
                              f"{name}: {ident(hpas[0])}", "unexpected external metric")
        annotated = dep["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"
        monitored = any(selects(m["spec"]["selector"].get("matchLabels", {}), labels) for m in monitors)
        rep.check(annotated or monitored, where, "neither scrape annotations nor a ServiceMonitor")

    jobs = [j for j in by_kind(docs, "Job") if component(j) == "migrate"]
    if rep.check(len(jobs) == 1, name, "no migrate Job"):
        c = pod_spec(jobs[0])["containers"][0]
        rep.check(c.get("command", [])[-1:] == ["migrate"] and c["command"][0].endswith("shortline-api"),
                  f"{name}: {ident(jobs[0])}", "does not run `shortline-api migrate`")


# ------------------------------------------------------------------------------------ edge


def norm_rule(rule: str) -> str:
    return re.sub(r"\s+", " ", rule).strip()


def local_edge_rules() -> dict[str, str]:
    cfg = yaml.safe_load((ROOT / "config" / "traefik" / "dynamic.yml").read_text())
    return {k: norm_rule(v["rule"]) for k, v in cfg["http"]["routers"].items()}


def edge_limits(cfg: dict) -> dict[str, dict]:
    """route name -> the rateLimit of its one rate-limit middleware, in a Traefik
    file-provider config (other middlewares, such as the local edge's retry, are skipped)."""
    out = {}
    defined = cfg["http"].get("middlewares", {})
    for router, r in cfg["http"]["routers"].items():
        limits = [defined.get(m, {}).get("rateLimit") for m in r.get("middlewares", [])]
        limits = [lim for lim in limits if lim is not None]
        if len(limits) == 1:
            out[router] = limits[0]
    return out


def local_edge_limits() -> dict[str, dict]:
    return edge_limits(yaml.safe_load((ROOT / "config" / "traefik" / "dynamic.yml").read_text()))


def check_edge(name: str, docs: list[dict], rep: Report) -> None:
    rules = local_edge_rules()
    routes = by_kind(docs, "IngressRoute")
    if not rep.check(len(routes) == 1, name, f"{len(routes)} IngressRoutes (want 1)"):
        return
    ir = routes[0]
    where = f"{name}: {ident(ir)}"
    got = ir["spec"]["routes"]
    if not rep.check(len(got) == 2, where, "want exactly two routes (api, redirect)"):
        return
    for route, svc in zip(sorted(got, key=lambda r: -r.get("priority", 0)), ("api", "redirect")):
        match = norm_rule(route["match"])
        host = re.match(r"^Host\(`[^`]+`\) && \((.*)\)$", match)
        if host:
            match = host.group(1)
        rep.check(not (host and svc == "redirect"), where,
                  "the redirect route must match every host (custom domains point their DNS at the edge)")
        rep.check(match == rules[svc], where,
                  f"the {svc} route differs from config/traefik/dynamic.yml:\n    {match}\n    {rules[svc]}")
        backends = [s["name"] for s in route["services"]]
        rep.check(len(backends) == 1 and backends[0].endswith(f"-{svc}"), where,
                  f"the {svc} route goes to {backends}")
        rep.check(find(docs, "Service", backends[0]) is not None, where, f"Service {backends[0]} is not defined")
    prio = {r["services"][0]["name"].rsplit("-", 1)[-1]: r.get("priority", 0) for r in got}
    rep.check(prio.get("api", 0) > prio.get("redirect", 0), where, "the api route must win over the catch-all")
    limits = local_edge_limits()
    for route in got:
        svc = route["services"][0]["name"].rsplit("-", 1)[-1]
        names = [m["name"] for m in route.get("middlewares", [])]
        mws = [find(docs, "Middleware", n) for n in names]
        if not rep.check(all(m is not None for m in mws), where,
                         f"the {svc} route names an undefined Middleware ({names})"):
            continue
        limiting = [m for m in mws if "rateLimit" in m["spec"]]
        if not rep.check(len(limiting) == 1 and mws[0] is limiting[0], where,
                         f"the {svc} route must carry one rate-limit Middleware, first ({names})"):
            continue
        rep.check(limiting[0]["spec"]["rateLimit"] == limits.get(svc), f"{name}: {ident(limiting[0])}",
                  f"rateLimit {limiting[0]['spec']['rateLimit']} differs from the local edge's {limits.get(svc)}")
        retries = [m for m in mws if "retry" in m["spec"]]
        rep.check(len(retries) == (1 if svc == "redirect" else 0), where,
                  f"the {svc} route carries {len(retries)} retry Middlewares (redirect: 1, api: none; "
                  "API writes are not safe to send twice)")


def check_compose_edge(rep: Report) -> None:
    local = local_edge_rules()
    compose = yaml.safe_load((ROOT / "deploy" / "compose-traefik.yml").read_text())
    got = {k: norm_rule(v["rule"]) for k, v in compose["http"]["routers"].items()}
    rep.check(got == local, "deploy/compose-traefik.yml", "routers differ from config/traefik/dynamic.yml")
    limits = local_edge_limits()
    rep.check(set(limits) == {"api", "redirect"} and all(limits.values()), "config/traefik/dynamic.yml",
              f"the api and redirect routers must each carry one rateLimit middleware: {limits}")
    rep.check(edge_limits(compose) == limits, "deploy/compose-traefik.yml",
              "rate limits differ from config/traefik/dynamic.yml")
    local = yaml.safe_load((ROOT / "config" / "traefik" / "dynamic.yml").read_text())
    rep.check([compose["http"]["routers"][r].get("middlewares") for r in ("api", "redirect")]
              == [local["http"]["routers"][r].get("middlewares") for r in ("api", "redirect")]
              and compose["http"]["middlewares"].get("redirect-retry")
              == local["http"]["middlewares"].get("redirect-retry"),
              "deploy/compose-traefik.yml", "middlewares (rate limits, the redirect retry) differ from "
              "config/traefik/dynamic.yml")


# -------------------------------------------------------------------------------- backends


def check_backends(name: str, docs: list[dict], min_pg: int, rep: Report) -> None:
    for cl in by_kind(docs, "Cluster"):
        rep.check(cl["spec"]["instances"] >= min_pg, f"{name}: {ident(cl)}",
                  f"{cl['spec']['instances']} instances (want >= {min_pg})")
    for sts in by_kind(docs, "StatefulSet"):
        where = f"{name}: {ident(sts)}"
        if component(sts) == "nats":
            cm_name = next(v["configMap"]["name"] for v in pod_spec(sts)["volumes"] if "configMap" in v)
            conf = find(docs, "ConfigMap", cm_name)["data"]["nats.conf"]
            routes = re.findall(r"nats://([^\s:]+):6222", conf)
            want = [f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}"
                    for i in range(sts["spec"]["replicas"])]
            rep.check(routes == want, where, f"cluster routes {routes} do not match the pods {want}")
            rep.check(sts["spec"]["replicas"] >= 3 and sts["spec"]["replicas"] % 2 == 1, where,
                      "JetStream needs an odd cluster of at least 3 for a replicated meta layer")
            rep.check("jetstream {" in conf and "server_name: $POD_NAME" in conf, where,
                      "nats.conf lacks JetStream or a per-pod server_name")
            rep.check(sts["spec"].get("podManagementPolicy") == "Parallel", where,
                      "NATS nodes must start in parallel to form a quorum")
        if component(sts) == "valkey":
            args = pod_spec(sts)["containers"][0].get("args", [])
            if "--replicaof" in args:
                primary = args[args.index("--replicaof") + 1]
                svc = find(docs, "Service", primary)
                ok = svc is not None and svc["spec"]["selector"].get("shortline.dev/valkey-role") == "primary"
                rep.check(ok, where, f"--replicaof {primary} is not a Service selecting the primary")


# ---------------------------------------------------------------------------------- access

NATS_AUTH = ROOT / "config" / "nats" / "auth.conf"
VALKEY_ACL = ROOT / "config" / "valkey" / "acl.conf"
BACKENDS = ("nats", "valkey", "postgres")


def policy_selects(policy: dict, labels: dict) -> bool:
    sel = policy["spec"].get("podSelector", {})
    if not all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for expr in sel.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return bool(sel)


def check_access(name: str, docs: list[dict], rep: Report) -> None:
    policies = by_kind(docs, "NetworkPolicy")
    workloads = [d for d in docs if d["kind"] in POD_KINDS]
    for w in workloads:
        labels = pod_labels(w)
        rep.check(any(policy_selects(p, labels) for p in policies), f"{name}: {ident(w)}",
                  "no NetworkPolicy selects its pods")
    for cl in by_kind(docs, "Cluster"):
        labels = {"cnpg.io/cluster": cl["metadata"]["name"]}
        rep.check(any(policy_selects(p, labels) for p in policies), f"{name}: {ident(cl)}",
                  "no NetworkPolicy selects its instances (cnpg.io/cluster)")
    for p in policies:
        where = f"{name}: {ident(p)}"
        rep.check("Ingress" in p["spec"].get("policyTypes", []), where, "does not restrict ingress")
        comp = component(p)
        peers = [peer for rule in p["spec"].get("ingress", []) for peer in rule.get("from", [])]
        rep.check(all(peer for peer in peers), where, "an empty peer admits everyone")
        if comp in BACKENDS:
            for peer in peers:
                ns = peer.get("namespaceSelector")
                pod = peer.get("podSelector", {}).get("matchLabels", {})
                rep.check(pod.get("app.kubernetes.io/name") != "traefik", where,
                          "the edge must not reach a backing server")
                if ns is not None:
                    rep.check(bool(ns.get("matchLabels")), where, "admits pods of every namespace")
        if comp in ("analytics", "migrate"):
            for peer in peers:
                pod = peer.get("podSelector", {}).get("matchLabels", {})
                rep.check(pod.get("app.kubernetes.io/name") != "traefik", where,
                          f"the edge must not reach {comp}")
    # The configs the servers get are the committed ones.
    for cm in by_kind(docs, "ConfigMap"):
        data = cm.get("data", {})
        if "auth.conf" in data:
            rep.check(data["auth.conf"] == NATS_AUTH.read_text(), f"{name}: {ident(cm)}",
                      "auth.conf differs from config/nats/auth.conf (copy it over)")
        if "acl.conf.template" in data:
            rep.check(data["acl.conf.template"] == VALKEY_ACL.read_text(), f"{name}: {ident(cm)}",
                      "acl.conf.template differs from config/valkey/acl.conf (copy it over)")
        if "nats.conf" in data:
            rep.check("include ./auth.conf" in data["nats.conf"] and "auth.conf" in data,
                      f"{name}: {ident(cm)}", "nats.conf does not include the users (auth.conf)")
    bundled_nats = any(component(s) == "nats" for s in by_kind(docs, "StatefulSet"))
    if bundled_nats:
        for dep in by_kind(docs, "Deployment"):
            svc = component(dep)
            if svc not in SERVICES:
                continue
            env = {e["name"]: e for e in pod_spec(dep)["containers"][0].get("env", [])}
            url = env.get("NATS_URL", {}).get("value", "")
            rep.check(url.startswith(f"nats://{svc}:$(SHORTLINE_NATS_PASSWORD)@"), f"{name}: {ident(dep)}",
                      f"NATS_URL does not log in as the {svc} user: {url!r}")
            rep.check("secretKeyRef" in env.get("SHORTLINE_NATS_PASSWORD", {}).get("valueFrom", {}),
                      f"{name}: {ident(dep)}", "the NATS password does not come from a Secret")


# ---------------------------------------------------------------------------------- parity


def normalized(obj: dict) -> dict:
    o = copy.deepcopy(obj)

    def clean_meta(meta: dict) -> None:
        for k in list(meta.get("labels", {})):
            if k in RENDERER_LABELS:
                del meta["labels"][k]
        for k in list(meta.get("annotations", {})):
            if k.startswith(RENDERER_ANNOTATION_PREFIXES):
                del meta["annotations"][k]
        for k in ("labels", "annotations"):
            if k in meta and not meta[k]:
                del meta[k]

    clean_meta(o["metadata"])
    tmpl = o.get("spec", {}).get("template", {})
    if "metadata" in tmpl:
        clean_meta(tmpl["metadata"])
    for vct in o.get("spec", {}).get("volumeClaimTemplates", []):
        clean_meta(vct.get("metadata", {}))
    o["metadata"].pop("namespace", None)
    if o["kind"] == "ConfigMap":
        # Compare configuration files by their content, not their comments or layout.
        for k, v in o.get("data", {}).items():
            if "\n" in v:
                o["data"][k] = [ln.strip() for ln in v.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    o.pop("metadata")
    return o


def diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: only in the second")
            elif k not in b:
                out.append(f"{path}.{k}: only in the first")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def check_parity(a_name: str, a: list[dict], b_name: str, b: list[dict], rep: Report,
                 external: dict[str, set[str]]) -> None:
    skip = {"Namespace"}  # helm installs into a namespace; it does not own it

    def keep(d: dict, other: str) -> bool:
        # A Secret one side creates and the other expects to exist (the chart generates the
        # credentials; the plain manifests document creating them) is the same system.
        if d["kind"] == "Secret" and d["metadata"]["name"] in external.get(other, set()):
            return False
        return d["kind"] not in skip

    ka = {(d["kind"], d["metadata"]["name"]): d for d in a if keep(d, b_name)}
    kb = {(d["kind"], d["metadata"]["name"]): d for d in b if keep(d, a_name)}
    where = f"parity {a_name} ~ {b_name}"
    rep.check(set(ka) == set(kb), where,
              f"objects only in {a_name}: {sorted(set(ka) - set(kb))}; only in {b_name}: {sorted(set(kb) - set(ka))}")
    for key in sorted(set(ka) & set(kb)):
        d = diff(normalized(ka[key]), normalized(kb[key]))
        rep.check(not d, f"{where}: {key[0]}/{key[1]}", "\n    " + "\n    ".join(d[:12]))


# --------------------------------------------------------------------------------- compose


def check_compose(path: Path, rep: Report) -> None:
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    where = path.name
    want = {"postgres", "valkey", "nats", "migrate", "api", "redirect", "analytics", "edge",
            "prometheus", "alertmanager", "grafana"}
    rep.check(want <= set(services), where, f"missing services: {sorted(want - set(services))}")
    rep.check(services.get("redirect", {}).get("deploy", {}).get("replicas") == 2, where,
              "redirect does not run 2 replicas")
    for name, svc in services.items():
        rep.check("restart" in svc, f"{where}: {name}", "no restart policy")
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                rep.check((ROOT / src).exists(), f"{where}: {name}", f"bind-mounted {src} does not exist")
    for name in ("postgres", "valkey", "nats", "edge", "prometheus", "alertmanager", "grafana"):
        rep.check("healthcheck" in services.get(name, {}), f"{where}: {name}", "no healthcheck")
    prom = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    scraped = json.dumps(prom.get("scrape_configs", []))
    for svc in SERVICES:
        rep.check(f'"{svc}"' in scraped, "monitoring/prometheus/prometheus.yml", f"does not scrape {svc}")


# ------------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-versions", default="1.31,1.35")
    ap.add_argument("--render", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--parity", action="append", default=[], metavar="A:B")
    ap.add_argument("--external-secret", action="append", default=[], metavar="RENDER=SECRET",
                    help="a Secret the render expects to exist already")
    ap.add_argument("--min-postgres-instances", type=int, default=3)
    ap.add_argument("--compose", type=Path)
    args = ap.parse_args()

    versions = [v.strip() for v in args.k8s_versions.split(",") if v.strip()]
    renders: dict[str, list[dict]] = {}
    for item in args.render:
        name, _, file = item.partition("=")
        renders[name] = load_stream(Path(file))
    external: dict[str, set[str]] = {}
    for item in args.external_secret:
        name, _, secret = item.partition("=")
        external.setdefault(name, set()).add(secret)

    rep = Report()
    for name, docs in renders.items():
        before = len(rep.errors)
        check_schemas(name, docs, versions, rep)
        check_references(name, docs, external.get(name, set()), rep)
        check_policy(name, docs, rep)
        if by_kind(docs, "IngressRoute"):
            check_edge(name, docs, rep)
        check_backends(name, docs, args.min_postgres_instances, rep)
        check_access(name, docs, rep)
        check_alert_rules(name, docs, rep)
        kinds = sorted({d["kind"] for d in docs})
        status = "ok" if len(rep.errors) == before else f"{len(rep.errors) - before} problem(s)"
        print(f"  {name}: {len(docs)} objects ({', '.join(kinds)}): {status}")
    for pair in args.parity:
        a, _, b = pair.partition(":")
        before = len(rep.errors)
        check_parity(a, renders[a], b, renders[b], rep, external)
        print(f"  parity {a} ~ {b}: {'ok' if len(rep.errors) == before else 'differs'}")
    check_compose_edge(rep)
    if args.compose:
        before = len(rep.errors)
        check_compose(args.compose, rep)
        print(f"  compose.yml (services, mounts, health checks): {'ok' if len(rep.errors) == before else 'problems'}")

    for e in rep.errors:
        print(f"FAIL {e}", file=sys.stderr)
    # The plain closing line CI logs read: every check counts once.
    print(f"deploy: {rep.checks - len(rep.errors)} passed, {len(rep.errors)} failed")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
