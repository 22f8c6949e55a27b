#!/usr/bin/env python3
"""Offline checks of deploy/compose.yaml (no container runtime needed): the
YAML parses, every depends_on and secret names something defined, every
secret file is under deploy/link/secrets/, and each `sh -c` command, with
compose's $$ unescaped, passes `sh -n`. Exit 1 on any finding."""
import subprocess
import sys

import yaml

path = sys.argv[1] if len(sys.argv) > 1 else "deploy/compose.yaml"
doc = yaml.safe_load(open(path))
failed = 0


def check(cond, what):
    global failed
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    failed += not cond


services, secrets = doc["services"], doc.get("secrets", {})
check({"m", "r", "acl", "wsp-gateway", "exchange-gateway"} <= set(services), f"services: {sorted(services)}")
for name, svc in services.items():
    deps = svc.get("depends_on", [])
    deps = list(deps) if isinstance(deps, (list, dict)) else []
    check(all(d in services for d in deps), f"{name}: depends_on {deps} defined")
    used = svc.get("secrets", [])
    check(all(s in secrets for s in used), f"{name}: secrets {used} defined")
    if svc.get("entrypoint") == ["sh", "-c"]:
        script = svc["command"][0].replace("$$", "$")
        r = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: its sh -c command parses {r.stderr.strip()}")
check(all(s["file"].startswith("./link/secrets/") for s in secrets.values()), "secret files under deploy/link/secrets/ (git-ignored)")
for gw, role in (("wsp-gateway", "wsp"), ("exchange-gateway", "exchange")):
    env = services[gw]["environment"]
    check(all(not k.endswith("__PASSWORD") for k in env), f"{gw}: passwords only as files (password_file)")
print(f"compose: {'all checks passed' if not failed else f'{failed} FAILED'}")
sys.exit(1 if failed else 0)
