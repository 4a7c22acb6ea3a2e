#!/usr/bin/env bash
# Rewrites README.md's configuration table from the KEYS table (src/config/keys.rs), by way of
# the unit test that checks them equal: run after adding or changing a configuration key.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo test --quiet --lib the_readme_configuration_table_is_generated_from_keys 2>&1 || true)
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
m = re.search(r"replace it with:\n\n(\| Variable \| Default \| Meaning \|\n(?:\|.*\|\n)+)", out)
if not m:
    print("README.md's configuration table is up to date")
    sys.exit(0)
table = m.group(1)
readme = open("README.md").read()
new = re.sub(r"\| Variable \| Default \| Meaning \|\n(?:\|.*\|\n)+", lambda _: table, readme, count=1)
open("README.md", "w").write(new)
print("README.md's configuration table rewritten from KEYS")
PY
