"""deploy/ agrees with the binary (no container engine runs here: the files are parsed).

The Dockerfile, the compose files, the Kubernetes manifests, the systemd unit and docs/DEPLOY.md may
only use `serve` flags and STEPAUDIO_* variables that `stepaudio serve --help` lists; ports, probe
paths, Redis and backend URLs must agree between the files; the probes must hit real routes, and
the liveness probe one that needs no key (checked on a real `serve`, started with each file's
settings and a missing model: it listens at once, /readyz answers 503 not_ready); the user is not
root, the model read-only, the database on a writable path; the image installs every library the
binary links; the autoscaler's metric is one that GET /metrics serves. ctest label "deploy", ~2 s.
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import requests
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import BIN, ROOT, Server  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
DOC = os.path.join(ROOT, "docs", "DEPLOY.md")
ENV_RE = re.compile(r"\bSTEPAUDIO_[A-Z0-9_]*[A-Z0-9]\b")
# Shared by the server with other nodes or reached over the network: never passed to the throwaway
# `serve` processes of this test (their names are still checked against --help).
REMOTE_ENV = {"STEPAUDIO_REDIS", "STEPAUDIO_BACKEND", "STEPAUDIO_BACKEND_KEY"}
# Library variables (README "Environment"), not serve options: allowed in docs/DEPLOY.md only.
LIBRARY_ENV = {"STEPAUDIO_ISA", "STEPAUDIO_DNNL", "STEPAUDIO_LOG"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------- what the binary and server say

@pytest.fixture(scope="module")
def serve_help():
    """{flag: envname or None} and the default port, from `stepaudio serve --help`."""
    if not os.access(BIN, os.X_OK):
        pytest.skip("no binary at %s (build stepaudio-cli or set STEPAUDIO_BIN)" % BIN)
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    flags = {}
    for m in re.finditer(r"^\s+(?:-\w,)?(--[a-z0-9-]+)[^\n(]*(?:\(Env:(\w+)\))?", out.stdout, re.M):
        flags[m.group(1)] = m.group(2)
    assert "--port" in flags and flags["--port"] == "STEPAUDIO_PORT", out.stdout
    port = re.search(r"TCP port \(default (\d+)", out.stdout)
    return {"flags": flags, "env": {e for e in flags.values() if e}, "port": int(port.group(1))}


@pytest.fixture(scope="module")
def routes():
    """Real paths (Routes::route_label's list) and the open ones (handled before authenticate)."""
    src = read(os.path.join(ROOT, "server", "routes.cpp"))
    fixed = re.search(r"kFixed\[\]\s*=\s*\{(.*?)\};", src, re.S)
    assert fixed, "server/routes.cpp: no kFixed route list"
    paths = set(re.findall(r'"(/[^"]*)"', fixed.group(1)))
    handle = src[src.index("void Routes::handle("):]
    before_auth = handle[:handle.index("authenticate(")]
    open_paths = set(re.findall(r'p == "(/[^"]*)"', before_auth))
    assert "/healthz" in open_paths and "/readyz" in paths
    return {"all": paths, "open": open_paths}


def declared_metrics():
    src = read(os.path.join(ROOT, "server", "app.cpp"))
    found = re.findall(r'declare_(gauge|counter|histogram)\(\s*"(\w+)"', src)
    return {name: kind for kind, name in found}


# ---------------------------------------------------------------- file parsers

def parse_dockerfile(path):
    """Stages: [{"from", "as", "ins": [(INSTRUCTION, text)]}], ARG defaults substituted in FROM."""
    lines, cur = [], ""
    for raw in read(path).splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not cur):
            continue  # comment lines are dropped, also inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    args, stages = {}, []
    for line in lines:
        ins, _, text = line.partition(" ")
        ins, text = ins.upper(), text.strip()
        if ins == "ARG" and not stages:
            k, _, v = text.partition("=")
            args[k] = v
        elif ins == "FROM":
            parts = text.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), parts[0])
            stages.append({"from": image, "as": parts[2] if len(parts) > 2 else None, "ins": []})
        else:
            stages[-1]["ins"].append((ins, text))
    return stages


