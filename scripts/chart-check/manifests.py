"""Helpers of scripts/chart-check.sh that read rendered manifests and the chart's files.

  split RENDER OUTDIR       core.yaml (for kubernetes-validate) and crs.json (Prometheus
                            Operator resources, for validate-crs.mjs) from one render
  env-names RENDER...       every SYNCROOT_* variable the renders set (ConfigMap keys
                            loaded through envFrom, and container env), one a line
  schema-names SCHEMA       SYNCROOT_<NAME> of every setting values.schema.json accepts
                            under `config`
  metrics CONTRACT FILE...  every syncroot_* metric FILE reads is one CONTRACT lists
  compose-roles COMPOSE     each service of COMPOSE that runs a syncroot role, a line each:
                            the role, then its environment as NAME=VALUE words (shell-quoted)
"""

import json
import re
import shlex
import sys
from pathlib import Path

import yaml

CR_GROUP = "monitoring.coreos.com/"
ENV_NAME = re.compile(r"^SYNCROOT_[A-Z0-9_]+$")


def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def split(render, outdir):
    core, crs = [], []
    for d in docs(render):
        if "apiVersion" not in d or "kind" not in d:
            sys.exit(f"{render}: a manifest without apiVersion or kind: {d}")
        (crs if d["apiVersion"].startswith(CR_GROUP) else core).append(d)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    (out / "crs.json").write_text(json.dumps(crs))
    print(f"{len(core)} core {len(crs)} operator")


def pod_specs(d):
    spec = d.get("spec", {})
    if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec["template"]["spec"]
    elif d["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif d["kind"] == "Pod":
        yield spec


def env_names(renders):
    names = set()
    for render in renders:
        all_docs = docs(render)
        config_maps = {d["metadata"]["name"]: d for d in all_docs if d["kind"] == "ConfigMap"}
        for d in all_docs:
            for pod in pod_specs(d):
                for c in pod.get("initContainers", []) + pod.get("containers", []):
                    names.update(e["name"] for e in c.get("env", []))
                    for src in c.get("envFrom", []):
                        ref = src.get("configMapRef")
                        if ref:
                            names.update(config_maps[ref["name"]].get("data", {}))
    for n in sorted(n for n in names if n.startswith("SYNCROOT")):
        print(n)


def schema_names(schema):
    props = json.loads(Path(schema).read_text())["properties"]["config"]["properties"]
    for name in sorted(props):
        print(f"SYNCROOT_{name.upper()}")


def metrics(contract, files):
    # The contract is the template's opening comment.
    head = Path(contract).read_text().split("*/")[0]
    listed = set(re.findall(r"\b(syncroot_[a-z0-9_]+)\{", head))
    if not listed:
        sys.exit(f"{contract}: no metric listed")
    missing = set()
    for f in files:
        for m in re.findall(r"\b(syncroot_[a-z0-9_]+)", Path(f).read_text()):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            if m not in listed and base not in listed:
                missing.add(f"{f}: {m}")
    if missing:
        sys.exit("metrics not in the contract of " + contract + ":\n  " + "\n  ".join(sorted(missing)))
    print(f"{len(listed)} metrics in the contract; every one read is listed")


ROLES = ("api", "forwarder", "delivery", "webhooks", "dlq-worker", "subscriptions")


def compose_roles(compose):
    # YAML's merge keys (`<<: *syncroot`) are resolved by the loader, as Compose does.
    services = yaml.safe_load(Path(compose).read_text())["services"]
    found = 0
    for name, svc in services.items():
        command = svc.get("command") or []
        if not command or command[0] not in ROLES:
            continue
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        words = [shlex.quote(f"{k}={'' if v is None else v}") for k, v in env.items()]
        print(command[0], " ".join(words))
        found += 1
    if found < len(ROLES):
        sys.exit(f"{compose}: {found} services run a syncroot role, expected {len(ROLES)}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "split":
        split(*args)
    elif cmd == "env-names":
        env_names(args)
    elif cmd == "schema-names":
        schema_names(*args)
    elif cmd == "metrics":
        metrics(args[0], args[1:])
    elif cmd == "compose-roles":
        compose_roles(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
