# Sourced: a virtualenv in .venv with the Python tools the tests use (tests/requirements.txt).
# Sets PYBIN to its bin directory. Installs only what is missing. Tests running side by side
# source it at once: one installs while the others wait (flock), and the stamp is written only
# once the install succeeded, so a failed or interrupted install is tried again.
venv="$(pwd)/.venv"
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
stamp="$venv/.requirements.sha"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (
    flock 9
    if [ ! -x "$venv/bin/python" ]; then
      python3 -m venv "$venv"
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
      "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt &&
        echo "$want" >"$stamp"
    fi
  ) 9>"$(pwd)/.venv.lock"
fi
PYBIN="$venv/bin"
