# regcache: the build stage compiles the sqlite3 native addon and the TypeScript; the runtime
# stage carries the production dependencies and the compiled JavaScript only.
# No "# syntax=" line: BuildKit would fetch that frontend image from Docker Hub, and the
# built-in one reads everything here, as does the classic builder.

FROM node:24-bookworm-slim AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# Dependencies before the source, so that a source change reuses these layers. --ignore-scripts
# because this package's own prepare script is the build, which needs src/; then sqlite3's
# install script (allowed in package.json "allowScripts") runs alone: prebuild-install first
# tries to download a prebuilt addon from GitHub, and where none is reachable (an offline
# builder) node-gyp compiles it, hence python3, make and g++, against the headers of this
# image's Node.js rather than downloaded ones: npm_config_nodedir is node-gyp's setting (npm
# warns that it does not know it, and passes it on). Of that build, only the addon itself is
# kept: the objects, static libraries and sqlite sources are another ~21 MB. .npmrc keeps npm from
# installing a dev dependency's unused peer (see the file).
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm_config_nodedir=/usr/local npm rebuild sqlite3 \
 && mv node_modules/sqlite3/build/Release/node_sqlite3.node /tmp/ \
 && rm -rf node_modules/sqlite3/build node_modules/sqlite3/deps node_modules/sqlite3/src \
 && mkdir -p node_modules/sqlite3/build/Release \
 && mv /tmp/node_sqlite3.node node_modules/sqlite3/build/Release/
# The runtime's node_modules, also independent of the source: no dev dependencies, and no
# optional ones, which here are only node-gyp and its dependencies.
RUN mkdir /prod \
 && cp -a package.json package-lock.json .npmrc node_modules /prod/ \
 && npm prune --prefix /prod --omit=dev --omit=optional --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim
# tini is PID 1 so SIGTERM reaches node and zombies are reaped. The image carries it because
# Kubernetes has no `docker run --init`; compose therefore does not add a second one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 regcache \
 && useradd --system --uid 10001 --gid regcache --home-dir /data --shell /usr/sbin/nologin regcache \
 && mkdir -p /data /certs \
 && chown regcache:regcache /data /certs \
 && ln -s /app/dist/cli/main.js /usr/local/bin/regcache
WORKDIR /app
COPY --from=build /prod/node_modules ./node_modules
COPY --from=build /app/package.json ./
COPY --from=build /app/dist ./dist
COPY deploy/node-setup.sh ./deploy/node-setup.sh
COPY LICENSE ./
ENV NODE_ENV=production \
    REGCACHE_LISTEN=0.0.0.0:3128 \
    REGCACHE_DATA_DIR=/data \
    REGCACHE_CERTS_DIR=/certs
USER 10001:10001
# The cache only, kept out of the container's writable layer; it is rebuildable, so an
# anonymous volume that goes with `docker run --rm` loses nothing. /certs is deliberately not
# a volume: an anonymous one would give every run a new CA (and leave its key behind in
# Docker's volume directory). Mount /certs to keep the CA (docs/operations.md, "Docker").
VOLUME ["/data"]
EXPOSE 3128
# SIGTERM drains: /readyz fails for --drain-delay, then in-flight responses get
# --shutdown-grace, 5 s + 120 s by default. An image cannot set the stop timeout (Docker's is
# 10 s): run with --stop-timeout 135, stop with `docker stop -t 135` (compose: stop_grace_period).
STOPSIGNAL SIGTERM
# `regcache health` probes the address in REGCACHE_LISTEN, so a container given another port
# with -e REGCACHE_LISTEN=... stays healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["regcache", "health"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["serve"]
