#!/usr/bin/env bash
# Checks deploy/ against the real binary and docs/configuration.md, offline (no registry, no Docker
# daemon, no systemd needed):
#   - deploy/docker-compose.yml parses as YAML, its services and named volumes hang together;
#   - every `agentjobs <command> --flag` in the compose file, the systemd units, the env examples,
#     the Dockerfile and docs/operations.md — including compose `command:` lists and
#     `docker compose run/exec <service> …` lines — names a real (sub)command, and every flag
#     appears in that command's `--help`;
#   - the Dockerfile's ENTRYPOINT is agentjobs and its CMD role exists;
#   - every AGENTJOBS_* setting used in deploy/ is documented in docs/configuration.md, and every
#     setting given to a role (compose environment, <role>.env.example) is documented for that role;
#   - the systemd units pass `systemd-analyze verify` when systemd-analyze is installed.
# Usage: deploy/check.sh PATH/TO/agentjobs        (exits non-zero on any problem)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH/TO/agentjobs" >&2
    exit 2
fi
BIN="$(readlink -f "$1")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[[ -x "$BIN" ]] || { echo "check.sh: $1 is not an executable" >&2; exit 2; }

# The binary finds librdkafka through its rpath; fall back to the Makefile's cache location.
if ! "$BIN" --help >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}/librdkafka-2.14.2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$BIN" --help >/dev/null || { echo "check.sh: $BIN --help fails" >&2; exit 1; }
fi

# PyYAML: Debian's python3-yaml, installed only when missing (as the Makefile installs packages).
if ! python3 -c 'import yaml' 2>/dev/null; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
        echo "installing python3-yaml (to parse the compose file)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
    else
        echo "check.sh: PyYAML is missing; install python3-yaml" >&2
        exit 1
    fi
fi

# systemd-analyze verify, on copies of the units whose ExecStart points at the binary under test
# (verify refuses a missing executable). It exits 0 even on unknown keys, so any output fails.
SYSTEMD_STATUS="skipped (systemd-analyze not installed)"
if command -v systemd-analyze >/dev/null; then
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/agentjobs-check.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    units=()
    for unit in "$ROOT"/deploy/systemd/*.service; do
        name="$(basename "$unit")"
        name="${name/@.service/@1.service}"   # a template is verified as one of its instances
        sed "s#^ExecStart=/usr/local/bin/agentjobs#ExecStart=$BIN#" "$unit" >"$tmp/$name"
        units+=("$tmp/$name")
    done
    status=0
    out="$(systemd-analyze verify --man=no "${units[@]}" 2>&1)" || status=$?
    rm -rf "$tmp"
    trap - EXIT
    if [[ $status -ne 0 || -n "$out" ]]; then
        echo "FAIL systemd-analyze verify:" >&2
        echo "$out" >&2
        exit 1
    fi
    SYSTEMD_STATUS="ok (${#units[@]} units, no warnings)"
fi

exec python3 - "$BIN" "$ROOT" "$SYSTEMD_STATUS" <<'PY'
import glob
import os
import re
import subprocess
import sys

import yaml

binary, root, systemd_status = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []
checked = {"commands": 0, "flags": 0, "settings": 0, "role_settings": 0}
invocations = {}  # "host register" -> flags seen


def rel(path):
    return os.path.relpath(path, root)


def fail(where, message):
    problems.append(f"{where}: {message}")


# --- the binary's command tree --------------------------------------------------------------------
help_cache = {}


def help_text(path):
    """`agentjobs <path> --help`, or None when that command does not exist."""
    key = tuple(path)
    if key not in help_cache:
        result = subprocess.run([binary, *path, "--help"], capture_output=True, text=True)
        help_cache[key] = result.stdout if result.returncode == 0 else None
    return help_cache[key]


def subcommands(path):
    text = help_text(path) or ""
    if "SUBCOMMANDS:" not in text:
        return set()
    names = set()
    for line in text.split("SUBCOMMANDS:", 1)[1].splitlines():
        m = re.match(r"^  ([a-z][a-z0-9-]*)(\s|$)", line)
        if m:
            names.add(m.group(1))
    return names


def has_flag(path, flag):
    return re.search(re.escape(flag) + r"(?![\w-])", help_text(path) or "") is not None


def check_invocation(where, words):
    """words: what follows `agentjobs` (subcommands, flags, values). Flags must be in --help."""
    path = []
    for word in words:
        if word in subcommands(path):
            path.append(word)
        else:
            break
    if not path:
        return  # prose such as "agentjobs is …"; a bare `agentjobs` has nothing to check
    rest = words[len(path):]
    if subcommands(path):
        # `agentjobs hosts list|show` or prose ("agentjobs runs agentjobs-serve") is fine; flags
        # after a command group mean a subcommand is missing.
        if any(w.startswith("--") for w in rest):
            fail(where, f"`agentjobs {' '.join(path)}` needs a subcommand ({', '.join(sorted(subcommands(path)))})")
        return
    checked["commands"] += 1
    seen = invocations.setdefault(" ".join(path), set())
    for word in rest:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            checked["flags"] += 1
            seen.add(flag)
            if not has_flag(path, flag):
                fail(where, f"`agentjobs {' '.join(path)}` has no flag {flag}")


def segments(text):
    """Logical lines: backslash continuations joined, comment markers kept (commands live in comments)."""
    lines = text.splitlines()
    out, buf, start = [], "", 1
    for number, line in enumerate(lines, 1):
        stripped = line.rstrip()
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += re.sub(r"^\s*#\s?", "", stripped) if buf else stripped
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


STOP = re.compile(r"[`|;)]|&&|\$\(")


def words_after(text):
    text = STOP.split(text, 1)[0]
    return [w.strip("\"'") for w in text.split()]


def scan_text_invocations(path, agentjobs_services):
    with open(path) as f:
        text = f.read()
    for line_no, line in segments(text):
        where = f"{rel(path)}:{line_no}"
        # `agentjobs …` (also /usr/local/bin/agentjobs …), not agentjobs-serve or agentjobs:dev.
        for m in re.finditer(r"(?<![\w.-])(?:/[\w./-]*/)?agentjobs(?=\s)(.*)", line):
            check_invocation(where, words_after(m.group(1)))
        # `docker compose … run [--rm] SERVICE ARGS` / `exec [-T] SERVICE agentjobs ARGS`: the
        # image's entrypoint is agentjobs, so ARGS are agentjobs arguments.
        for m in re.finditer(r"\bdocker compose\b.*?\brun\b((?:\s+-[-\w]+)*)\s+([\w-]+)\s+(.*)", line):
            if m.group(2) in agentjobs_services:
                check_invocation(where, words_after(m.group(3)))