def instructions(stage, name):
    return [t for i, t in stage["ins"] if i == name]


def dockerfile_env(stage):
    env = {}
    for text in instructions(stage, "ENV"):
        for tok in shlex.split(text):
            k, _, v = tok.partition("=")
            env[k] = v
    return env


def apt_installs(stage):
    pkgs = []
    for text in instructions(stage, "RUN"):
        for cmd in re.split(r"&&|;", text):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def parse_unit(path):
    """[(section, key, value)] in order (systemd keys may repeat)."""
    out, section = [], None
    for line in read(path).splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def parse_env_file(path):
    env = {}
    for line in read(path).splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            k, _, v = s.partition("=")
            env[k.strip()] = v.strip().strip('"')
    return env


def yaml_docs(pattern):
    docs = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        docs += [(path, d) for d in yaml.safe_load_all(read(path)) if d]
    return docs


def serve_flags(argv):
    """The --flags of a `stepaudio serve` command line (after the word serve when it is there)."""
    argv = [str(a) for a in argv]
    if "serve" in argv:
        argv = argv[argv.index("serve") + 1:]
    return {m.group(0) for m in (re.match(r"--[a-z0-9][a-z0-9-]*", a) for a in argv) if m}


def url_of(command):
    m = re.search(r"https?://[^\s\"']+", " ".join(command))
    return urlparse(m.group(0)) if m else None


def interpolate(v):
    """Compose's ${VAR:-default} with nothing set: the default."""
    if isinstance(v, dict):
        return {k: interpolate(x) for k, x in v.items()}
    if isinstance(v, list):
        return [interpolate(x) for x in v]
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", v) if isinstance(v, str) else v


def compose():
    base = interpolate(yaml.safe_load(read(os.path.join(DEPLOY, "compose.yaml"))))
    gpu = interpolate(yaml.safe_load(read(os.path.join(DEPLOY, "compose.gpu.yaml"))))
    return base, gpu


