# kind-tunnel as a sidecar on the kind network, for CI:
#   docker build -t kind-tunnel:ci -f docker/sidecar.Dockerfile .
#   docker run -d --network kind --cap-add NET_ADMIN -v "$KUBECONFIG:/kubeconfig:ro" \
#     kind-tunnel:ci up --mode sidecar --kubeconfig /kubeconfig --json-logs
# The LB IPs are taken from the top of the kind subnet and added to eth0 (hence
# NET_ADMIN and iproute2). See docs/ci.md.
#
# The image builds the native addon (KT_REQUIRE_NATIVE=1: a source that does not
# compile fails the build), so its listeners run on the native lane; `docker run
# IMAGE doctor --no-docker` shows `dataplane: native (local build)`.
# Offline (no registry): run `npm ci` in the checkout first (its node_modules is
# the build context's) and pass a local base with node, npm, a shell, a C
# compiler and ip: --build-arg BASE="$(docker/build-base.sh --sdk)".
ARG BASE=node:22-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY . .
# The context's node_modules when the checkout has one (offline), else the registry.
RUN if [ -f node_modules/.package-lock.json ]; then echo "sidecar: node_modules from the build context"; \
    else npm ci --ignore-scripts --no-audit --no-fund; fi
RUN command -v cc >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev)
RUN node node_modules/typescript/bin/tsc -p tsconfig.json \
 && KT_REQUIRE_NATIVE=1 node src/dataplane/native/build-addon.mjs \
 && npm prune --omit=dev --offline --no-audit --no-fund

FROM ${BASE}
RUN command -v ip >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends iproute2 && rm -rf /var/lib/apt/lists/*)
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# The addon with the sources it was built from: the loader checks one against the other.
COPY --from=build /src/src/dataplane/native ./src/dataplane/native
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
