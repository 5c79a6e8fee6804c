#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes deploy/k8s/base/prometheusrule.yaml from physpool.rules.yml, the
one source of the alert rules (make check fails if the two differ).

usage: gen-prometheusrule.py [OUT]   (default: stdout)
"""
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = """# GENERATED from deploy/prometheus/physpool.rules.yml by
# deploy/prometheus/gen-prometheusrule.py: edit the rules there, then run
#   deploy/prometheus/gen-prometheusrule.py deploy/k8s/base/prometheusrule.yaml
"""


class Literal(str):
    pass


def literal(dumper, s):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


def main():
    with open(os.path.join(HERE, "physpool.rules.yml")) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = Literal(rule["expr"])
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "physpool", "labels": {"app.kubernetes.io/name": "physpool"}},
        "spec": rules,
    }
    yaml.add_representer(Literal, literal)
    text = HEADER + yaml.dump(doc, sort_keys=False, width=100, default_flow_style=False)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
