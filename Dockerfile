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
 && cp target/release/crebito /crebito

FROM debian:bookworm-slim
# No curl and no shell for the health probe: `crebito healthcheck` is the
# probe (GET /health over TCP or a unix socket). Docker runs it inside the
# container's CPU quota: 1.6-1.8 ms of CPU per probe, against 6-11 ms for
# sh + curl (docs/benchmark.md).
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --shell /usr/sbin/nologin crebito \
 && mkdir -p /var/lib/crebito /run/crebito \
 && chown crebito:crebito /var/lib/crebito /run/crebito
COPY --from=build /crebito /usr/local/bin/crebito
USER crebito
WORKDIR /var/lib/crebito
ENV CREBITO_LISTEN=0.0.0.0:9999 \
    RUST_LOG=info
EXPOSE 9999
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["crebito", "healthcheck"]
ENTRYPOINT ["crebito"]
CMD ["serve"]
