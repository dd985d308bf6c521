# kind-tunnel as a sidecar on the kind network, for CI:
#   docker build -t kind-tunnel:ci -f docker/sidecar.Dockerfile .
#   docker run -d --network kind --cap-add NET_ADMIN -v "$KUBECONFIG:/kubeconfig:ro" \
#     kind-tunnel:ci up --mode sidecar --kubeconfig /kubeconfig --json-logs
# The LB IPs are taken from the top of the kind subnet and added to eth0 (hence
# NET_ADMIN and iproute2). See docs/ci.md.
ARG BASE=node:22-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
