# One image per service from one Dockerfile: --build-arg SERVICE=api|redirect|analytics.
# syntax=docker/dockerfile:1
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true CARGO_INCREMENTAL=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace \
 && mkdir -p /out \
 && cp target/release/shortline-api target/release/shortline-redirect target/release/shortline-analytics /out/

FROM debian:bookworm-slim AS runtime
ARG SERVICE=api
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin shortline \
 && mkdir -p /var/lib/shortline/spill && chown -R 10001:10001 /var/lib/shortline
COPY --from=build /out/shortline-${SERVICE} /usr/local/bin/shortline-service
COPY --from=build /out/shortline-api /usr/local/bin/shortline-api
USER 10001
# CLICK_SPILL_DIR: the redirect service's click spill files (mount a volume there; a new
# named volume takes this directory's owner, uid 10001).
ENV LOG_FORMAT=json RUST_LOG=info SERVICE=${SERVICE} CLICK_SPILL_DIR=/var/lib/shortline/spill
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/shortline-service"]
