# Shared by scripts/up and scripts/test: find a Python 3.13+ and make .venv with openscws in it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

find_python() {
    for candidate in "${PYTHON:-}" python3.14 python3.13 "$HOME/.pyenv/versions/3.13.0/bin/python" python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[3-9]' | sort -rV); do
            echo "$(pyenv root)/versions/$v/bin/python"
            return 0
        done
    fi
    return 1
}

ensure_venv() {
    local extras="$1"
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
        local py
        py="$(find_python)" || {
            echo "openscws needs Python 3.13 or newer. Install it (e.g. 'pyenv install 3.13'," >&2
            echo "or your distribution's python3.13 package) or set PYTHON=/path/to/python3.13." >&2
            exit 1
        }
        echo "creating .venv with $py" >&2
        rm -rf .venv
        "$py" -m venv .venv
    fi
    local stamp=".venv/.installed-$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip >&2
        .venv/bin/python -m pip install --quiet -e ".[$extras]" >&2
        touch "$stamp"
    fi
}
