# syntax=docker/dockerfile:1
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

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependency layer: the manifests with stub sources, so the dependencies are
# compiled once and reused until Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY crates/crebito/Cargo.toml crates/crebito/
COPY crates/crebito-load/Cargo.toml crates/crebito-load/
RUN mkdir -p crates/crebito/src crates/crebito-load/src \
 && echo 'fn main() {}' > crates/crebito/src/main.rs \
 && touch crates/crebito/src/lib.rs \
 && echo 'fn main() {}' > crates/crebito-load/src/main.rs \
 && cargo build --release --locked -p crebito \
 && rm -rf crates/crebito/src crates/crebito-load/src
# The API itself (sources and the embedded migrations).
COPY crates/crebito crates/crebito
RUN touch crates/crebito/src/main.rs crates/crebito/src/lib.rs \
 && cargo build --release --locked -p crebito \
 && cp target/release/crebito /crebito

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
COPY deploy/healthcheck.sh /usr/local/bin/crebito-healthcheck
USER crebito
WORKDIR /var/lib/crebito
ENV CREBITO_LISTEN=0.0.0.0:9999 \
    RUST_LOG=info
EXPOSE 9999
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["crebito-healthcheck"]
ENTRYPOINT ["crebito"]
CMD ["serve"]
