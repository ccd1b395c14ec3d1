"""deploy/: the image, the compose file, the Kubernetes manifests and the systemd units run
real ``kms`` subcommands with real settings, web is probed on /healthz and /readyz, and
nothing runs as root.

Each checker returns a list of problems; the tests assert it is empty for the real files
and non-empty for deliberately broken copies, so a checker that checks nothing fails.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from kms.cli import build_parser
from kms.settings import SETTINGS_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"

#: Variables the manifests may set besides KMS_* settings: the metrics code reads the
#: first, libpq (psycopg) the second.
OTHER_VARIABLES = frozenset({"PROMETHEUS_MULTIPROC_DIR", "PGPASSWORD"})
#: Read by the client commands (kms/cli.py client_target); allowed in documentation only.
CLIENT_VARIABLES = frozenset({"KMS_URL", "KMS_TOKEN"})
#: What the image runs when a manifest gives no arguments (Dockerfile ENTRYPOINT + CMD).
IMAGE_ENTRYPOINT = ["kms"]
IMAGE_CMD = ["web"]
UID = 10001


# --- checkers --------------------------------------------------------------------------------


def kms_args_problem(args: list[str]) -> str | None:
    """None if ``kms ARGS`` parses with the real command-line parser, else why not."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = build_parser().parse_args(args)
    except SystemExit as exc:
        lines = err.getvalue().strip().splitlines()
        return f"`kms {' '.join(args)}` is refused ({exc.code}): {lines[-1] if lines else ''}"
    if not hasattr(ns, "func") and getattr(ns, "client", None) is None:
        return f"`kms {' '.join(args)}` names no command"
    return None


def argv_problem(argv: list[str], where: str) -> str | None:
    """``argv`` must run the kms command (``kms`` or ``/path/to/kms``) with valid arguments."""
    if not argv or Path(argv[0]).name != "kms":
        return f"{where}: runs {argv!r}, not the kms command"
    problem = kms_args_problem(argv[1:])
    return f"{where}: {problem}" if problem else None


def env_problems(names: list[str], where: str, *, strict: bool = True) -> list[str]:
    """KMS_* names must be settings; with ``strict``, other names must be in OTHER_VARIABLES."""
    problems = []
    for name in names:
        if name.startswith("KMS_"):
            if name not in SETTINGS_VARIABLES:
                problems.append(f"{where}: {name} is not a setting (kms/settings.py SETTINGS_VARIABLES)")
        elif strict and name not in OTHER_VARIABLES:
            problems.append(f"{where}: {name} is neither a KMS_ setting nor one of {sorted(OTHER_VARIABLES)}")
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(value: str, where: str, problems: list[str]) -> list[str]:
    try:
        parsed = json.loads(value)
    except ValueError:
        problems.append(f"{where} is not in exec (JSON) form: {value}")
        return []
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        problems.append(f"{where} is not a list of strings: {value}")
        return []
    return parsed


def dockerfile_env_names(instructions: list[tuple[str, str]]) -> list[str]:
    names = []
    for word, rest in instructions:
        if word == "ENV":
            for token in shlex.split(rest):
                if "=" in token:
                    names.append(token.split("=", 1)[0])
    return names


def dockerfile_problems(text: str) -> list[str]:
    problems: list[str] = []
    instructions = dockerfile_instructions(text)
    froms = [rest for word, rest in instructions if word == "FROM"]
    if len(froms) < 2:
        problems.append(f"Dockerfile has {len(froms)} FROM stage(s); want a multi-stage build")
    stages = {m.group(1).lower() for f in froms if (m := re.search(r"\bAS\s+(\S+)", f, re.I))}
    for word, rest in instructions:
        m = re.search(r"--from=(\S+)", rest) if word == "COPY" else None
        if m and m.group(1).lower() not in stages:
            problems.append(f"COPY --from={m.group(1)} names no stage")
    last_from = max((i for i, (w, _) in enumerate(instructions) if w == "FROM"), default=-1)
    final = instructions[last_from + 1 :]
    users = [rest for word, rest in final if word == "USER"]
    if not users:
        problems.append("the final stage has no USER: the container would run as root")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0"):
            problems.append(f"the final stage runs as {users[-1]}")
        elif user != str(UID):
            problems.append(f"USER {users[-1]}: want numeric uid {UID} (runAsNonRoot can verify it)")
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    cmd = [rest for word, rest in final if word == "CMD"]
    entrypoint = _exec_form(entry[-1], "ENTRYPOINT", problems) if entry else []
    command = _exec_form(cmd[-1], "CMD", problems) if cmd else []
    if entrypoint != IMAGE_ENTRYPOINT:
        problems.append(f"ENTRYPOINT is {entrypoint!r}, want {IMAGE_ENTRYPOINT!r}")
    if command != IMAGE_CMD:
        problems.append(f"CMD is {command!r}, want {IMAGE_CMD!r}")
    if (problem := argv_problem(entrypoint + command, "Dockerfile")) is not None:
        problems.append(problem)
    problems += env_problems(dockerfile_env_names(instructions), "Dockerfile ENV", strict=False)
    return problems


