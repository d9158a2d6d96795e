#!/usr/bin/env bash
# Writes the CSV examples/sipp/register.xml reads, from a lab's users.json:
#   examples/sipp/users.sh tandem-lab pool1 > users.csv
set -euo pipefail
lab=${1:-tandem-lab}
pool=${2:-pool1}
python3 - "$lab/users.json" "$pool" <<'PY'
import json, sys
users = json.load(open(sys.argv[1]))
print("SEQUENTIAL")
for u in users:
    address = u["sip_address"].removeprefix("sip:")
    name, domain = address.split("@", 1)
    if f".{sys.argv[2]}" in name:
        print(f"{address};[authentication username={address} password={u['password']}];{domain};{name}")
PY
