# syntax=docker/dockerfile:1
# regcache: build stage compiles TypeScript and the sqlite3 native addon; the runtime
# stage carries production dependencies only.

FROM node:24-bookworm-slim AS build
WORKDIR /app
# sqlite3 (under @keyv/sqlite) builds from source: no prebuilt binary is downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
# tini is PID 1 so SIGTERM reaches node and zombies are reaped.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 regcache \
 && useradd --system --uid 10001 --gid regcache --home-dir /data --shell /usr/sbin/nologin regcache \
 && mkdir -p /data /certs \
 && chown regcache:regcache /data /certs
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY deploy/node-setup.sh ./deploy/node-setup.sh
ENV NODE_ENV=production \
    REGCACHE_LISTEN=0.0.0.0:3128 \
    REGCACHE_DATA_DIR=/data \
    REGCACHE_CERTS_DIR=/certs
USER 10001:10001
VOLUME ["/data", "/certs"]
EXPOSE 3128
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3128/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["serve"]
