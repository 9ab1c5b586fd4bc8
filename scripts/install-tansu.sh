#!/usr/bin/env bash
# Installs `tansu` (a Kafka-protocol broker written in Rust, from crates.io) for the
# Kafka-protocol ticket stream's tests, once, outside the clone:
#
#   scripts/install-tansu.sh        # -> ~/.cache/boxoffice/tools/bin/tansu
#
# Its default features include no storage engine: `dynostore` adds the in-memory one the
# tests use (`--storage-engine memory://tansu/`). The build takes 12-20 minutes on 2
# cores; its target dir is kept under ~/.cache/boxoffice/tansu-target so a second run is
# quick. Environment: TANSU_VERSION (^0.6), BOXOFFICE_TOOLS (~/.cache/boxoffice/tools).
set -euo pipefail
TOOLS="${BOXOFFICE_TOOLS:-$HOME/.cache/boxoffice/tools}"
VERSION="${TANSU_VERSION:-^0.6}"
if [ -x "$TOOLS/bin/tansu" ]; then
  echo "tansu is installed: $TOOLS/bin/tansu ($("$TOOLS/bin/tansu" --version 2>/dev/null || echo unknown version))"
  exit 0
fi
echo "building tansu $VERSION (cargo install --locked --features dynostore; 12-20 minutes on 2 cores)" >&2
CARGO_TARGET_DIR="$HOME/.cache/boxoffice/tansu-target" \
  cargo install tansu --version "$VERSION" --locked --features dynostore --root "$TOOLS"
echo "installed: $TOOLS/bin/tansu"
