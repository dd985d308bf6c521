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
#
# Stages, each cached on its own inputs, so a change to the TypeScript rebuilds
# only the `js` stage: `deps` (package.json, package-lock.json, node_modules),
# `prod` (deps without devDependencies), `addon` (the C sources only) and `js`
# (src/**/*.ts, emitted without a type check: `npm test` type-checks; the image
# needs only the JavaScript). The final image takes only what it runs from each.
ARG BASE=node:22-bookworm-slim

FROM ${BASE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
# The context's node_modules when the checkout has one (offline), else the
# registry. package.json rides along so the COPY always has a source.
COPY package.json node_module[s] ./node_modules/
RUN rm node_modules/package.json; \
    if [ -f node_modules/.package-lock.json ]; then echo "sidecar: node_modules from the build context"; \
    else npm ci --ignore-scripts --no-audit --no-fund; fi

# What `npm prune --omit=dev` removes (the lockfile's `dev` packages), without
# its 5-10 s of CPU to load the whole tree first.
FROM deps AS prod
RUN node -e "const fs = require('node:fs'); \
  for (const [p, v] of Object.entries(require('/src/package-lock.json').packages)) \
    if (p.startsWith('node_modules/') && v.dev === true) fs.rmSync('/src/' + p, { recursive: true, force: true })"

FROM ${BASE} AS addon
RUN command -v cc >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev)
COPY src/dataplane/native/*.c src/dataplane/native/*.h src/dataplane/native/build-addon.mjs src/dataplane/native/source-hash.cjs /src/src/dataplane/native/
RUN KT_REQUIRE_NATIVE=1 node /src/src/dataplane/native/build-addon.mjs

FROM deps AS js
COPY tsconfig.json /src/
COPY docker/tsconfig.image.json /src/docker/
COPY src/ /src/src/
RUN node node_modules/typescript/bin/tsc -p docker/tsconfig.image.json

FROM ${BASE}
RUN command -v ip >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends iproute2 && rm -rf /var/lib/apt/lists/*)
COPY package.json /app/
COPY --from=prod /src/node_modules /app/node_modules
# The addon with the sources it was built from: the loader checks one against the other.
COPY --from=addon /src/src/dataplane/native /app/src/dataplane/native
COPY --from=js /src/dist/src /app/dist/src
WORKDIR /app
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
