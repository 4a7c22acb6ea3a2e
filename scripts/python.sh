# Sourced: a virtualenv in .venv with the Python tools the tests use (tests/requirements.txt).
# Sets PYBIN to its bin directory. Installs only what is missing.
venv="$(pwd)/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha"
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" >"$stamp"
fi
PYBIN="$venv/bin"
