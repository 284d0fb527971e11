#!/usr/bin/python3
"""Check the deployment files for broken references (make test runs it
through tests/test_deploy.c; run it after editing them):

    check-deploy.py [ROOT]        ROOT: the source tree (default: this script's)

docker/k8s/ (the resources its kustomization.yaml lists):
  - every document has apiVersion, kind, metadata.name and the namespace;
  - a Deployment's selector matches its own pod template;
  - a Service selects exactly one Deployment's pods, and each targetPort is a
    port of that pod's container;
  - every PersistentVolumeClaim and Secret a pod uses exists (a Secret may come
    from the kustomization's secretGenerator), and so does every key it takes;
  - the daemon's mounted secrets hold every file docker/ppxd.conf and the
    HEALTHCHECK (docker/ppxd-healthcheck) read;
  - a simulator's PPX_DAEMON names a Service port that leads to the daemon's
    --sim-listen port (ppxd.conf);
  - the autoscaler and NetworkPolicy select what exists.
docker/compose.yaml: the secrets, networks and volumes services use are
declared; the daemon's secrets hold ppxd.conf's files; PPX_DAEMON is the
daemon's service name on a shared network and its --sim-listen port; the
published port leads to the --serve port; the simulators' network is
internal.
Prints each problem and exits 1, or prints a summary and exits 0."""
import os
import re
import shlex
import sys

import yaml

errors = []
checked = [0]


def err(where, msg):
    errors.append(f"{where}: {msg}")


