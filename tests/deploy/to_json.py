#!/usr/bin/env python3
"""Prints a YAML file's documents (a JSON array) or a TOML document (a JSON object), or with
`-` reads TOML text from stdin. The Rust e2e tests read deploy/ through it: PyYAML comes with
the pinned kubernetes-validate (tests/peers/requirements.txt), tomllib with Python 3.11."""

import json
import sys
import tomllib

import yaml


def main(path):
    if path == "-":
        print(json.dumps(tomllib.loads(sys.stdin.read())))
    elif path.endswith(".toml"):
        with open(path, "rb") as handle:
            print(json.dumps(tomllib.load(handle)))
    else:
        with open(path, encoding="utf-8") as handle:
            print(json.dumps([doc for doc in yaml.safe_load_all(handle) if doc is not None]))


if __name__ == "__main__":
    main(sys.argv[1])
