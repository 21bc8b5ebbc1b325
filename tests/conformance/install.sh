#!/usr/bin/env bash
# Installs the third-party tools the conformance tests drive, at fixed versions, into a cache
# folder (default: $HOME/.cache/rig-conformance), and prints the folder. Reuses what is there.
#
#   RIG_CONFORMANCE_CACHE=DIR bash tests/conformance/install.sh
#
# - toxiproxy-python 0.1.1 and stripe 16.1.0 (PyPI), into DIR/py
# - toxiproxy-node-client 4.1.0, playwright-core 1.64.1 and stripe 23.2.0 (npm), into DIR/node
#
# Debian packages they need beside (installed by .ci/run): nodejs, npm, chromium,
# libhdrhistogram-java and a Java runtime.
set -euo pipefail
cache="${RIG_CONFORMANCE_CACHE:-$HOME/.cache/rig-conformance}"
mkdir -p "$cache"
if [ ! -f "$cache/py/toxiproxy_python-0.1.1.dist-info/METADATA" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$cache/py" toxiproxy-python==0.1.1 >&2
fi
if [ ! -f "$cache/py/stripe-16.1.0.dist-info/METADATA" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$cache/py" stripe==16.1.0 >&2
fi
if [ ! -f "$cache/node/node_modules/toxiproxy-node-client/package.json" ] ||
   ! grep -q '"version": "4.1.0"' "$cache/node/node_modules/toxiproxy-node-client/package.json"; then
  npm install -q --no-audit --no-fund --prefix "$cache/node" toxiproxy-node-client@4.1.0 >&2
fi
if [ ! -f "$cache/node/node_modules/playwright-core/package.json" ] ||
   ! grep -q '"version": "1.64.1"' "$cache/node/node_modules/playwright-core/package.json"; then
  npm install -q --no-audit --no-fund --prefix "$cache/node" playwright-core@1.64.1 >&2
fi
if [ ! -f "$cache/node/node_modules/stripe/package.json" ] ||
   ! grep -q '"version": "23.2.0"' "$cache/node/node_modules/stripe/package.json"; then
  npm install -q --no-audit --no-fund --prefix "$cache/node" stripe@23.2.0 >&2
fi
echo "$cache"