def ok():
    checked[0] += 1


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def conf_values(path):
    """ppxd.conf: key -> list of values (keys repeat)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def port_of(endpoint):
    m = re.match(r"^tcp://(\[[^\]]*\]|[^:/]*):(\d+)$", endpoint)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def health_files(root):
    """The /run/secrets/... defaults the HEALTHCHECK script reads."""
    with open(os.path.join(root, "docker", "ppxd-healthcheck")) as f:
        return sorted(set(re.findall(r"/run/secrets/[A-Za-z0-9_.-]+", f.read())))


def secret_files(conf):
    return [v for k in ("curve-secret", "curve-allow", "curve-admin") for v in conf.get(k, [])]


def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


# ---- Kubernetes ---------------------------------------------------------------


def pod_spec(d):
    return d.get("spec", {}).get("template", {}).get("spec", {})


def check_k8s(root, conf):
    kdir = os.path.join(root, "docker", "k8s")
    kust = load_all(os.path.join(kdir, "kustomization.yaml"))[0]
    ns = kust.get("namespace")
    docs = []
    for r in kust.get("resources", []):
        p = os.path.join(kdir, r)
        if not os.path.exists(p):
            err("kustomization.yaml", f"resource {r} does not exist")
            continue
        for d in load_all(p):
            where = f"{r}: {d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
            if not all(d.get(k) for k in ("apiVersion", "kind")) or not (d.get("metadata") or {}).get("name"):
                err(where, "needs apiVersion, kind and metadata.name")
                continue
            if d["kind"] != "Namespace" and ns and d["metadata"].get("namespace", ns) != ns:
                err(where, f"namespace {d['metadata'].get('namespace')}, the kustomization's is {ns}")
            docs.append((where, d))
            ok()
    by_kind = {}
    for where, d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = (where, d)
    deps = by_kind.get("Deployment", {})
    if ns and ns not in by_kind.get("Namespace", {}):
        err("kustomization.yaml", f"namespace {ns} has no Namespace resource")

    # Secrets: manifests and the generator; name -> set of keys.
    secrets = {}
    for name, (_, d) in by_kind.get("Secret", {}).items():
        secrets[name] = set(d.get("data", {}) or {}) | set(d.get("stringData", {}) or {})
    for g in kust.get("secretGenerator", []) or []:
        keys = set()
        for f in g.get("files", []) or []:
            keys.add(f.split("=", 1)[0] if "=" in f else os.path.basename(f))
        keys |= {lit.split("=", 1)[0] for lit in g.get("literals", []) or []}
        secrets[g["name"]] = keys
        if not (g.get("options") or {}).get("disableNameSuffixHash"):
            err("kustomization.yaml", f"secretGenerator {g['name']}: without disableNameSuffixHash the name changes")

    # Deployments.
    for name, (where, d) in deps.items():
        sel = d.get("spec", {}).get("selector", {}).get("matchLabels", {})
        labels = d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        if not subset(sel, labels):
            err(where, f"selector {sel} does not match its pod labels {labels}")
        ok()
        spec = pod_spec(d)
        vols = {v["name"]: v for v in spec.get("volumes", []) or []}
        for c in spec.get("containers", []):
            for m in c.get("volumeMounts", []) or []:
                if m["name"] not in vols:
                    err(where, f"container {c['name']} mounts undefined volume {m['name']}")
                ok()
        for v in vols.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"].get("claimName")
                if claim not in by_kind.get("PersistentVolumeClaim", {}):
                    err(where, f"volume {v['name']}: no PersistentVolumeClaim {claim}")
                ok()
            if "secret" in v:
                sname = v["secret"].get("secretName")
                if sname not in secrets:
                    err(where, f"volume {v['name']}: no Secret {sname} (manifest or secretGenerator)")
                else:
                    for it in v["secret"].get("items", []) or []:
                        if it["key"] not in secrets[sname]:
                            err(where, f"volume {v['name']}: Secret {sname} has no key {it['key']}")
                        ok()
                ok()

    # Which Deployment is the daemon: the one whose args load ppxd.conf.
    daemon = None
    for name, (where, d) in deps.items():
        for c in pod_spec(d).get("containers", []):
            if "/etc/ppxd/ppxd.conf" in (c.get("args") or []) + (c.get("command") or []):
                daemon = (name, where, d, c)
    if not daemon:
        err("docker/k8s", "no Deployment runs the daemon with --config /etc/ppxd/ppxd.conf")
        return
    dname, dwhere, dd, dc = daemon

    def mounted_files(d, c):
        """Paths the secret volumes put in container c."""
        vols = {v["name"]: v for v in pod_spec(d).get("volumes", []) or []}
        out = set()
        for m in c.get("volumeMounts", []) or []:
            v = vols.get(m["name"], {})
            if "secret" not in v:
                continue
            items = v["secret"].get("items")
            keys = [it["path"] for it in items] if items else sorted(secrets.get(v["secret"].get("secretName"), ()))
            out |= {os.path.join(m["mountPath"], k) for k in keys}
        return out

    files = mounted_files(dd, dc)
    for f in secret_files(conf) + health_files(root):
        if f not in files:
            err(dwhere, f"{f} (read by ppxd.conf or the HEALTHCHECK) is not mounted from a Secret")
        ok()

    def container_ports(d):
        out = {}
        for c in pod_spec(d).get("containers", []):
            for p in c.get("ports", []) or []:
                out[p["containerPort"]] = p["containerPort"]
                if p.get("name"):
                    out[p["name"]] = p["containerPort"]
        return out

    # Services: each selects one Deployment; targetPorts exist.
    svc_target = {}  # (service, port) -> (deployment, container port)
    for name, (where, s) in by_kind.get("Service", {}).items():
        sel = s.get("spec", {}).get("selector", {})
        hits = [n for n, (_, d) in deps.items()
                if subset(sel, d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}))]
        if len(hits) != 1:
            err(where, f"selector {sel} selects {len(hits)} Deployments ({', '.join(hits) or 'none'}), wanted 1")
            continue
        ports = container_ports(deps[hits[0]][1])
        for p in s.get("spec", {}).get("ports", []):
            tp = p.get("targetPort", p["port"])
            if tp not in ports:
                err(where, f"port {p['port']}: targetPort {tp} is no container port of {hits[0]}")
            else:
                svc_target[(name, p["port"])] = (hits[0], ports[tp])
            ok()

    sim_port = [port_of(e)[1] for e in conf.get("sim-listen", [])]
    serve_port = [port_of(e)[1] for e in conf.get("serve", [])]
    cports = container_ports(dd)
    for p in sim_port + serve_port:
        if p not in cports.values():
            err(dwhere, f"ppxd.conf listens on {p}, not a containerPort of the daemon")
        ok()

    # Simulators: PPX_DAEMON -> Service -> the daemon's --sim-listen port.
    sims = 0
    for name, (where, d) in deps.items():
        for c in pod_spec(d).get("containers", []):
            env = {e["name"]: e.get("value") for e in c.get("env", []) or []}
            if "PPX_DAEMON" not in env:
                continue
            sims += 1
            host, port = port_of(env["PPX_DAEMON"] or "")
            svc = (host or "").split(".")[0]
            if (svc, port) not in svc_target:
                err(where, f"PPX_DAEMON {env['PPX_DAEMON']}: no Service {svc} with port {port}")
            else:
                dep, cport = svc_target[(svc, port)]
                if dep != dname or cport not in sim_port:
                    err(where, f"PPX_DAEMON {env['PPX_DAEMON']} leads to port {cport} of {dep}, "
                        f"not the daemon's --sim-listen port {sim_port}")
            ok()
    if not sims:
        err("docker/k8s", "no simulator Deployment (a container with PPX_DAEMON)")

    for name, (where, h) in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = h.get("spec", {}).get("scaleTargetRef", {})
        if ref.get("kind") != "Deployment" or ref.get("name") not in deps:
            err(where, f"scaleTargetRef {ref} is no Deployment here")
        lo, hi = h["spec"].get("minReplicas", 1), h["spec"].get("maxReplicas", 0)
        if not 1 <= lo <= hi:
            err(where, f"minReplicas {lo}, maxReplicas {hi}")
        ok()

    for name, (where, n) in by_kind.get("NetworkPolicy", {}).items():
        sel = n.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
        target = [d for _, d in deps.values() if subset(sel, d["spec"]["template"]["metadata"].get("labels", {}))]
        if not target:
            err(where, f"podSelector {sel} selects no Deployment")
            continue
        ports = container_ports(target[0])
        for rule in n.get("spec", {}).get("ingress", []) or []:
            for p in rule.get("ports", []) or []:
                if p.get("port") not in ports:
                    err(where, f"ingress port {p.get('port')} is not a port of the selected pods")
                ok()
            for f in rule.get("from", []) or []:
                fs = (f.get("podSelector") or {}).get("matchLabels")
                if fs is not None and not any(subset(fs, d["spec"]["template"]["metadata"].get("labels", {}))
                                              for _, d in deps.values()):
                    err(where, f"from podSelector {fs} selects no Deployment")
                ok()

    used = {c.get("image") for _, d in deps.values() for c in pod_spec(d).get("containers", [])}
    for im in kust.get("images", []) or []:
        if im["name"] not in used:
            err("kustomization.yaml", f"images: {im['name']} is used by no container")
        ok()


# ---- compose ------------------------------------------------------------------

def interpolate(node):
    """${VAR:-default} / ${VAR-default} / ${VAR} with the environment unset."""
    if isinstance(node, dict):
        return {interpolate(k): interpolate(v) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", node)
    return node


def names(x):
    if isinstance(x, dict):
        return list(x)
    return [e if isinstance(e, str) else e.get("source") for e in (x or [])]


def check_compose(root, conf):
    path = os.path.join(root, "docker", "compose.yaml")
    c = interpolate(load_all(path)[0])
    services = c.get("services", {})
    for top in ("secrets", "networks", "volumes"):
        declared = set(c.get(top) or {})
        for sname, s in services.items():
            for n in names(s.get(top)):
                if top == "volumes":
                    n = n.split(":", 1)[0]
                    if n.startswith((".", "/")):
                        continue
                if n not in declared:
                    err("compose.yaml", f"service {sname}: {top[:-1]} {n} is not declared")
                ok()
    for sname, spec in (c.get("secrets") or {}).items():
        if "file" not in spec and not spec.get("external"):
            err("compose.yaml", f"secret {sname} has no file")
    daemon = [n for n, s in services.items() if "/etc/ppxd/ppxd.conf" in str(s.get("command", ""))]
    if len(daemon) != 1:
        err("compose.yaml", f"{len(daemon)} services run ppxd daemon --config /etc/ppxd/ppxd.conf, wanted 1")
        return
    dn = daemon[0]
    ds = services[dn]
    files = {f"/run/secrets/{n}" for n in names(ds.get("secrets"))}
    for f in secret_files(conf) + health_files(root):
        if f not in files:
            err("compose.yaml", f"service {dn}: {f} (read by ppxd.conf or the HEALTHCHECK) is not a secret")
        ok()
    sim_port = [port_of(e)[1] for e in conf.get("sim-listen", [])]
    serve_port = [port_of(e)[1] for e in conf.get("serve", [])]
    for p in ds.get("ports", []) or []:
        inner = int(str(p).split(":")[-1].split("/")[0])
        if inner not in serve_port:
            err("compose.yaml", f"service {dn} publishes {p}, but ppxd.conf serves on {serve_port}")
        if inner in sim_port:
            err("compose.yaml", f"service {dn} publishes the simulators' port {inner}")
        ok()
    sims = 0
    for sname, s in services.items():
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if "PPX_DAEMON" not in env:
            continue
        sims += 1
        host, port = port_of(env["PPX_DAEMON"])
        if host != dn:
            err("compose.yaml", f"service {sname}: PPX_DAEMON host {host} is not the daemon service {dn}")
        if port not in sim_port:
            err("compose.yaml", f"service {sname}: PPX_DAEMON port {port}, ppxd.conf's --sim-listen is {sim_port}")
        shared = set(names(s.get("networks"))) & set(names(ds.get("networks")))
        if not shared:
            err("compose.yaml", f"service {sname} shares no network with {dn}")
        for n in names(s.get("networks")):
            if not ((c.get("networks") or {}).get(n) or {}).get("internal"):
                err("compose.yaml", f"service {sname}: network {n} is not internal (simulators need no way out)")
        ok()
    if not sims:
        err("compose.yaml", "no simulator service (one with PPX_DAEMON)")
    for sname, s in services.items():
        cmd = s.get("command")
        if isinstance(cmd, str):
            shlex.split(cmd)  # must split as compose splits it


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    conf = conf_values(os.path.join(root, "docker", "ppxd.conf"))
    for k in ("serve", "sim-listen", "data-dir"):
        if k not in conf:
            err("ppxd.conf", f"no {k}")
    try:
        check_k8s(root, conf)
        check_compose(root, conf)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as e:
        err("check-deploy", f"cannot read the files: {type(e).__name__}: {e}")
    for e in errors:
        print(f"check-deploy: {e}", file=sys.stderr)
    if errors:
        print(f"check-deploy: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-deploy: docker/k8s and docker/compose.yaml: {checked[0]} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
