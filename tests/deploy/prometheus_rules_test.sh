#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The alert rules: promtool check rules, promtool test rules (each alert
# firing and not firing: physpool.rules.test.yml), and every rule has a
# for:, a severity and summary/description annotations.
#   usage: prometheus_rules_test.sh SOURCE_DIR
set -euo pipefail
dir=$1/deploy/prometheus
command -v promtool > /dev/null || { echo "FAIL: promtool is not installed (package prometheus)" >&2; exit 1; }
promtool check rules "$dir/physpool.rules.yml"
(cd "$dir" && promtool test rules physpool.rules.test.yml)
/usr/bin/python3 - "$dir" <<'PY'
import sys, yaml
d = sys.argv[1]
rules = [r for g in yaml.safe_load(open(f"{d}/physpool.rules.yml"))["groups"] for r in g["rules"]]
tests = yaml.safe_load(open(f"{d}/physpool.rules.test.yml"))["tests"]
tested = {}
for t in tests:
    for a in t.get("alert_rule_test", []):
        tested.setdefault(a["alertname"], set()).add(bool(a["exp_alerts"]))
bad = []
for r in rules:
    name = r["alert"]
    if "for" not in r: bad.append(f"{name}: no for:")
    if r.get("labels", {}).get("severity") not in ("warning", "critical"): bad.append(f"{name}: severity")
    for k in ("summary", "description"):
        if not r.get("annotations", {}).get(k): bad.append(f"{name}: no {k}")
    if tested.get(name) != {True, False}: bad.append(f"{name}: not tested both firing and not firing")
want = {"PhysPoolNearlyExhausted", "PhysPoolFragmented", "PhysPoolFallbackRateHigh",
        "PhysPoolWaitersPilingUp", "PhysPoolScrubBacklogGrowing", "PhysPoolStoreErrors", "PhysPoolDown"}
if {r["alert"] for r in rules} != want: bad.append(f"alerts: {sorted(r['alert'] for r in rules)}")
if bad:
    print("FAIL:\n  " + "\n  ".join(bad)); sys.exit(1)
print(f"{len(rules)} alerts: each has for:, severity, summary, description, and tests firing and not")
PY
