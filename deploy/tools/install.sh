#!/usr/bin/env bash
# Installs the project's pinned native tools into .tools/bin (project-local),
# idempotently: a tool whose pinned version is already there is skipped, so a
# second run takes well under a second. Needs Go (the module proxy builds them).
#
# usage: deploy/tools/install.sh [nats-server] [nats] [helm]   (default: all)
set -euo pipefail

# Pinned versions. nats-server >= 2.14 carries the fixes for the data-loss
# bugs Jepsen found in 2.12.1; 2.15 with sync_interval: always fsyncs a
# replicated stream's Raft log and syncs its message store only on snapshot
# (it recovers from the two), about 6 fsyncs per mail cluster-wide instead
# of 50 (`npm run bench -- --fsyncs`). natscli v0.5.1 is broken on the proxy.
NATS_SERVER_VERSION=v2.15.3
NATSCLI_VERSION=v0.5.0
HELM_VERSION=v3.19.5

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"

# name  module@version  binary-name-go-install-produces
tools=(
  "nats-server github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION nats-server"
  "nats github.com/nats-io/natscli/nats@$NATSCLI_VERSION nats"
  "helm helm.sh/helm/v3/cmd/helm@$HELM_VERSION helm"
)
want=("$@")
for row in "${tools[@]}"; do
  read -r name mod produced <<<"$row"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $name " ]]; then continue; fi
  stamp="$bin/.$name.version"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
    continue
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "install-tools: Go is not on PATH and $name $mod is not built yet; install Go >= 1.24 (https://go.dev/doc/install) and run again" >&2
    exit 2
  fi
  echo "install-tools: building $mod (first run only, takes a few minutes)" >&2
  GOBIN="$bin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "$mod"
  [ "$produced" = "$name" ] || mv "$bin/$produced" "$bin/$name"
  echo "$mod" > "$stamp"
done
