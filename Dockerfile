# syntax=docker/dockerfile:1
#
# One recipe for the four service images; pick one with its target:
#   docker build --target command-api -t rpa/command-api .    (also query-api, projector, robot)
# docker-compose.yml builds all four from here.
#
# The sources are TypeScript run with tsx in development. The images do not carry tsx or any other development
# dependency: the build stage transpiles every file one by one with esbuild (already in the lock through tsx), keeping
# the workspace layout, so that each package resolves its dependencies exactly as npm laid them out (a package may
# hold its own copy of a dependency in its own node_modules). Types are checked by `npm run typecheck`, not here.

ARG NODE_IMAGE=node:20.19-bookworm-slim

# Only the manifests, so that the dependency layers are rebuilt only when a manifest or the lock changes.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY services/command-api/package.json services/command-api/
COPY services/query-api/package.json services/query-api/
COPY services/projector/package.json services/projector/
COPY services/robot/package.json services/robot/

# Full install (esbuild) and transpilation of shared/src and services/*/src to dist/, tests left out. @rpa/shared
# points at its TypeScript sources for development; the images run its transpiled entry point instead.
FROM manifests AS build
RUN npm ci --no-audit --no-fund
COPY shared/src shared/src
COPY services/command-api/src services/command-api/src
COPY services/query-api/src services/query-api/src
COPY services/projector/src services/projector/src
COPY services/robot/src services/robot/src
RUN set -eu; \
    for pkg in shared services/command-api services/query-api services/projector services/robot; do \
      find "$pkg/src" -name '*.ts' ! -name '*.test.ts' -print0 \
        | xargs -0 node_modules/.bin/esbuild --platform=node --target=node20 --format=esm --log-level=warning \
            --outbase="$pkg/src" --outdir="$pkg/dist"; \
    done; \
    cd shared && npm pkg set 'exports[.]=./dist/index.js' && npm pkg delete 'exports[./testing]'

# Production dependencies only, in the same workspace layout; an empty node_modules per service keeps the COPY
# below valid when npm hoisted everything of that service to the root.
FROM manifests AS prod-deps
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force \
    && mkdir -p shared/node_modules services/command-api/node_modules services/query-api/node_modules \
         services/projector/node_modules services/robot/node_modules

# What every service image shares: Node, the production dependencies, @rpa/shared, the unprivileged `node` user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps --chown=root:root /app/package.json /app/package-lock.json ./
COPY --from=prod-deps --chown=root:root /app/node_modules ./node_modules
COPY --from=prod-deps --chown=root:root /app/shared/node_modules ./shared/node_modules
COPY --from=build --chown=root:root /app/shared/package.json ./shared/package.json
COPY --from=build --chown=root:root /app/shared/dist ./shared/dist

FROM runtime AS command-api
COPY --from=prod-deps /app/services/command-api/node_modules ./services/command-api/node_modules
COPY --from=build /app/services/command-api/package.json /app/services/command-api/
COPY --from=build /app/services/command-api/dist ./services/command-api/dist
USER node
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "services/command-api/dist/server.js"]

FROM runtime AS query-api
COPY --from=prod-deps /app/services/query-api/node_modules ./services/query-api/node_modules
COPY --from=build /app/services/query-api/package.json /app/services/query-api/
COPY --from=build /app/services/query-api/dist ./services/query-api/dist
USER node
ENV PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8081)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "services/query-api/dist/server.js"]

FROM runtime AS projector
COPY --from=prod-deps /app/services/projector/node_modules ./services/projector/node_modules
COPY --from=build /app/services/projector/package.json /app/services/projector/
COPY --from=build /app/services/projector/dist ./services/projector/dist
USER node
ENV HEALTH_PORT=9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HEALTH_PORT||9091)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "services/projector/dist/main.js"]

# The robot drives Debian's Chromium headless shell (playwright-core brings no browser; the headless shell is the
# build Playwright runs headless, at a quarter of the full browser's CPU per session) with the fonts pages need.
FROM runtime AS robot
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium-headless-shell fonts-liberation fonts-noto-core fonts-noto-cjk \
         fonts-noto-color-emoji ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=prod-deps /app/services/robot/node_modules ./services/robot/node_modules
COPY --from=build /app/services/robot/package.json /app/services/robot/
COPY --from=build /app/services/robot/dist ./services/robot/dist
USER node
ENV CHROMIUM_PATH=/usr/lib/chromium/chromium-headless-shell HEALTH_PORT=9092
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HEALTH_PORT||9092)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "services/robot/dist/main.js"]
