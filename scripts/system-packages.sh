#!/usr/bin/env bash
# Install the Debian packages of the lists given (default: scripts/apt-packages.txt) that are
# missing, where apt-get exists and we are root; elsewhere say what is missing and go on (the tests
# that need them skip, with a reason).
set -u
[ $# -gt 0 ] || set -- "$(dirname "$0")/apt-packages.txt"
wanted=$(sed -e 's/#.*//' "$@" | tr -s ' \t' '\n' | grep -v '^$')
missing=()
for package in $wanted; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "note: not installed (needs root and apt-get): ${missing[*]}; the tests that need them skip"
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Services that a package would start at install time stay stopped: the tests start their own.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; fi
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
  || echo "warning: could not install ${missing[*]}; the tests that need them will skip or fail"
[ $made_policy = 1 ] && rm -f "$policy"
exit 0
