# syntax=docker/dockerfile:1
# The `rig` binary in a small image: every compose service of the stack runs it
# (`rig serve --role ...`, `rig run ...`), and so does the Kubernetes load job (deploy/k8s).
#
#   docker build -t checkout-chaos-rig:dev .

# Build on bookworm: the same glibc and OpenSSL 3 as the runtime image.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rig \
    && install -m 0755 target/release/rig /usr/local/bin/rig

FROM debian:bookworm-slim
# libssl3: the Toxiproxy client links OpenSSL; curl: the compose healthchecks (GET /healthz).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin rig \
    && mkdir -p /app/runs \
    && chown -R rig:rig /app
COPY --from=builder /usr/local/bin/rig /usr/local/bin/rig
COPY profiles /app/profiles
WORKDIR /app
USER rig:rig
# region a, region b, provider, `rig run --metrics-addr` / `rig load --metrics-addr`
EXPOSE 8081 8082 8090 9464
ENTRYPOINT ["rig"]
CMD ["--help"]
