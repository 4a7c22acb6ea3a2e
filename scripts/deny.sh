#!/usr/bin/env bash
# `make deny` (part of `make test`): cargo deny against deny.toml.
#  - licenses, bans (`backoff` is banned) and sources (crates.io only): always; offline once
#    the crates in Cargo.lock are downloaded.
#  - advisories (the RustSec database): only when the database can be had. It is a git
#    repository, cloned shallow into .cache/cargo-deny/advisory-dbs from DENY_ADVISORY_DB_URL
#    (default https://github.com/rustsec/advisory-db; a mirror or a local clone works too). When
#    it cannot be fetched, an earlier copy is used and its age printed; with no copy at all the
#    advisories are NOT checked, and this says so loudly (the other checks still decide the exit
#    status).
# cargo-deny is built once from crates.io (`cargo install --locked`, pinned version, ~5 min on
# two cores) into .cache/cargo-deny; a cargo-deny of that version on PATH is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.20.2
CACHE=.cache/cargo-deny
DB_URL="${DENY_ADVISORY_DB_URL:-https://github.com/rustsec/advisory-db}"
# cargo-deny looks for the database of its default URL under this name in its db-path.
DB="$CACHE/advisory-dbs/advisory-db-3157b0e258782691"

bin=$(command -v cargo-deny || true)
if [ -z "$bin" ] || [ "$("$bin" --version)" != "cargo-deny $VERSION" ]; then
  bin="$CACHE/bin/cargo-deny"
  if ! [ -x "$bin" ] || [ "$("$bin" --version)" != "cargo-deny $VERSION" ]; then
    echo "== deny: building cargo-deny $VERSION from crates.io into $CACHE (once)"
    start=$(date +%s)
    cargo install --quiet --locked --version "$VERSION" --root "$CACHE" cargo-deny
    echo "deny: built in $(($(date +%s) - start)) s"
  fi
fi

echo "== cargo deny: licenses, bans, sources"
"$bin" --locked check licenses bans sources

echo "== cargo deny: advisories"
loud() { printf '\n%s\n%s\n%s\n\n' "**********************************************************************" "$1" "**********************************************************************"; }
fetched=false
mkdir -p "$CACHE/advisory-dbs"
if timeout 60 git clone --quiet --depth 1 "$DB_URL" "$DB.new" 2>/dev/null; then
  rm -rf "$DB" && mv "$DB.new" "$DB"
  fetched=true
else
  rm -rf "$DB.new"
fi
if ! [ -d "$DB/.git" ]; then
  loud "*** ADVISORIES NOT CHECKED: the RustSec advisory database ($DB_URL)
*** cannot be fetched from this machine and there is no earlier copy in $CACHE.
*** Known vulnerabilities in dependencies were NOT looked for. Licenses, bans and
*** sources were checked. Set DENY_ADVISORY_DB_URL to a reachable mirror to check them."
  exit 0
fi
age="$(git -C "$DB" log -1 --format=%cs) ($(git -C "$DB" log -1 --format=%cr))"
if [ "$fetched" = true ]; then
  echo "deny: advisory database fetched from $DB_URL, newest advisory commit $age"
else
  loud "*** ADVISORY DATABASE NOT REFRESHED: $DB_URL cannot be fetched;
*** checking against the earlier copy in $CACHE, last changed $age."
fi
config=$(mktemp)
trap 'rm -f "$config"' EXIT
# deny.toml with the database kept under .cache; --offline: use it as it is, fetch nothing.
sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$PWD/$CACHE/advisory-dbs\"|" deny.toml >"$config"
grep -q '^db-path = ' "$config" || { echo "deny: deny.toml has no [advisories] table" >&2; exit 1; }
"$bin" --locked --offline --config "$config" check advisories