# compose ------------------------------------------------------------------------------------------


def _compose_env_names(service: dict[str, Any]) -> list[str]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return list(env)
    return [item.split("=", 1)[0] for item in env]


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)


def _as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_kms_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the kms image (built from deploy/Dockerfile)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc or str(svc.get("image", "")).split(":")[0].endswith("kms")
    }


def compose_argv(service: dict[str, Any]) -> list[str]:
    entrypoint = _as_argv(service["entrypoint"]) if "entrypoint" in service else IMAGE_ENTRYPOINT
    command = _as_argv(service["command"]) if "command" in service else IMAGE_CMD
    return entrypoint + command


def compose_problems(compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services = compose.get("services") or {}
    kms = compose_kms_services(compose)
    for name, svc in kms.items():
        if (problem := argv_problem(compose_argv(svc), f"compose service {name}")) is not None:
            problems.append(problem)
        problems += env_problems(_compose_env_names(svc), f"compose service {name}")
        if str(svc.get("user", "")).split(":")[0] in ("root", "0"):
            problems.append(f"compose service {name} runs as root")

    want = {
        "migrate": ("migrate", 1),
        "web": ("web", 2),
        "worker": ("worker", 2),
        "scheduler": ("scheduler", 1),
    }
    for name, (subcommand, replicas) in want.items():
        svc = kms.get(name)
        if svc is None:
            problems.append(f"compose: no kms service {name}")
            continue
        argv = compose_argv(svc)
        if argv[1:2] != [subcommand]:
            problems.append(f"compose service {name} runs {argv!r}, want `kms {subcommand}`")
        got = (svc.get("deploy") or {}).get("replicas", 1)
        if got != replicas:
            problems.append(f"compose service {name} has {got} replicas, want {replicas}")
        if name != "migrate":
            dep = (
                (svc.get("depends_on") or {}).get("migrate")
                if isinstance(svc.get("depends_on"), dict)
                else None
            )
            if not dep or dep.get("condition") != "service_completed_successfully":
                problems.append(f"compose service {name} does not wait for migrate to succeed")
        root_key = _compose_env(svc).get("KMS_ROOT_KEY", "")
        if name != "migrate" and not re.fullmatch(r"\$\{KMS_ROOT_KEY:\?[^}]*\}", root_key):
            problems.append(f"compose service {name}: KMS_ROOT_KEY must be ${{KMS_ROOT_KEY:?...}}")

    web_health = json.dumps((kms.get("web") or {}).get("healthcheck", {}))
    if "/readyz" not in web_health:
        problems.append("compose service web has no healthcheck on /readyz")
    if not any("postgres" in str(s.get("image", "")) for s in services.values()):
        problems.append("compose: no PostgreSQL service")
    redis = [s for s in services.values() if str(s.get("image", "")).startswith("redis")]
    if not redis:
        problems.append("compose: no Redis service")
    for svc in redis:
        argv = _as_argv(svc.get("command"))
        if not any(a == "--appendonly" and b == "yes" for a, b in itertools.pairwise(argv)):
            problems.append("compose: Redis runs without --appendonly yes")
    return problems


# Kubernetes ---------------------------------------------------------------------------------------


def load_k8s() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _component(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", obj["metadata"]["name"])


def k8s_argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: ``command`` replaces ENTRYPOINT, ``args`` replaces CMD (and
    a ``command`` without ``args`` drops the image's CMD)."""
    if "command" in container:
        return _as_argv(container["command"]) + _as_argv(container.get("args"))
    args = _as_argv(container["args"]) if "args" in container else IMAGE_CMD
    return IMAGE_ENTRYPOINT + args


def _port(probe: dict[str, Any], container: dict[str, Any]) -> Any:
    port = (probe.get("httpGet") or {}).get("port")
    for p in container.get("ports") or []:
        if port == p.get("name"):
            return p["containerPort"]
    return port


def probe_problems(deployment: dict[str, Any]) -> list[str]:
    problems = []
    name = deployment["metadata"]["name"]
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            probe = c.get(kind) or {}
            got = (probe.get("httpGet") or {}).get("path")
            if got != path:
                problems.append(f"{name}/{c['name']}: {kind} path is {got!r}, want {path}")
            elif _port(probe, c) != 8080:
                problems.append(f"{name}/{c['name']}: {kind} port is {_port(probe, c)!r}, want 8080")
    return problems


def pod_problems(obj: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> list[str]:
    """Commands, settings, resources and non-root for every container of a workload."""
    problems: list[str] = []
    spec = _pod_spec(obj)
    where = f"{obj['__file__']} {obj['kind']} {obj['metadata']['name']}"
    if spec is None:
        return problems
    pod_sc = spec.get("securityContext") or {}
    for c in spec.get("initContainers", []) + spec["containers"]:
        w = f"{where}/{c['name']}"
        if (problem := argv_problem(k8s_argv(c), w)) is not None:
            problems.append(problem)
        sc = {**pod_sc, **(c.get("securityContext") or {})}
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", UID) == 0:
            problems.append(f"{w}: not runAsNonRoot (or runAsUser 0)")
        if sc.get("runAsUser") not in (None, UID):
            problems.append(f"{w}: runAsUser {sc.get('runAsUser')}, the image's user is {UID}")
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{w}: allowPrivilegeEscalation is not false")
        requests = (c.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            problems.append(f"{w}: resources.requests lacks cpu or memory")
        names = [e["name"] for e in c.get("env") or []]
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            if ref is None:
                continue
            if ref["name"] not in configmaps:
                problems.append(f"{w}: envFrom ConfigMap {ref['name']} is not among the manifests")
            else:
                names += list(configmaps[ref["name"]].get("data") or {})
        problems += env_problems(names, w)
        for e in c.get("env") or []:
            if e["name"] in ("KMS_ROOT_KEY", "PGPASSWORD") and "secretKeyRef" not in (
                e.get("valueFrom") or {}
            ):
                problems.append(f"{w}: {e['name']} must come from a Secret (secretKeyRef)")
        runs = k8s_argv(c)[1:2]
        if runs and runs[0] in ("web", "worker", "scheduler"):
            root = [e for e in c.get("env") or [] if e["name"] in ("KMS_ROOT_KEY", "KMS_ROOT_KEY_FILE")]
            if not root:
                problems.append(f"{w}: `kms {runs[0]}` needs KMS_ROOT_KEY (secretKeyRef)")
    return problems


def k8s_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    for cm in configmaps.values():
        data = cm.get("data") or {}
        problems += env_problems(list(data), f"ConfigMap {cm['metadata']['name']}")
        for secret in ("KMS_ROOT_KEY", "PGPASSWORD"):
            if secret in data:
                problems.append(f"ConfigMap {cm['metadata']['name']} holds {secret}: use a Secret")
    if any(
        d.get("kind") == "Secret" and "KMS_ROOT_KEY" in str(d.get("data", d.get("stringData"))) for d in docs
    ):
        problems.append("a Secret with a root key is in the repository")
    for d in docs:
        problems += pod_problems(d, configmaps)

    deployments = {_component(d): d for d in docs if d.get("kind") == "Deployment"}
    for component, replicas in (("web", 2), ("worker", 2), ("scheduler", 1)):
        dep = deployments.get(component)
        if dep is None:
            problems.append(f"no Deployment for {component}")
            continue
        if dep["spec"].get("replicas", 1) != replicas:
            problems.append(
                f"Deployment {component}: {dep['spec'].get('replicas', 1)} replicas, want {replicas}"
            )
        argv = k8s_argv(dep["spec"]["template"]["spec"]["containers"][0])
        if argv[1:2] != [component]:
            problems.append(f"Deployment {component} runs {argv!r}, want `kms {component}`")
    if "web" in deployments:
        web = deployments["web"]
        problems += probe_problems(web)
        for c in web["spec"]["template"]["spec"]["containers"]:
            if not (c.get("resources") or {}).get("limits"):
                problems.append(f"web/{c['name']}: no resource limits")
        pod_labels = web["spec"]["template"]["metadata"]["labels"]
        services = [
            s
            for s in docs
            if s.get("kind") == "Service"
            and s["spec"].get("selector")
            and s["spec"]["selector"].items() <= pod_labels.items()
        ]
        if not services:
            problems.append("no Service selects the web pods")
        for s in services:
            for p in s["spec"]["ports"]:
                if p.get("targetPort") not in (8080, "http"):
                    problems.append(f"Service {s['metadata']['name']} targets port {p.get('targetPort')}")
    jobs = [d for d in docs if d.get("kind") == "Job"]
    if not any(
        k8s_argv(c)[1:] == ["migrate"] for j in jobs for c in j["spec"]["template"]["spec"]["containers"]
    ):
        problems.append("no Job runs `kms migrate`")
    return problems


# systemd and documentation ------------------------------------------------------------------------


def systemd_problems(unit_text: str, name: str) -> list[str]:
    problems = []
    execs = [line.split("=", 1)[1] for line in unit_text.splitlines() if line.startswith("ExecStart=")]
    if not execs:
        problems.append(f"{name}: no ExecStart")
    for cmd in execs:
        if (problem := argv_problem(shlex.split(cmd.lstrip("-@+!")), name)) is not None:
            problems.append(problem)
    users = [line.split("=", 1)[1].strip() for line in unit_text.splitlines() if line.startswith("User=")]
    if not users or users[-1] in ("root", "0"):
        problems.append(f"{name}: runs as root (no User= or User=root)")
    env = [
        tok.split("=", 1)[0]
        for line in unit_text.splitlines()
        if line.startswith("Environment=")
        for tok in shlex.split(line.split("=", 1)[1])
    ]
    return problems + env_problems(env, name)


def env_file_names(text: str) -> list[str]:
    return [
        line.split("=", 1)[0].strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    ]


def readme_commands(text: str) -> list[list[str]]:
    """`kms …` commands in README code: inline spans starting with ``kms `` and fenced lines
    (after an optional ``kubectl exec … --`` or ``docker compose run … migrate`` prefix)."""
    commands = []
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text):
        if span.startswith("kms "):
            commands.append(shlex.split(span)[1:])
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            line = re.sub(r"^kubectl exec \S+ -- ", "", line)
            if line.startswith("kms "):
                commands.append(shlex.split(line)[1:])
    return commands


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    return load_k8s()


# --- the real files --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_runs_kms() -> None:
    assert dockerfile_problems((DEPLOY / "Dockerfile").read_text()) == []


def test_compose_runs_real_subcommands_with_real_settings(compose: dict[str, Any]) -> None:
    assert set(compose_kms_services(compose)) >= {"migrate", "web", "worker", "scheduler"}
    assert compose_problems(compose) == []


def test_k8s_manifests_parse_and_cover_the_parts(k8s_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in k8s_docs)
    assert kinds.count("Deployment") == 3
    assert {"ConfigMap", "Job", "Service"} <= set(kinds)
    for d in k8s_docs:
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d["__file__"]


def test_k8s_manifests_run_real_subcommands_with_real_settings(k8s_docs: list[dict[str, Any]]) -> None:
    assert k8s_problems(k8s_docs) == []


def test_k8s_web_probes_hit_healthz_and_readyz(k8s_docs: list[dict[str, Any]]) -> None:
    web = next(d for d in k8s_docs if d["kind"] == "Deployment" and _component(d) == "web")
    assert probe_problems(web) == []


def test_k8s_root_key_comes_from_a_secret(k8s_docs: list[dict[str, Any]]) -> None:
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for d in k8s_docs
        if (spec := _pod_spec(d))
        for c in spec["containers"]
        for e in c.get("env") or []
        if e["name"] == "KMS_ROOT_KEY"
    ]
    assert len(refs) == 3  # web, worker, scheduler
    assert all(r["name"] and r["key"] for r in refs)


def test_systemd_units_run_real_subcommands() -> None:
    units = sorted(SYSTEMD.glob("*.service"))
    assert units, "no systemd units"
    problems = [p for unit in units for p in systemd_problems(unit.read_text(), unit.name)]
    for example in SYSTEMD.glob("*.env*"):
        problems += env_problems(env_file_names(example.read_text()), example.name)
    assert problems == []


def test_every_kms_variable_named_in_deploy_is_real() -> None:
    allowed = set(SETTINGS_VARIABLES) | CLIENT_VARIABLES
    cli_source = (ROOT / "kms" / "cli.py").read_text()
    assert all(f'"{name}"' in cli_source for name in CLIENT_VARIABLES)
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"\bKMS_[A-Z0-9_]+", path.read_text(errors="replace"))
        if name not in allowed
    }
    assert unknown == set()


def test_readme_commands_are_real() -> None:
    commands = readme_commands((DEPLOY / "README.md").read_text())
    assert ["migrate"] in commands and ["worker"] in commands
    problems = [p for args in commands if (p := kms_args_problem(args))]
    assert problems == []


# --- the checkers can fail -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["bogus"], ["worker", "--threads", "many"], ["web", "--bogus"], ["token", "create"], ["keys"], []],
)
def test_checker_rejects_what_kms_refuses(args: list[str]) -> None:
    assert kms_args_problem(args) is not None