def compose_nodes(base):
    """The services that run our image (built from deploy/Dockerfile)."""
    return {n: s for n, s in base["services"].items()
            if (s.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"}


def k8s_objects():
    return yaml_docs(os.path.join(K8S, "**", "*.yaml"))


def find(objs, kind, name=None):
    got = [d for _, d in objs if d.get("kind") == kind and
           (name is None or d["metadata"]["name"] == name)]
    assert got, "deploy/k8s: no %s %s" % (kind, name or "")
    return got


def stepaudio_deployment(objs):
    return find(objs, "Deployment", "stepaudio")[0]


def k8s_env(objs, container):
    env = {}
    for src in container.get("envFrom", []):
        name = src["configMapRef"]["name"]
        env.update(find(objs, "ConfigMap", name)[0]["data"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "<from %s>" % list(e.get("valueFrom", {}))[0])
    return env


def container_port(container, port):
    """A probe's or Service's port (name or number) as the container's number."""
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    raise AssertionError("port %r is not a port of container %s" % (port, container["name"]))


def probe_target(container, probe):
    """(path, port, sends_key) of an httpGet or `curl URL` exec probe."""
    if "httpGet" in probe:
        h = probe["httpGet"]
        key = any(x["name"].lower() == "authorization" for x in h.get("httpHeaders", []))
        return h["path"], container_port(container, h["port"]), key
    cmd = probe["exec"]["command"]
    u = url_of(cmd)
    assert u, "probe %r has no URL" % cmd
    return u.path, u.port, "Authorization: Bearer" in " ".join(cmd)


# ---------------------------------------------------------------- names agree with --help

def all_deploy_files():
    return [p for p in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True)
            if os.path.isfile(p)] + [os.path.join(ROOT, ".dockerignore")]


def test_every_stepaudio_variable_is_a_serve_option(serve_help):
    unknown = {}
    for path in all_deploy_files() + [DOC]:
        allowed = serve_help["env"] | (LIBRARY_ENV if path == DOC else set())
        for name in set(ENV_RE.findall(read(path))) - allowed:
            unknown.setdefault(name, []).append(rel(path))
    assert not unknown, "not listed by `stepaudio serve --help`: %s" % unknown


def used_serve_flags():
    uses = []  # (where, flags)
    stages = parse_dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    for text in instructions(stages[-1], "ENTRYPOINT") + instructions(stages[-1], "CMD"):
        uses.append(("deploy/Dockerfile", serve_flags(yaml.safe_load(text))))
    base, gpu = compose()
    for f, doc in (("compose.yaml", base), ("compose.gpu.yaml", gpu)):
        for name in compose_nodes(base):
            svc = doc["services"].get(name, {})
            for key in ("command", "entrypoint"):
                v = svc.get(key) or []
                uses.append(("deploy/%s %s" % (f, name),
                             serve_flags(shlex.split(v) if isinstance(v, str) else v)))
    d = stepaudio_deployment(k8s_objects())
    for c in d["spec"]["template"]["spec"]["containers"]:
        argv = c.get("command", []) + c.get("args", [])
        uses.append(("deploy/k8s " + c["name"], serve_flags(argv)))
    unit = parse_unit(os.path.join(DEPLOY, "systemd", "stepaudio.service"))
    for _, k, v in unit:
        if k == "ExecStart":
            uses.append(("deploy/systemd ExecStart", serve_flags(shlex.split(v))))
    # docs/DEPLOY.md: every `stepaudio serve ...` command line (with its \ continuations)
    text = re.sub(r"\\\n", " ", read(DOC))
    for line in text.splitlines():
        if re.search(r"stepaudio serve\b", line):
            uses.append(("docs/DEPLOY.md", serve_flags(line.split())))
    return uses


def test_every_serve_flag_exists(serve_help):
    uses = used_serve_flags()
    assert any(flags for _, flags in uses), "no serve flags found: the parser is broken"
    bad = {where: sorted(flags - set(serve_help["flags"])) for where, flags in uses
           if flags - set(serve_help["flags"])}
    assert not bad, "flags `stepaudio serve --help` does not list: %s" % bad


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile(serve_help, routes):
    path = os.path.join(DEPLOY, "Dockerfile")
    stages = parse_dockerfile(path)
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    assert all(s["from"] == "debian:bookworm-slim" for s in stages), [s["from"] for s in stages]
    build, final = stages[0], stages[-1]
    assert build["as"], "the build stage needs a name for COPY --from"
    runs = " ".join(instructions(build, "RUN"))
    assert "-DCMAKE_BUILD_TYPE=Release" in runs and "stepaudio-cli" in runs, runs
    assert "add_executable(stepaudio-cli" in read(os.path.join(ROOT, "CMakeLists.txt"))
    assert any("--from=" + build["as"] in t for t in instructions(final, "COPY"))
    assert not [p for p in apt_installs(final) if p.endswith("-dev")], "runtime stage: no -dev"

    users = instructions(final, "USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root"), "USER must not be root"
    created = " ".join(instructions(final, "RUN"))
    assert re.search(r"useradd\b.*--uid %s\b" % re.escape(user), created), \
        "USER %s is not created by useradd --uid" % user

    env = dockerfile_env(final)
    port = int(env["STEPAUDIO_PORT"])
    assert [int(p.split("/")[0]) for p in instructions(final, "EXPOSE")] == [port]
    hc = instructions(final, "HEALTHCHECK")
    assert hc, "no HEALTHCHECK"
    u = url_of([hc[0].replace("${STEPAUDIO_PORT}", str(port))])
    assert u and u.port == port and u.path == "/healthz", hc[0]
    assert u.path in routes["open"], "HEALTHCHECK must use a route that needs no key"

    volumes = [v for t in instructions(final, "VOLUME") for v in yaml.safe_load(t)]
    model, db_dir = env["STEPAUDIO_MODEL"], os.path.dirname(env["STEPAUDIO_DB"])
    assert any(model.startswith(v + "/") for v in volumes), (model, volumes)
    assert db_dir in volumes, "the database's folder %s must be a VOLUME" % db_dir
    assert re.search(r"chown [^ ]*stepaudio[^ ]* %s\b" % re.escape(db_dir), created), \
        "%s must belong to the service user" % db_dir
    entry = yaml.safe_load(instructions(final, "ENTRYPOINT")[-1])
    assert entry[-1] == "serve", entry


def test_image_installs_every_linked_library():
    """Each library the binary needs (readelf NEEDED) comes from a package the image installs."""
    if not (shutil.which("readelf") and shutil.which("dpkg-query") and shutil.which("ldd")):
        pytest.skip("needs readelf, ldd and dpkg (Debian)")
    if not os.access(BIN, os.X_OK):
        pytest.skip("no binary")
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(
        ["readelf", "-d", BIN], capture_output=True, text=True, check=True).stdout)
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
        ["ldd", BIN], capture_output=True, text=True, check=True).stdout, re.M))
    files = [os.path.realpath(where[n]) for n in needed if n in where]
    owners = subprocess.run(["dpkg", "-S"] + files, capture_output=True, text=True).stdout
    pkgs = {line.split(":")[0] for line in owners.splitlines() if ":" in line}
    assert pkgs, "dpkg -S found no owners of %s" % files
    base = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:bookworm-slim (apt needs them)
    sanitizer = re.compile(r"asan|ubsan|lsan|clang|llvm")
    image = set(apt_installs(parse_dockerfile(os.path.join(DEPLOY, "Dockerfile"))[-1]))
    missing = sorted(p for p in pkgs - base - image if not sanitizer.search(p))
    assert not missing, "deploy/Dockerfile's runtime stage lacks %s (the binary links them)" % (
        missing,)