# --- settings documented in docs/configuration.md --------------------------------------------------
config_doc = os.path.join(root, "docs/configuration.md")
with open(config_doc) as f:
    config_text = f.read()
documented_roles = {}
for line in config_text.splitlines():
    m = re.match(r"^\|\s*`(AGENTJOBS_[A-Z0-9_<>]+)`\s*\|\s*([^|]*)\|", line)
    if m:
        documented_roles[m.group(1)] = {r.strip() for r in m.group(2).split(",")}
documented_anywhere = set(re.findall(r"AGENTJOBS_[A-Z0-9_]+", config_text))
KAFKA_PATTERN = "AGENTJOBS_KAFKA_<PROPERTY>"
SERVER_ROLES = {"serve", "aggregate", "orchestrate", "tokens", "dev"}


def is_documented(name):
    if name in documented_anywhere or name in documented_roles:
        return True
    return name.startswith("AGENTJOBS_KAFKA_") and KAFKA_PATTERN in documented_roles


def roles_of(name):
    if name in documented_roles:
        return documented_roles[name]
    if name.startswith("AGENTJOBS_KAFKA_") and KAFKA_PATTERN in documented_roles:
        return documented_roles[KAFKA_PATTERN]
    return set()


def check_role_setting(where, role, name):
    checked["role_settings"] += 1
    roles = roles_of(name)
    if not roles:
        fail(where, f"{name} is not in the settings table of docs/configuration.md")
    elif not (role in roles or "all" in roles or ("servers" in roles and role in SERVER_ROLES)):
        fail(where, f"{name} is documented for {', '.join(sorted(roles))}, not for `{role}`")


# Names in deploy/ that are not settings of the binary, and where they are defined.
NOT_SETTINGS = {
    "AGENTJOBS_CACHE_DIR": "deploy/testenv/librdkafka.sh (build-time cache root)",
    "AGENTJOBS_LIBRDKAFKA_PREFIX": "deploy/testenv/librdkafka.sh --print-env (build time)",
    "AGENTJOBS_IMAGE": "a docker compose interpolation variable (which image to run)",
}
# Harness and agent-side files: they use test variables and the variables the process driver sets
# for agents (AGENTJOBS_LOG_DIR, AGENTJOBS_RUN_ID, …), not settings of the binary.
SKIP_DIRS = ("deploy/testenv/", "deploy/agents/")

