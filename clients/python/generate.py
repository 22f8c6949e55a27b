"""Generates Python stubs for every openoes proto into ./gen (gitignored,
never committed), replacing whatever was there, so nothing generated from an
older proto survives.

    python generate.py            # then: PYTHONPATH=gen python credit_example.py

Uses grpcio-tools' bundled protoc and its copy of the well-known types
(google/protobuf/*.proto), so no system protoc is needed.
"""

import pathlib
import shutil
import sys

import grpc_tools
from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
OUT = HERE / "gen"


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={OUT}",
            f"--grpc_python_out={OUT}",
            *files,
        ]
    )
    if code != 0:
        print(f"protoc failed with {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
