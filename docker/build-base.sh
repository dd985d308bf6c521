#!/bin/sh
# Build a minimal local base image for the relay when no registry is reachable:
# this machine's `node` binary plus the shared libraries `ldd` lists, imported
# as a rootfs with `docker import`. No shell, no package manager in the image.
#
#   docker/build-base.sh [TAG]      (default kind-tunnel-base:node-<version>)
# Prints the tag on stdout. Reuses an existing image with that tag.
set -eu

node_bin=$(command -v node)
node_bin=$(readlink -f "$node_bin")
version=$("$node_bin" -p 'process.version')
tag=${1:-kind-tunnel-base:node-$version}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/kt-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM

mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc" "$root/run"
chmod 1777 "$root/tmp"
cp "$node_bin" "$root/usr/local/bin/node"
# Every library the dynamic loader needs, at the same path, plus the loader itself.
for lib in $(ldd "$node_bin" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"

tar -C "$root" -cf - . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'USER 65532:65532' \
  --change 'ENTRYPOINT ["/usr/local/bin/node"]' \
  - "$tag" >/dev/null
echo "$tag"