settings_seen = set()
deploy_files = sorted(
    p for p in glob.glob(os.path.join(root, "deploy/**/*"), recursive=True)
    if os.path.isfile(p) and not rel(p).startswith(SKIP_DIRS)
)
for path in deploy_files:
    with open(path, errors="replace") as f:
        text = f.read()
    for line_no, line in enumerate(text.splitlines(), 1):
        for name in re.findall(r"AGENTJOBS_[A-Z0-9_]*[A-Z0-9](?:_<[A-Z]+>)?", line):
            checked["settings"] += 1
            settings_seen.add(name)
            if name in NOT_SETTINGS or path.endswith("check.sh"):
                continue
            if not (is_documented(name) or name in documented_roles):
                fail(f"{rel(path)}:{line_no}", f"{name} is not documented in docs/configuration.md")

# --- docker-compose.yml ------------------------------------------------------------------------------
compose_path = os.path.join(root, "deploy/docker-compose.yml")
with open(compose_path) as f:
    compose = yaml.safe_load(f)
services = compose.get("services") or {}
if not services:
    fail(rel(compose_path), "no services")
declared_volumes = set((compose.get("volumes") or {}).keys())
agentjobs_services = set()
for name, service in services.items():
    where = f"{rel(compose_path)}: service {name}"
    if not isinstance(service, dict) or "image" not in service:
        fail(where, "has no image")
        continue
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source and not source.startswith(("/", ".", "$", "~")) and source not in declared_volumes:
            fail(where, f"uses volume {source}, which is not declared under volumes:")
    for dependency in service.get("depends_on") or {}:
        if dependency not in services:
            fail(where, f"depends on unknown service {dependency}")
    if "agentjobs" not in str(service["image"]):
        continue
    agentjobs_services.add(name)
    command = service.get("command")
    if isinstance(command, str):
        command = command.split()
    if not command:
        fail(where, "has no command (the image's CMD would run `serve`)")
        continue
    check_invocation(where, [str(c) for c in command])
    role = command[0]
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    for key in environment:
        if key.startswith("AGENTJOBS_"):
            check_role_setting(f"{where} environment", role, key)
for role in ("serve", "aggregate", "orchestrate"):
    if not any((s.get("command") or [None])[0] == role for s in services.values() if isinstance(s, dict)):
        fail(rel(compose_path), f"no service runs `{role}`")
print(f"checked compose file parses: {len(services)} services ({', '.join(services)}), "
      f"{len(declared_volumes)} volumes")

# --- env examples: each setting documented for its role ---------------------------------------------
for path in sorted(glob.glob(os.path.join(root, "deploy/systemd/*.env.example"))):
    role = os.path.basename(path).split(".", 1)[0]
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            m = re.match(r"^\s*#?\s*(AGENTJOBS_[A-Z0-9_]+)=", line)
            if m:
                check_role_setting(f"{rel(path)}:{line_no}", role, m.group(1))

# --- systemd units: ExecStart and EnvironmentFile ----------------------------------------------------
for path in sorted(glob.glob(os.path.join(root, "deploy/systemd/*.service"))):
    with open(path) as f:
        text = f.read()
    execs = re.findall(r"^ExecStart=(.*)$", text, re.M)
    if len(execs) != 1:
        fail(rel(path), f"expected one ExecStart=, found {len(execs)}")
        continue
    parts = execs[0].split()
    if os.path.basename(parts[0]) != "agentjobs":
        fail(rel(path), f"ExecStart runs {parts[0]}, not agentjobs")
    check_invocation(f"{rel(path)} ExecStart", parts[1:])
    role = parts[1] if len(parts) > 1 else ""
    env_files = re.findall(r"^EnvironmentFile=-?(\S+)$", text, re.M)
    if f"/etc/agentjobs/{role}.env" not in env_files:
        fail(rel(path), f"has no EnvironmentFile=/etc/agentjobs/{role}.env")
    if not os.path.exists(os.path.join(root, "deploy/systemd", f"{role}.env.example")):
        fail(rel(path), f"deploy/systemd/{role}.env.example is missing")
    for required in ("User=", "Restart=on-failure"):
        if not re.search("^" + re.escape(required), text, re.M):
            fail(rel(path), f"has no {required}")

# --- Dockerfile ---------------------------------------------------------------------------------------
dockerfile = os.path.join(root, "deploy/Dockerfile")
with open(dockerfile) as f:
    docker_text = f.read()
entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", docker_text, re.M)
cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", docker_text, re.M)
if entrypoint != ['["agentjobs"]']:
    fail(rel(dockerfile), f"ENTRYPOINT should be [\"agentjobs\"], found {entrypoint}")
if len(cmd) != 1:
    fail(rel(dockerfile), "expected one exec-form CMD")