@pytest.mark.parametrize(
    "args",
    [
        ["web"],
        ["web", "--port", "9000"],
        ["worker", "--queues", "keygen"],
        ["token", "create", "--project", "p"],
    ],
)
def test_checker_accepts_what_kms_accepts(args: list[str]) -> None:
    assert kms_args_problem(args) is None


def test_checker_rejects_unknown_variables() -> None:
    assert env_problems(["KMS_BOGUS"], "t")
    assert env_problems(["SOMETHING_ELSE"], "t")
    assert not env_problems(["SOMETHING_ELSE"], "t", strict=False)
    assert not env_problems(["KMS_ROOT_KEY", "PGPASSWORD", "PROMETHEUS_MULTIPROC_DIR"], "t")


def test_checker_rejects_broken_dockerfiles() -> None:
    real = (DEPLOY / "Dockerfile").read_text()
    single = 'FROM python:3.11-slim\nUSER 10001\nENTRYPOINT ["kms"]\nCMD ["web"]\n'
    assert any("multi-stage" in p for p in dockerfile_problems(single))
    assert any("root" in p for p in dockerfile_problems(real.replace("USER 10001:10001", "USER root")))
    assert any("USER" in p for p in dockerfile_problems(real.replace("USER 10001:10001", "")))
    assert any("refused" in p for p in dockerfile_problems(real.replace('CMD ["web"]', 'CMD ["bogus"]')))
    assert any("KMS_BOGUS" in p for p in dockerfile_problems(real.replace("KMS_PORT=", "KMS_BOGUS=")))


