# Installs the Debian packages gridwatch builds with (librdkafka is compiled from source),
# where missing. Sourced by scripts/demo.sh and scripts/test.sh.
install_build_deps() {
  local pkgs=(build-essential cmake pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev libsasl2-dev)
  local missing=() p
  for p in "$@"; do pkgs+=("$p"); done
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "build packages: all present"
  fi
  command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; return 1; }
}
