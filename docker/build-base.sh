#!/bin/sh
# Build a minimal local base image for the relay when no registry is reachable:
# this machine's `node` binary plus the shared libraries `ldd` lists, imported
# as a rootfs with `docker import`. No shell, no package manager in the image.
#
#   docker/build-base.sh [TAG]        (default kind-tunnel-base:node-<version>)
#   docker/build-base.sh --sdk [TAG]  (default kind-tunnel-sdk:node-<version>-<hash>)
# Prints the tag on stdout. Reuses an existing image with that tag. The SDK's
# default tag carries a hash of what goes in (this script, Node's version, the
# installed versions of the Debian packages below), so a change to any of
# them makes a new base instead of reusing a stale one.
#
# --sdk: a base to build docker/sidecar.Dockerfile offline: also npm, a shell
# (Debian's busybox-static), `ip` (iproute2) and this machine's C compiler
# (Debian's gcc and libc6-dev, every file of their packages), running as root.
set -eu

sdk=0
if [ "${1:-}" = "--sdk" ]; then sdk=1; shift; fi
node_bin=$(command -v node)
node_bin=$(readlink -f "$node_bin")
version=$("$node_bin" -p 'process.version')
# The SDK: the packages' own file lists, copied as they are (symlinks kept).
# libbsd0 and libmd0: iproute2's ip needs them.
pkgs="gcc gcc-12 cpp-12 binutils binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0 libgprofng0 libgcc-12-dev
libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt-dev libcrypt1 libisl23 libmpc3 libmpfr6 libgmp10 libzstd1 libjansson4 zlib1g
libgcc-s1 libstdc++6 iproute2 libbpf1 libelf1 libmnl0 libcap2 libcap2-bin libdb5.3 libxtables12 libselinux1 libpcre2-8-0 libtirpc3 libtirpc-dev libnsl-dev libnsl2
libbsd0 libmd0"
if [ $sdk = 1 ]; then
  # shellcheck disable=SC2086
  hash=$( { cat "$0"; echo "$version"; dpkg-query -W $pkgs 2>/dev/null; } | sha256sum | cut -c1-12)
  tag=${1:-kind-tunnel-sdk:node-$version-$hash}
else
  tag=${1:-kind-tunnel-base:node-$version}
fi

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

if [ $sdk = 0 ]; then
  tar -C "$root" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'USER 65532:65532' \
    --change 'ENTRYPOINT ["/usr/local/bin/node"]' \
    - "$tag" >/dev/null
  echo "$tag"
  exit 0
fi

# The SDK's files.
list="$root.list"
arch=$(dpkg --print-architecture)
for p in $pkgs; do dpkg -L "$p:$arch" 2>/dev/null || dpkg -L "$p" 2>/dev/null || true; done | while read -r f; do
  # Files and symlinks to files (a symlink to a folder, /sbin -> usr/sbin, would hide what follows).
  if [ -d "$f" ]; then continue; fi
  if [ -f "$f" ] || [ -L "$f" ]; then echo "${f#/}"; fi
done > "$list"
tar -C / -cf - --no-recursion -T "$list" | tar -C "$root" -xf -
rm -f "$list"
# A shell and the usual commands; cc; npm and npx (its own folder, as Node's installers lay it).
bb=$(command -v busybox)
mkdir -p "$root/bin" "$root/usr/lib/node_modules" "$root/root" "$root/opt/busybox"
cp "$bb" "$root/opt/busybox/busybox"
# Last on PATH: the packages' own commands (ip from iproute2) come first.
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$root/opt/busybox/$a"; done
ln -sf /opt/busybox/busybox "$root/bin/sh"
ln -sf gcc "$root/usr/bin/cc"
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -sf /usr/lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf /usr/lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
[ -e "$root/usr/bin/env" ] || ln -sf /opt/busybox/busybox "$root/usr/bin/env"
# The loader's cache, so the multiarch library folders are searched.
cp -a /etc/ld.so.conf /etc/ld.so.conf.d "$root/etc/"
ldconfig -r "$root"
# Node's headers, for the addon (include/node beside node's prefix).
node_inc=$(dirname "$(dirname "$node_bin")")/include/node
if [ -d "$node_inc" ]; then mkdir -p "$root/usr/local/include"; cp -a "$node_inc" "$root/usr/local/include/node"; fi
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
tar -C "$root" -cf - . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/busybox' \
  --change 'ENV npm_config_nodedir=/usr/local' \
  --change 'USER 0:0' \
  --change 'CMD ["/bin/sh"]' \
  - "$tag" >/dev/null
echo "$tag"