def test_checker_rejects_broken_compose(compose: dict[str, Any]) -> None:
    bad = copy.deepcopy(compose)
    bad["services"]["worker"]["command"] = ["wokrer"]
    assert any("wokrer" in p for p in compose_problems(bad))

    bad = copy.deepcopy(compose)
    bad["services"]["scheduler"]["environment"] = {
        **_compose_env(bad["services"]["scheduler"]),
        "KMS_TYPO": "1",
    }
    assert any("KMS_TYPO" in p for p in compose_problems(bad))

    bad = copy.deepcopy(compose)
    bad["services"]["redis"]["command"] = ["redis-server"]
    bad["services"]["web"].pop("healthcheck")
    problems = compose_problems(bad)
    assert any("appendonly" in p for p in problems) and any("/readyz" in p for p in problems)


def test_checker_rejects_broken_manifests(k8s_docs: list[dict[str, Any]]) -> None:
    def web(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return next(d for d in docs if d["kind"] == "Deployment" and _component(d) == "web")

    bad = copy.deepcopy(k8s_docs)
    container = web(bad)["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = "/healthz"
    container["args"] = ["serve", "--bogus"]
    del container["resources"]["requests"]
    web(bad)["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    problems = k8s_problems(bad)
    for fragment in ("readinessProbe", "--bogus", "resources.requests", "runAsNonRoot"):
        assert any(fragment in p for p in problems), fragment

    bad = copy.deepcopy(k8s_docs)
    cm = next(d for d in bad if d["kind"] == "ConfigMap")
    cm["data"]["KMS_WORKERS"] = "4"
    cm["data"]["KMS_ROOT_KEY"] = "not-a-real-key"
    problems = k8s_problems(bad)
    assert any("KMS_WORKERS" in p for p in problems) and any("use a Secret" in p for p in problems)

    bad = copy.deepcopy(k8s_docs)
    job = next(d for d in bad if d["kind"] == "Job")
    job["spec"]["template"]["spec"]["containers"][0]["command"] = ["kms", "migrate"]
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["--now"]
    assert any("--now" in p for p in k8s_problems(bad))


def test_checker_rejects_broken_systemd_units() -> None:
    unit = (SYSTEMD / "kms-worker.service").read_text()
    assert systemd_problems(unit.replace("kms worker", "kms wroker"), "u")
    assert systemd_problems(unit.replace("User=kms", "User=root"), "u")
