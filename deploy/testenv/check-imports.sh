#!/usr/bin/env bash
# Every module declares what it imports: each `import X` in Sources/<target> or Tests/<target> names
# one of that target's own dependencies in Package.swift (a target or a product), or a module of the
# toolchain. A module that compiles only because a dependency of a dependency brings X in is an error.
# Usage: deploy/testenv/check-imports.sh        (exits non-zero, naming each undeclared import)
set -euo pipefail
cd "$(dirname "$0")/../.."
manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
swift package dump-package >"$manifest"
python3 - "$manifest" <<'PY'
import json, os, re, sys
toolchain = {"Foundation", "FoundationEssentials", "FoundationNetworking", "Glibc", "Darwin", "Musl",
             "Dispatch", "Synchronization", "Testing", "XCTest", "_Concurrency", "os"}
package = json.load(open(sys.argv[1]))
problems = []
for target in package["targets"]:
    if target["type"] == "system":
        continue
    declared = set()
    for dependency in target["dependencies"]:
        for kind in ("byName", "target", "product"):
            if kind in dependency:
                declared.add(dependency[kind][0])
    root = "Tests" if target["type"] == "test" else "Sources"
    directory = os.path.join(root, target["name"])
    for folder, _, files in os.walk(directory):
        for name in files:
            if not name.endswith(".swift"):
                continue
            path = os.path.join(folder, name)
            for number, line in enumerate(open(path, encoding="utf-8"), 1):
                match = re.match(r"\s*(?:@\w+\s+)*import\s+(?:(?:struct|class|enum|func|protocol)\s+)?(\w+)", line)
                if match and match.group(1) not in toolchain and match.group(1) not in declared:
                    problems.append(f"{path}:{number}: imports {match.group(1)}, which {target['name']} does not declare in Package.swift")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PY
