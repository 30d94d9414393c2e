#!/usr/bin/env bash
# What the tests need from the system: OpenSSH (the lab's sshd and Ansible's ssh), bubblewrap (runs are
# isolated with it), Debian's Chromium (the API page is checked in a headless browser) and jq (the README's
# walkthrough, which a test runs, reads answers with it).
# Installs what is missing when it can (root with apt-get); otherwise says in one line what to install.
set -euo pipefail

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
{ command -v ssh && command -v ssh-keygen; } >/dev/null || missing+=(openssh-client)
command -v bwrap >/dev/null || missing+=(bubblewrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v jq >/dev/null || missing+=(jq)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "make test needs these system packages: ${missing[*]} (on Debian or Ubuntu: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The tests start their own sshd on loopback; keep the package from starting a system one.
guard=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
fi
trap '[ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d' EXIT
echo "installing ${missing[*]} for the tests" >&2
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