# ---------------------------------------------------------------- compose

def volume_parts(v):
    parts = v.split(":")
    return parts[-2] if parts[-1] in ("ro", "rw") else parts[-1], parts[-1] == "ro"


def test_compose(serve_help, routes):
    base, gpu = compose()
    image_env = dockerfile_env(parse_dockerfile(os.path.join(DEPLOY, "Dockerfile"))[-1])
    nodes = compose_nodes(base)
    assert len(nodes) >= 2, "two API nodes"
    svcs = base["services"]
    redis = svcs["redis"]
    cmd = redis["command"]
    line = " ".join(cmd)
    assert "--appendonly yes" in line and "--appendfsync everysec" in line, "Redis AOF: " + line
    redis_port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else 6379
    assert any(volume_parts(v)[0] == "/data" for v in redis["volumes"]), "Redis data on a volume"
    host_ports = []
    for name, svc in nodes.items():
        env = dict(image_env, **svc.get("environment", {}))
        u = urlparse(env["STEPAUDIO_REDIS"])
        assert u.scheme == "redis" and u.hostname in svcs and (u.port or 6379) == redis_port, \
            "%s: STEPAUDIO_REDIS %s is not the redis service" % (name, env["STEPAUDIO_REDIS"])
        port = int(env["STEPAUDIO_PORT"])
        for p in svc["ports"]:
            host, _, inside = str(p).rpartition(":")
            assert int(inside) == port, "%s publishes %s, serves %d" % (name, p, port)
            host_ports.append(host)
        mounts = dict(volume_parts(v) for v in svc["volumes"])
        model_mount = [m for m in mounts if env["STEPAUDIO_MODEL"].startswith(m + "/")]
        assert model_mount and mounts[model_mount[0]], "%s: the model must be mounted :ro" % name
        assert mounts.get(os.path.dirname(env["STEPAUDIO_DB"])) is False, \
            "%s: the database folder must be a writable volume" % name
        keys = env["STEPAUDIO_API_KEYS"]
        assert keys.startswith("/run/secrets/") and keys.rsplit("/", 1)[1] in svc["secrets"]
        assert svc.get("read_only") is True and "/tmp" in svc.get("tmpfs", [])
        if "healthcheck" in svc:
            assert urlparse(" ".join(svc["healthcheck"]["test"])).path in routes["open"]
    assert len(set(host_ports)) == len(host_ports), "two nodes publish the same host port"

    vllm = [n for n, s in svcs.items() if "gpu" in s.get("profiles", [])]
    assert vllm, "an inference service under the gpu profile"
    v = svcs[vllm[0]]
    devices = v["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices), "GPU reservation"
    vport = int(v["command"][v["command"].index("--port") + 1])
    assert any(volume_parts(m)[1] for m in v["volumes"]), "vLLM's model mount read-only"
    assert set(gpu["services"]) <= set(nodes), "compose.gpu.yaml overrides the API nodes only"
    for name in nodes:
        b = urlparse(gpu["services"][name]["environment"]["STEPAUDIO_BACKEND"])
        assert (b.scheme, b.hostname, b.port, b.path) == ("openai", vllm[0], vport, "/v1"), \
            "%s: STEPAUDIO_BACKEND %s is not the vllm service" % (name, b.geturl())
        # serve refuses --model with --backend; an empty variable counts as unset
        assert gpu["services"][name]["environment"].get("STEPAUDIO_MODEL") == "", \
            "%s: a gateway (STEPAUDIO_BACKEND) must clear the image's STEPAUDIO_MODEL" % name


# ---------------------------------------------------------------- Kubernetes

def test_kubernetes(serve_help, routes):
    objs = k8s_objects()
    d = stepaudio_deployment(objs)
    pod = d["spec"]["template"]["spec"]
    c = [c for c in pod["containers"] if c["name"] == "stepaudio"][0]
    env = k8s_env(objs, c)
    port = int(env["STEPAUDIO_PORT"])
    assert port in [p["containerPort"] for p in c["ports"]], "containerPort != STEPAUDIO_PORT"

    ready = probe_target(c, c["readinessProbe"])
    live = probe_target(c, c["livenessProbe"])
    assert ready[0] == "/readyz" and live[0] == "/healthz", (ready, live)
    for path, p, key in (ready, live):
        assert path in routes["all"], "%s is not a route of server/routes.cpp" % path
        assert p == port, "probe on port %s, server on %d" % (p, port)
        assert key or path in routes["open"], "%s needs a key: the probe sends none" % path
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        if "exec" in probe:  # its key comes from the environment, not from the pod spec
            var = re.search(r"Bearer \$\{?(\w+)", " ".join(probe["exec"]["command"])).group(1)
            assert var in env and env[var].startswith("<from secretKeyRef"), var

    res = c["resources"]
    for k in ("cpu", "memory"):
        assert k in res["requests"] and k in res["limits"], "requests and limits of " + k

    def gib(q):
        return float(q[:-2]) * {"Gi": 1, "Mi": 1 / 1024}[q[-2:]]
    assert gib(res["limits"]["memory"]) >= gib(res["requests"]["memory"]) >= 6, \
        "q4 weights 5.0 GB + requests in flight (docs/PERF.md)"
    threads = int(env["STEPAUDIO_THREADS"])
    assert threads == int(res["limits"]["cpu"]), \
        "STEPAUDIO_THREADS must equal the CPU limit (the engine does not read the cgroup quota)"

    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    model = [m for p, m in mounts.items() if env["STEPAUDIO_MODEL"].startswith(p + "/")]
    assert model and model[0].get("readOnly") is True, "model volumeMount readOnly"
    pvc = vols[model[0]["name"]].get("persistentVolumeClaim")
    assert pvc is None or pvc.get("readOnly") is True
    db = mounts.get(os.path.dirname(env["STEPAUDIO_DB"]))
    assert db and not db.get("readOnly"), "the database folder must be a writable mount"
    assert "/tmp" in mounts, "readOnlyRootFilesystem: SQLite's temporary files need /tmp"
    keys = [m for p, m in mounts.items() if env["STEPAUDIO_API_KEYS"].startswith(p + "/")]
    assert keys and "secret" in vols[keys[0]["name"]], "the API keys file comes from a Secret"
    secret = vols[keys[0]["name"]]["secret"]
    assert os.path.basename(env["STEPAUDIO_API_KEYS"]) in [i["path"] for i in secret["items"]]

    kust = yaml.safe_load(read(os.path.join(K8S, "kustomization.yaml")))
    for r in kust["resources"]:
        assert os.path.isfile(os.path.join(K8S, r)), r
    gen = {g["name"]: [f.split("=")[0] for f in g["files"]] for g in kust["secretGenerator"]}
    refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e]
    for ref in refs + [{"name": secret["secretName"], "key": i["key"]} for i in secret["items"]]:
        assert ref.get("optional") or ref["key"] in gen.get(ref["name"], []), ref

    svc = find(objs, "Service", "stepaudio")[0]
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector"
    assert all(labels.get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items())
    for p in svc["spec"]["ports"]:
        assert container_port(c, p["targetPort"]) == port

    hpa = find(objs, "HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 1
    m = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"][0]["pods"]["metric"]["name"]
    assert declared_metrics().get(m) == "gauge", "%s is not a gauge of server/app.cpp" % m

    # Redis: the URL names the Service, whose pods are the StatefulSet with AOF on a PVC
    u = urlparse(env["STEPAUDIO_REDIS"])
    rsvc = find(objs, "Service", u.hostname)[0]
    assert (u.port or 6379) in [p["port"] for p in rsvc["spec"]["ports"]]
    sts = [s for s in find(objs, "StatefulSet")
           if all(s["spec"]["template"]["metadata"]["labels"].get(k) == v
                  for k, v in rsvc["spec"]["selector"].items())]
    assert sts, "no StatefulSet behind Service %s" % u.hostname
    rc = sts[0]["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(rc.get("command", []) + rc.get("args", []))
    assert "--appendonly yes" in args and "--appendfsync everysec" in args
    claim = sts[0]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    data_dir = args.split("--dir ")[1].split()[0]
    assert {m["name"]: m["mountPath"] for m in rc["volumeMounts"]}.get(claim) == data_dir

    # the optional GPU backend named in the ConfigMap's comment is gpu/vllm.yaml's Service
    cm_text = read(os.path.join(K8S, "configmap.yaml"))
    b = urlparse(re.search(r"STEPAUDIO_BACKEND:\s*(\S+)", cm_text).group(1))
    vsvc = find(objs, "Service", b.hostname)[0]
    vdep = find(objs, "Deployment", b.hostname)[0]["spec"]["template"]["spec"]
    vc = vdep["containers"][0]
    vargs = vc["args"]
    assert b.scheme == "openai" and b.path == "/v1"
    assert int(vargs[vargs.index("--port") + 1]) == b.port == vsvc["spec"]["ports"][0]["port"]
    assert container_port(vc, vsvc["spec"]["ports"][0]["targetPort"]) == b.port
    assert "nvidia.com/gpu" in vc["resources"]["limits"]
    assert all(m.get("readOnly") for m in vc["volumeMounts"] if m["mountPath"] == "/models")


# ---------------------------------------------------------------- systemd

def test_systemd_unit(serve_help):
    unit = parse_unit(os.path.join(DEPLOY, "systemd", "stepaudio.service"))
    svc = {}
    for section, k, v in unit:
        if section == "Service":
            svc.setdefault(k, []).append(v)
    one = {k: v[-1] for k, v in svc.items()}
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "", "root", "0")
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                 ("Restart", "on-failure"), ("ProtectHome", "yes")):
        assert one.get(k) == v, "%s=%s expected" % (k, v)
    assert one.get("MemoryDenyWriteExecute") != "yes", "oneDNN's JIT needs W+X memory"
    assert "stepaudio serve" in one["ExecStart"]
    env = dict(v.split("=", 1) for v in svc.get("Environment", []))
    env_file = one["EnvironmentFile"].lstrip("-")
    assert env_file.startswith("/etc/stepaudio/")
    env.update(parse_env_file(os.path.join(DEPLOY, "systemd", os.path.basename(env_file))))
    writable = [p for k in ("ReadWritePaths",) for v in svc.get(k, []) for p in v.split()]
    writable += ["/var/lib/" + d for v in svc.get("StateDirectory", []) for d in v.split()]
    assert os.path.dirname(env["STEPAUDIO_DB"]) in writable, "the database must be writable"
    assert not any(env["STEPAUDIO_MODEL"].startswith(p) for p in writable), "model read-only"
    assert 0 < int(env["STEPAUDIO_PORT"]) < 65536


