# The crebito API image.
#
#   docker build -t crebito .
#   docker run --rm -p 9999:9999 crebito            # embedded SQLite, port 9999
#   docker run --rm -p 9999:9999 -e DATABASE_URL=postgres://user:pass@host:5432/db crebito
#
# Configuration is environment only (see `crebito serve --help`):
# CREBITO_LISTEN (0.0.0.0:9999 or unix:/path), DATABASE_URL (default: a SQLite
# file under the working directory /var/lib/crebito), CREBITO_POOL_SIZE,
# CREBITO_WORKER_THREADS, RUST_LOG.

ARG RUST_VERSION=1.95

# Manifests and the lock file only, with stub sources for every workspace
# member: the dependency layer below is rebuilt only when these change.
FROM rust:${RUST_VERSION}-slim-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN mkdir -p /skeleton \
 && cp Cargo.toml Cargo.lock /skeleton/ \
 && for manifest in crates/*/Cargo.toml; do \
        crate=$(dirname "$manifest"); \
        mkdir -p "/skeleton/$crate/src"; \
        cp "$manifest" "/skeleton/$manifest"; \
        echo 'fn main() {}' > "/skeleton/$crate/src/main.rs"; \
        : > "/skeleton/$crate/src/lib.rs"; \
    done

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY --from=skeleton /skeleton ./
RUN cargo build --release --locked -p crebito
# The API itself: its sources and embedded migrations (.dockerignore keeps
# the other crates' sources out; their stubs stay). Touched so that cargo
# rebuilds them instead of trusting the stub build's timestamps.
COPY . .
RUN find crates/crebito -type f -exec touch {} + \
 && cargo build --release --locked -p crebito \
 && cp target/release/crebito /crebito \
 && install -m 0755 deploy/healthcheck.sh /crebito-healthcheck

FROM debian:bookworm-slim
# curl only for the health probe (it speaks HTTP over a unix socket too).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
        --shell /usr/sbin/nologin crebito \
 && mkdir -p /var/lib/crebito /run/crebito \
 && chown crebito:crebito /var/lib/crebito /run/crebito
COPY --from=build /crebito /usr/local/bin/crebito
# Made executable in the build stage (install -m 0755) and copied with its
# mode, not `COPY --chmod`: that flag needs BuildKit, and this file builds
# with the classic builder too (Docker Engine 20.10, docker-compose 1.29:
# scripts/compose). For the same reason there is no `# syntax=` line: it
# makes BuildKit fetch a frontend image from a registry, and nothing here
# needs more than the frontend built into every builder.
COPY --from=build /crebito-healthcheck /usr/local/bin/crebito-healthcheck
USER crebito
WORKDIR /var/lib/crebito
ENV CREBITO_LISTEN=0.0.0.0:9999 \
    RUST_LOG=info
EXPOSE 9999
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["crebito-healthcheck"]
ENTRYPOINT ["crebito"]
CMD ["serve"]
