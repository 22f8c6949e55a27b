#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes/openoes.yaml.

1. Every document against the Kubernetes JSON schemas (PyPI
   kubernetes-validate, strict: unknown fields are errors), for the
   Kubernetes version given (default 1.30).
2. What the schemas cannot say: native gRPC probes (readiness on "",
   liveness on "liveness"), resource requests, a preStop hook, and
   terminationGracePeriodSeconds covering preStop + shutdown.drain_delay +
   shutdown.grace_period; a PodDisruptionBudget selecting the Deployment's
   pods and leaving one of them up.

Usage: check_kubernetes.py [manifest] [--kubernetes-version X.Y]
Exit 1 on any finding.
"""
import argparse
import re
import sys

import kubernetes_validate
import yaml

parser = argparse.ArgumentParser()
parser.add_argument("manifest", nargs="?", default="deploy/kubernetes/openoes.yaml")
parser.add_argument("--kubernetes-version", default="1.30")
args = parser.parse_args()

failed = 0


def check(cond, what):
    global failed
    if cond:
        print(f"  ok   {what}")
    else:
        failed += 1
        print(f"  FAIL {what}")


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not m:
        raise ValueError(f"not a duration this check understands: {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": 60 * n}[unit]


docs = [d for d in yaml.safe_load_all(open(args.manifest)) if d]
for doc in docs:
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
        check(True, f"{name}: valid against the Kubernetes {args.kubernetes_version} schema (strict)")
    except kubernetes_validate.ValidationError as e:
        check(False, f"{name}: {e.message} at {'.'.join(map(str, e.path))}")

by_kind = {d["kind"]: d for d in docs}
dep = by_kind.get("Deployment")
pdb = by_kind.get("PodDisruptionBudget")
check(dep is not None, "a Deployment")
check(pdb is not None, "a PodDisruptionBudget")
if dep is None or pdb is None:
    sys.exit(1)

pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
port = next(p["containerPort"] for p in c["ports"] if p.get("name") == "grpc")
check(env.get("OPENOES__GRPC__LISTEN", "").endswith(f":{port}"), f"listens on the grpc port {port}")
ready, live = c.get("readinessProbe", {}), c.get("livenessProbe", {})
check(ready.get("grpc", {}).get("port") == port and ready["grpc"].get("service", "") == "",
      "readinessProbe: native grpc on health \"\"")
check(live.get("grpc", {}).get("port") == port and live["grpc"].get("service") == "liveness",
      "livenessProbe: native grpc on health \"liveness\"")
req = c.get("resources", {}).get("requests", {})
check("cpu" in req and "memory" in req, f"resource requests (cpu, memory): {req}")

pre = c.get("lifecycle", {}).get("preStop", {})
cmd = pre.get("exec", {}).get("command", [])
pre_s = int(cmd[-1]) if cmd[:1] == ["/bin/sleep"] else pre.get("sleep", {}).get("seconds")
check(pre_s is not None, f"preStop sleeps ({pre_s}s)")
drain = seconds(env.get("OPENOES__SHUTDOWN__DRAIN_DELAY", "0s"))
grace = seconds(env.get("OPENOES__SHUTDOWN__GRACE_PERIOD", "10s"))
tgps = pod.get("terminationGracePeriodSeconds", 30)
need = (pre_s or 0) + drain + grace
check(tgps > need,
      f"terminationGracePeriodSeconds {tgps} > preStop {pre_s}s + drain_delay {drain}s + grace_period {grace}s = {need}s")

sel = pdb["spec"]["selector"]["matchLabels"]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(all(labels.get(k) == v for k, v in sel.items()), f"the PDB selects the Deployment's pods ({sel})")
replicas = dep["spec"].get("replicas", 1)
min_av = pdb["spec"].get("minAvailable")
check(isinstance(min_av, int) and 0 < min_av < replicas,
      f"the PDB keeps {min_av} of {replicas} up and still lets a node drain")

sc = c.get("securityContext", {})
check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "runAsNonRoot")
check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
      "read-only root, no privilege escalation")

print(f"kubernetes manifest: {'all checks passed' if not failed else f'{failed} FAILED'}")
sys.exit(1 if failed else 0)
