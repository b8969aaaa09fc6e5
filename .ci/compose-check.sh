#!/usr/bin/env bash
# Validates docker-compose.yml with Debian's docker-compose (installed when
# missing). No Docker engine is needed: `config` only reads and checks the
# file, the profiles included.
#
#   .ci/compose-check.sh [FILE]   (default docker-compose.yml)
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-docker-compose.yml}

if ! command -v docker-compose >/dev/null; then
	if [ "$(id -u)" != 0 ]; then
		echo "compose-check: docker-compose is not installed and installing it needs root: apt-get install docker-compose" >&2
		exit 1
	fi
	echo "compose-check: installing Debian's docker-compose" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=120 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends docker-compose >&2
fi

docker-compose -f "$file" config -q

# What docs/deploy.md promises: node1..3, sinksim and loadgen start by
# default, node4 only with --profile extra-node. (`config --services` lists
# every service whatever the profiles, so read the resolved file.)
# python3-yaml comes with docker-compose.
resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
docker-compose -f "$file" config >"$resolved"
python3 - "$resolved" <<'PY'
import sys, yaml
svcs = yaml.safe_load(open(sys.argv[1]))["services"]
want = {"node1": [], "node2": [], "node3": [], "sinksim": [], "loadgen": [], "node4": ["extra-node"]}
bad = []
for name, profiles in want.items():
    got = svcs.get(name, {}).get("profiles", []) if name in svcs else None
    if got != profiles:
        bad.append(f"service {name}: profiles {got}, want {profiles}")
for name in ("node1", "node2", "node3"):
    env = svcs.get(name, {}).get("environment", {})
    if env.get("BATCHPILOT_BOOTSTRAP_EXPECT") != "3" or env.get("BATCHPILOT_ADVERTISE_ADDR") != name:
        bad.append(f"service {name}: want BATCHPILOT_BOOTSTRAP_EXPECT 3 and BATCHPILOT_ADVERTISE_ADDR {name}")
if bad:
    sys.exit("compose-check: " + "; ".join(bad))
print(f"compose-check: valid: {len(svcs)} services; node4 in profile extra-node")
PY