# ---------------------------------------------------------------- a real serve with each config

def configs():
    stages = parse_dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    base, _ = compose()
    image = dockerfile_env(stages[-1])
    out = {"Dockerfile": image}
    for name, svc in compose_nodes(base).items():
        env = dict(image, **{k: str(v) for k, v in svc.get("environment", {}).items()})
        out["compose " + name] = env
    objs = k8s_objects()
    c = stepaudio_deployment(objs)["spec"]["template"]["spec"]["containers"][0]
    out["k8s"] = {k: v for k, v in k8s_env(objs, c).items() if not v.startswith("<from")}
    unit = parse_unit(os.path.join(DEPLOY, "systemd", "stepaudio.service"))
    env = dict(v.split("=", 1) for _, k, v in unit if k == "Environment")
    env.update(parse_env_file(os.path.join(DEPLOY, "systemd", "stepaudio.env")))
    out["systemd"] = env
    return out


def test_configs_start_serve_and_probes_answer(serve_help, tmp_path):
    """Every file's settings are accepted by the binary; the k8s probes and HPA metric are real."""
    keyfile = tmp_path / "keys"
    key = "sk-deploy-test-0123456789"
    keyfile.write_text(key + "\n")
    for name, env in configs().items():
        assert env.get("STEPAUDIO_PORT"), name
        # Settings that point at this machine's paths, other hosts or its core count are replaced
        # (the command line wins over the environment); the rest is taken as the file says.
        env = {k: v for k, v in env.items() if k.startswith("STEPAUDIO_") and k not in REMOTE_ENV}
        assert int(env.get("STEPAUDIO_THREADS", "0")) >= 0
        env["STEPAUDIO_THREADS"] = "1"
        work = tmp_path / re.sub(r"\W", "_", name)
        work.mkdir()
        server = Server(work / "no-model", work, "--api-keys", keyfile, env=env, wait_ready=False)
        try:
            server.start()
        except RuntimeError as e:
            raise AssertionError("%s: serve refused its settings %s: %s" % (name, env, e))
        with server as s:
            r = requests.get(s.base + "/healthz", timeout=5)
            assert r.status_code == 200, (name, r.text)
            if name != "k8s":
                continue
            c = stepaudio_deployment(k8s_objects())["spec"]["template"]["spec"]["containers"][0]
            for probe, want in (("readinessProbe", 503), ("livenessProbe", 200)):
                path, _, sends_key = probe_target(c, c[probe])
                h = {"Authorization": "Bearer " + key} if sends_key else {}
                r = requests.get(s.base + path, headers=h, timeout=5)
                # no model here: ready must say not_ready (a real route that knows), live must
                # stay 200 (a loading or failed model must not get the pod killed)
                assert r.status_code == want, (probe, path, r.status_code, r.text)
                if want == 503:
                    assert r.json()["error"]["code"] == "not_ready"
            hpa = find(k8s_objects(), "HorizontalPodAutoscaler")[0]
            metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
            r = requests.get(s.base + "/metrics", headers={"Authorization": "Bearer " + key},
                             timeout=5)
            assert r.status_code == 200 and ("# TYPE %s gauge" % metric) in r.text, metric
