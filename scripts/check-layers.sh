#!/usr/bin/env bash
# The layer rule (README.md, Architecture): a target imports only the targets below it, never one above it or
# beside it. Checks the `import` lines of every Swift file under Sources/<Target>/ and Tests/<Target>Tests/, and
# the target dependencies declared in Package.swift. Needs no build; scripts/test.sh runs it first.
#
#   EngineIO  →  SocketIO  →  Adapter (Redis, with CHiredis)  →  Node  →  signal-node, signal-fuzz
#                          →  Signaling                        ↗
set -euo pipefail
cd "$(dirname "$0")/.."

# Each target of the package and the package targets it may import. A new target must be added here.
declare -A allowed=(
    [CHiredis]=""
    [EngineIO]=""
    [SocketIO]="EngineIO"
    [Adapter]="CHiredis EngineIO SocketIO"
    [Signaling]="EngineIO SocketIO"
    [Node]="CHiredis EngineIO SocketIO Adapter Signaling"
    [signal-node]="CHiredis EngineIO SocketIO Adapter Signaling Node"
    [signal-fuzz]="CHiredis EngineIO SocketIO Adapter Signaling"
    # The benchmark is a client that speaks the protocol itself: it imports none of the server.
    [signal-bench]=""
)

# What a target may import: the table's entry; a test target <X>Tests may import X and what X may import.
allowed_for() {
    local target=$1
    if [[ -v "allowed[$target]" ]]; then
        echo "${allowed[$target]}"
    elif [[ $target == *Tests && -v "allowed[${target%Tests}]" ]]; then
        echo "${target%Tests} ${allowed[${target%Tests}]}"
    else
        return 1
    fi
}

# The package's own modules (an executable's module name has `_` for `-`).
declare -A module_target=()
for target in "${!allowed[@]}"; do module_target[${target//-/_}]=$target; done

failures=0
fail() {
    echo "layer rule: $*" >&2
    failures=$((failures + 1))
}

check_import() {  # where, target, imported module
    local where=$1 target=$2 module=$3
    [[ -v "module_target[$module]" ]] || return 0  # not one of ours (NIO, Foundation, …)
    local imported=${module_target[$module]} ok
    for ok in $(allowed_for "$target"); do [[ $ok == "$imported" ]] && return 0; done
    fail "$where: $target imports $imported; it may import only: $(allowed_for "$target" | xargs echo)"
}

for dir in Sources/*/ Tests/*Tests/; do
    target=$(basename "$dir")
    if ! allowed_for "$target" >/dev/null; then
        fail "$dir is not in scripts/check-layers.sh's table: add the target with the targets it may import"
        continue
    fi
    # `import X`, `@testable import X`, `public import X`, `import struct X.Y`, … at the start of a line.
    while IFS=: read -r file line module; do
        check_import "$file:$line" "$target" "$module"
    done < <(grep -rnE --include='*.swift' \
        '^[[:space:]]*(@[A-Za-z_]+[[:space:]]+)*((public|package|internal|fileprivate|private)[[:space:]]+)?import[[:space:]]+((typealias|struct|class|enum|protocol|let|var|func)[[:space:]]+)?[A-Za-z_][A-Za-z0-9_]*' \
        "$dir" | sed -E 's/^([^:]*):([0-9]+):.*import[[:space:]]+((typealias|struct|class|enum|protocol|let|var|func)[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*).*/\1:\2:\5/')
done

# Package.swift: the bare target names in each target's `dependencies:` (products of other packages are skipped).
target=""
while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*name:[[:space:]]*\"([^\"]+)\" ]]; then
        target=${BASH_REMATCH[1]}
        continue
    fi
    [[ -n $target && $line != *".product("* ]] || continue
    # Only lines that are nothing but quoted names: `"EngineIO", "SocketIO",`.
    [[ $line =~ ^[[:space:]]*(\"[A-Za-z0-9_-]+\",?[[:space:]]*)+$ ]] || continue
    for name in $(grep -oE '"[A-Za-z0-9_-]+"' <<<"$line" | tr -d '"'); do
        if ! allowed_for "$target" >/dev/null; then
            fail "Package.swift: target $target is not in scripts/check-layers.sh's table"
            break
        fi
        check_import "Package.swift (dependencies of $target)" "$target" "${name//-/_}"
    done
done < Package.swift

if ((failures > 0)); then
    echo "layer rule: $failures violation(s); see README.md, Architecture" >&2
    exit 1
fi
echo "layer rule holds: $(ls -d Sources/*/ Tests/*Tests/ | wc -l) targets checked"
