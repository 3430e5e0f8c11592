# syntax=docker/dockerfile:1
#
# homelab-monitor: a static binary on a distroless base, running as a numeric
# non-root user, needing no writable path (works with a read-only root
# filesystem).
#
#   docker build -t homelab-monitor .
#   docker run --rm --read-only -p 127.0.0.1:9877:9877 -v "$PWD:/workspace:ro" homelab-monitor
#
# The listen address comes from HOMELAB_MONITOR_WEB_LISTEN_ADDRESS=:9877 (all
# interfaces inside the container), not from the ENTRYPOINT: the CLI accepts a
# flag only once, so `docker run IMAGE --web.listen-address :9000` must stay
# possible.

ARG RUST_VERSION=1.95
# Terraform of the optional `drift` target (an ARG used by FROM must come before the first FROM).
ARG TERRAFORM_VERSION=1.11.4

# ---- builder: a static binary for the builder's own architecture ----------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# Only what the build needs (see .dockerignore); benches/ because Cargo.toml
# declares a [[bench]] target.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# glibc linked statically (+crt-static on the gnu target): no rustup target to
# download, no libc needed at run time. --target keeps build scripts and
# proc-macros dynamic, as they must be.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target "$target"; \
    mkdir -p /out; \
    strip -o /out/homelab-monitor "target/$target/release/homelab-monitor"; \
    /out/homelab-monitor --version; \
    case "$(ldd /out/homelab-monitor 2>&1)" in \
      *"statically linked"*|*"not a dynamic executable"*) ;; \
      *) echo "homelab-monitor is not static" >&2; exit 1 ;; \
    esac

# ---- drift: `homelab-monitor drift` needs terraform (or tofu) beside it ------
# Not built by default (the last stage is the exporter's image):
#   docker build --target drift --build-arg TERRAFORM_VERSION=1.11.4 -t homelab-monitor-drift .
# For OpenTofu, base it on ghcr.io/opentofu/opentofu:<version>-minimal instead and
# set drift_runner.binary: tofu. The exporter's image stays without Terraform.
FROM docker.io/hashicorp/terraform:${TERRAFORM_VERSION} AS drift
COPY --from=builder /out/homelab-monitor /usr/local/bin/homelab-monitor
USER 65532:65532
# Terraform's HOME (~/.terraform.d) and the plugin cache: mount a writable /tmp.
ENV HOME=/tmp TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
ENTRYPOINT ["/usr/local/bin/homelab-monitor"]
CMD ["drift", "--once", "--config", "/workspace/monitoring-config.yaml"]

# ---- final: distroless static (CA certificates, tzdata, /etc/passwd; no shell)
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="homelab-monitor" \
      org.opencontainers.image.description="Prometheus exporter for Terraform/OpenTofu state drift, TLS certificate expiry and backup freshness" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/homelab-monitor /usr/local/bin/homelab-monitor
# With no --config the exporter discovers *.tfstate under its working
# directory: mount the terraform folder here (read-only).
WORKDIR /workspace
# distroless "nonroot" (65532:65532), numeric so runAsNonRoot can verify it.
USER 65532:65532
ENV HOMELAB_MONITOR_WEB_LISTEN_ADDRESS=:9877
EXPOSE 9877
# No HEALTHCHECK: the image has no shell or HTTP client, and the binary has no
# self-probe mode (`--status` exits 2 on findings such as drift, so it is not a
# liveness signal). Probe GET /healthz (liveness) and /readyz (readiness) from
# outside: Kubernetes httpGet probes (see deploy/), or a compose healthcheck in
# an image that carries a client.
ENTRYPOINT ["/usr/local/bin/homelab-monitor"]