else:
    cmd_words = yaml.safe_load(cmd[0])
    # (`agentjobs NOSUCH --help` prints the top-level help and exits 0, so ask the command list.)
    if not cmd_words or cmd_words[0] not in subcommands([]):
        fail(rel(dockerfile), f"CMD role {cmd_words[:1]} is not a command of the binary")
    else:
        print(f"checked Dockerfile: ENTRYPOINT [\"agentjobs\"], CMD {cmd_words} is a command of the binary")
    check_invocation(f"{rel(dockerfile)} CMD", cmd_words)

# The build context is a clean clone: every COPY source must be in the repository (git-ignored files
# such as Package.resolved are not).
tracked = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
tracked_files = set(tracked.stdout.split()) if tracked.returncode == 0 else None
for line in re.findall(r"^COPY\s+(.*)$", docker_text, re.M):
    words = [w for w in line.split() if not w.startswith("--")]
    if "--from=" in line or len(words) < 2:
        continue
    for source in words[:-1]:
        if tracked_files is None:
            present = os.path.exists(os.path.join(root, source))
        else:
            present = source in tracked_files or any(f.startswith(source.rstrip("/") + "/") for f in tracked_files)
        if not present:
            fail(rel(dockerfile), f"COPY {source}: not in the repository, so a build from a clean clone fails")

# --- Kubernetes manifests: each role's args and settings ---------------------------------------------
k8s_roles = set()
k8s_objects = 0
for path in sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))):
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    for document in documents:
        k8s_objects += 1
        pod = ((document.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            if "agentjobs" not in str(container.get("image", "")):
                continue
            where = f"{rel(path)}: {document.get('kind')} {document['metadata']['name']}"
            args = [str(a) for a in (container.get("args") or [])]
            if not args:
                fail(where, "has no args (the image's CMD would run `serve`)")
                continue
            check_invocation(where, args)
            k8s_roles.add(args[0])
            for variable in container.get("env") or []:
                if variable.get("name", "").startswith("AGENTJOBS_"):
                    check_role_setting(f"{where} env", args[0], variable["name"])
for role in ("serve", "aggregate", "orchestrate"):
    if role not in k8s_roles:
        fail("deploy/kubernetes", f"no workload runs `{role}`")
print(f"checked Kubernetes manifests: {k8s_objects} objects, roles {', '.join(sorted(k8s_roles))}")

# --- `agentjobs …` in text: compose, units, env examples, Dockerfile, docs/operations.md -------------
text_files = [compose_path, dockerfile, os.path.join(root, "docs/operations.md")]
text_files += sorted(glob.glob(os.path.join(root, "deploy/systemd/*")))
for path in text_files:
    if os.path.exists(path):
        scan_text_invocations(path, agentjobs_services)
    else:
        fail(rel(path), "missing")

print(f"checked command lines: {checked['commands']} `agentjobs …` invocations, {checked['flags']} flags, "
      f"against `{os.path.basename(binary)} <command> --help`:")
for command in sorted(invocations):
    print(f"          agentjobs {command} {' '.join(sorted(invocations[command]))}".rstrip())
print(f"checked settings: {checked['settings']} AGENTJOBS_* mentions ({len(settings_seen)} names) in deploy/ "
      f"(not testenv/, agents/) against docs/configuration.md; {checked['role_settings']} settings given to a "
      f"role documented for that role")
# --- the Prometheus rules: YAML, every rule named, every metric it uses documented ------------------
metrics_doc = open(os.path.join(root, "docs/metrics.md"), encoding="utf-8").read()
rules_checked = 0
for path in sorted(glob.glob(os.path.join(root, "deploy/prometheus/*.yml"))):
    try:
        document = yaml.safe_load(open(path, encoding="utf-8"))
    except yaml.YAMLError as error:
        fail(rel(path), f"does not parse as YAML: {error}")
        continue
    for group in (document or {}).get("groups", []):
        for rule in group.get("rules", []):
            rules_checked += 1
            name = rule.get("alert") or rule.get("record")
            if not name or not isinstance(rule.get("expr"), str):
                fail(rel(path), f"a rule without a name or an expr: {rule}")
                continue
            for metric in set(re.findall(r"\bagentjobs_[a-z_]+", rule["expr"])):
                if f"`{metric}`" not in metrics_doc:
                    fail(rel(path), f"{name} uses {metric}, which docs/metrics.md does not list")
            if name not in metrics_doc:
                fail(rel(path), f"{name} is not described in docs/metrics.md")
print(f"checked Prometheus rules: {rules_checked} rules, their metrics documented")
print(f"checked systemd-analyze verify: {systemd_status}")
if problems:
    print(f"\n{len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    sys.exit(1)
print("deploy/check.sh: all checks passed")
PY
