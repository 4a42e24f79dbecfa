# Shared by scripts/run-service and scripts/run-tests: install what the project needs on a
# Debian machine (as root) and make a virtual environment with the project in it.
# Sourced, not run: sets VENV_PYTHON.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$1 must run as root (it installs Debian packages and manages interfaces)" >&2
        exit 1
    fi
}

install_debian_packages() {
    # $@: packages beyond the base set.
    export DEBIAN_FRONTEND=noninteractive
    local packages=(iproute2 nftables procps "$@")
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

make_venv() {
    # $1: pip extras spec, e.g. "[test]"
    # Debian's own interpreter, not whatever python3 comes first on PATH (pyenv, a build of
    # one's own): python3-dev below is its headers, for the data path's C extension
    # (oneservice/datapath_c/; without a compiler the install still works, pure Python),
    # and Debian builds it with profile-guided and link-time optimisation, which the
    # node's Python work runs measurably faster on (docs/PERFORMANCE.md).
    install_debian_packages python3 python3-venv gcc python3-dev libssl-dev
    local python=/usr/bin/python3
    if [ -x "$venv/bin/python" ] && ! grep -qx "home = /usr/bin" "$venv/pyvenv.cfg" 2>/dev/null; then
        echo "remaking $venv from $python (it was made from another interpreter)" >&2
        rm -rf "$venv"
    fi
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    # The project is installed editable: its Python files are read from the checkout. What
    # pip must redo is the metadata, the entry points and the C extensions, so an install
    # whose sources of those are unchanged is not repeated (a restart needs no index).
    local stamp="$venv/oneservice-installed$1" sources
    sources=$(install_sources_digest)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo_root$1"
        echo "$sources" > "$stamp"
        # An install with extras includes the plain one.
        [ -z "$1" ] || echo "$sources" > "$venv/oneservice-installed"
    fi
    VENV_PYTHON="$venv/bin/python"
}

install_sources_digest() {
    # What an editable install builds from: the packaging files and the C sources.
    (cd "$repo_root" && cat pyproject.toml setup.py \
        $(find oneservice -name '*.c' -o -name '*.h' | LC_ALL=C sort)) | sha256sum | cut -d' ' -f1
}
