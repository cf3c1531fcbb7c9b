# Sourced by the scripts that install Debian packages the tests need (browser.sh, proxy.sh).
# apt_install WHAT PACKAGE...: installs the packages with apt-get, as root or through sudo when that
# works without a password; fails naming WHAT and the packages otherwise.
apt_install() {
  local what="$1"
  shift
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      echo "$what is not installed and this user cannot run apt-get: install Debian's packages $*" >&2
      return 1
    fi
  fi
  echo "$what is not installed; installing it with apt-get ..."
  # A package with a service (nginx) would start it where an init system runs; the tests start their
  # own. Debian's policy-rc.d tells maintainer scripts not to start services: put one in place for the
  # install unless the machine already has one (containers usually do).
  local policy=/usr/sbin/policy-rc.d placed="" status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    placed=1
  fi
  { "${as_root[@]}" apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  } || status=$?
  if [ -n "$placed" ]; then
    "${as_root[@]}" rm -f "$policy"
  fi
  return "$status"
}
