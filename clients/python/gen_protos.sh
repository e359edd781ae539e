#!/usr/bin/env bash
# Regenerates src/aurea_client/_pb from ../../protos (the protos aurea/v1 is generated from), with
# the generated imports pointed at this package, so the client needs nothing of the server.
# Run it (like scripts/gen_protos.sh) after any change to protos/; a test checks both copies match.
set -euo pipefail
cd "$(dirname "$0")"
out=src/aurea_client/_pb
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m grpc_tools.protoc -I../../protos \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  ../../protos/aurea/v1/*.proto
find "$out" -name '*_pb2*.py*' -delete
cp "$tmp"/aurea/v1/*_pb2* "$out"/
sed -i 's/^from aurea\.v1 import /from aurea_client._pb import /' "$out"/*.py "$out"/*.pyi
printf '"""Generated from protos/aurea/v1 by clients/python/gen_protos.sh; never edited."""\n' \
  > "$out/__init__.py"
