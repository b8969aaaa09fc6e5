# batchpilot: one static binary in an otherwise empty image.
#
#   docker build -t batchpilot:local .
#   docker run --rm -p 127.0.0.1:8480:8480 -v bp-data:/data batchpilot:local
#
# runs a single node (dashboard on http://127.0.0.1:8480). Arguments replace
# the command: `docker run --rm batchpilot:local loadgen --help`.
# See docs/deploy.md (and docker-compose.yml for a 3-node cluster).

# ---- build ---------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

# The dashboard's bundle (web/ui/dist) is committed and embedded with
# go:embed, so no Node.js is needed here.
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -buildid=" \
        -o /out/usr/local/bin/batchpilot ./cmd/batchpilot \
    && /out/usr/local/bin/batchpilot --help >/dev/null

# The runtime image has no shell and no package manager, so everything it
# needs is prepared here: a user and group to run as (uid/gid 10001), CA
# certificates (for an https sink or a PostgreSQL server with TLS), and an
# empty data directory.
RUN mkdir -p /out/etc/ssl/certs /data \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
    && echo 'batchpilot:x:10001:10001:batchpilot:/data:/sbin/nologin' >/out/etc/passwd \
    && echo 'batchpilot:x:10001:' >/out/etc/group \
    && chmod 0750 /data

# ---- run -----------------------------------------------------------------
FROM scratch
COPY --from=build /out/ /
# /data belongs to the user the node runs as; a named volume mounted there
# starts as a copy of it, ownership included.
COPY --from=build --chown=10001:10001 /data /data
ENV PATH=/usr/local/bin
USER 10001:10001
# The default command keeps its state in /data; a command given instead that
# leaves --data-dir at its default (./data) keeps it in /data/data: in the
# volume as well. (Not BATCHPILOT_DATA_DIR: `verify` would search it too.)
WORKDIR /data
VOLUME ["/data"]

# 8480/tcp  ingest (POST /v1/logs), API, dashboard, /metrics   --http-addr
# 5514      syslog, TCP and UDP                                --syslog-addr
# 7946      gossip (memberlist), TCP and UDP                   --gossip-addr
# 8300/tcp  Raft                                               --raft-addr
# 8490/tcp  sinksim, when the image runs `sinksim`             --addr
EXPOSE 8480/tcp 5514/tcp 5514/udp 7946/tcp 7946/udp 8300/tcp

# The image has no curl or wget: the binary checks itself. `members` asks the
# node's API (GET /api/v1/cluster, no token needed) and exits non-zero when
# it does not answer. It answers before the cluster has a leader, so a node
# waiting for --bootstrap-expect is still healthy. Services that run
# `sinksim` or `loadgen` turn this off (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["batchpilot", "members", "--addr", "http://127.0.0.1:8480", "--timeout", "4s"]

ENTRYPOINT ["batchpilot"]
CMD ["agent", "--data-dir", "/data", "--http-addr", "0.0.0.0:8480", "--syslog-addr", "0.0.0.0:5514", "--gossip-addr", "0.0.0.0:7946", "--raft-addr", "0.0.0.0:8300"]
