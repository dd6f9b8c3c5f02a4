# Shared by scripts/test and scripts/demo: the Debian packages clusterd needs,
# installed with apt-get when running as root, or named in the one
# `sudo apt-get install` line a normal user must run first.

CLUSTERD_PACKAGES=(
  cmake g++ make ninja-build pkg-config
  libuv1-dev libhiredis-dev libmsgpack-dev libmsgpack-cxx-dev libpq-dev catch2
  libyaml-cpp-dev nlohmann-json3-dev libhttp-parser-dev libcli11-dev libfmt-dev
  zlib1g-dev libcurl4-openssl-dev
  redis-server redis-tools postgresql curl
  python3  # the SMTP transport test talks to Python's smtpd; bench/shop.sh
  clang libclang-rt-14-dev  # scripts/fuzz: clang 14 and its libFuzzer
)

# ensure_packages [extra packages...]
ensure_packages() {
  local wanted=("${CLUSTERD_PACKAGES[@]}" "$@") missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "clusterd needs these Debian packages first:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 111
  fi
}

# cmake_generator BUILD_DIR: `-G Ninja` for a new build directory. Ninja
# compiles a target's files while the libraries it links are still being
# built, which Make does not: on two cores the Release build takes a fifth
# less time, the fuzz build a third less. A directory configured before
# keeps its generator.
cmake_generator() {
  [ -f "$1/CMakeCache.txt" ] || echo "-GNinja"
}

# build_clusterd BUILD_DIR [cmake args...]
build_clusterd() {
  local dir=$1
  shift
  cmake $(cmake_generator "$dir") -S "$ROOT" -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
