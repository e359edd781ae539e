#!/usr/bin/env bash
# Regenerates aurea/v1 (pb2, pb2_grpc, pyi) from protos/aurea/v1. The only way that code is written.
set -euo pipefail
cd "$(dirname "$0")/.."
find aurea/v1 -name '*_pb2*.py*' -delete
python -m grpc_tools.protoc -Iprotos \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/aurea/v1/*.proto
touch aurea/v1/__init__.py
# The Python client carries its own copy of the stubs (and service tables generated from them).
./clients/python/gen_protos.sh
python clients/python/tools/gen_services.py
