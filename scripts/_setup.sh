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
    # $1: pip extras spec, e.g. ".[test]"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        install_debian_packages python3-venv
    fi
    # The data path's C extension (oneservice/_datapath.c) is built by pip: a compiler and
    # the Python and OpenSSL headers. Without them the install still works (pure Python).
    install_debian_packages gcc python3-dev libssl-dev
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo_root$1"
    VENV_PYTHON="$venv/bin/python"
}
