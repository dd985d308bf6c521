#!/bin/sh
# An arm64 Node.js to run under qemu-user (issue 13): Debian's nodejs:arm64 and
# the libraries it needs, DOWNLOADED (apt-get download) and unpacked into a
# private root, never installed: installing nodejs:arm64 would replace the
# machine's own nodejs. Needs the arm64 architecture in dpkg's list
# (dpkg --add-architecture arm64; apt-get update), Debian's qemu-user and
# gcc-aarch64-linux-gnu (for the prebuild itself).
#
#   test/ship/arm64-node.sh [ROOT]     (default /var/cache/kind-tunnel/arm64-node)
# Prints ROOT; then: qemu-aarch64 -L ROOT ROOT/usr/bin/node ...
set -eu
root=${1:-/var/cache/kind-tunnel/arm64-node}
if [ -x "$root/usr/bin/node" ]; then echo "$root"; exit 0; fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "arm64-node: dpkg has no arm64 architecture (dpkg --add-architecture arm64 && apt-get update)" >&2
  exit 1
fi
pkgs="nodejs:arm64 libnode108:arm64 libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 libuv1:arm64 libicu72:arm64 libssl3:arm64
libc-ares2:arm64 libbrotli1:arm64 libnghttp2-14:arm64 zlib1g:arm64 node-acorn node-cjs-module-lexer node-undici node-xtend node-busboy"
debs=$(mktemp -d "${TMPDIR:-/tmp}/kt-arm64-debs.XXXXXX")
stage="$root.tmp.$$"
trap 'rm -rf "$debs" "$stage"' EXIT INT TERM
# shellcheck disable=SC2086
(cd "$debs" && apt-get download -qq $pkgs) || (apt-get update -qq && cd "$debs" && apt-get download -qq $pkgs)
mkdir -p "$stage"
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$stage"; done
"$stage/usr/bin/node" -v >/dev/null 2>&1 || true
mkdir -p "$(dirname "$root")"
rm -rf "$root"
mv "$stage" "$root"
echo "$root"
