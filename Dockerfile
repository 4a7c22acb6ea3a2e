# syntax=docker/dockerfile:1
# SyncRoot's container image.
#
#   docker build -t syncroot .                        the product: the `syncroot` binary only
#   docker build --target sandbox -t syncroot-sandbox .   the CRM sandboxes, for docker-compose.yml
#
# The product image (the last stage, `runtime`) never contains the sandboxes: they are a
# development tool, built from their own crate into their own image.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: compile in the official Rust image (same Debian release as the runtime, so the
# binary's glibc matches).
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the binary is copied
# out of the cached target directory because cache mounts are not part of the layer. The
# release profile's line tables are stripped (109 MB → 23 MB); symbols stay, so a backtrace
# still names functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncroot --bin syncroot \
    && install -D -m 0755 target/release/syncroot /out/syncroot \
    && strip --strip-debug /out/syncroot

# ---- sandbox-build: the CRM sandboxes (crates/sandbox), only when that target is asked for.
FROM build AS sandbox-build
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncroot-sandbox --bin syncroot-sandbox \
    && install -D -m 0755 target/release/syncroot-sandbox /out/syncroot-sandbox \
    && strip --strip-debug /out/syncroot-sandbox

# ---- sandbox: local HubSpot (8091) and Salesforce (8092) servers for docker-compose.yml.
FROM gcr.io/distroless/cc-debian12:nonroot AS sandbox
COPY --from=sandbox-build /out/syncroot-sandbox /usr/local/bin/syncroot-sandbox
ENV SANDBOX_HUBSPOT_LISTEN=0.0.0.0:8091 \
    SANDBOX_SALESFORCE_LISTEN=0.0.0.0:8092
EXPOSE 8091 8092
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/syncroot-sandbox"]

# ---- runtime: the product. Distroless: glibc, CA certificates, no shell, no package
# manager; runs as uid 65532 (the chart's runAsUser).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/syncroot /usr/local/bin/syncroot
# In a container the loopback defaults are unreachable from outside: listen on every
# interface. The API role serves on 8080; the workers serve /healthz and /readyz on 9090.
ENV SYNCROOT_API_LISTEN=0.0.0.0:8080 \
    SYNCROOT_HEALTH_LISTEN=0.0.0.0:9090
EXPOSE 8080 9090
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/syncroot"]
# The role: api, forwarder, delivery, webhooks, dlq-worker, migrate, or all.
CMD ["all"]
