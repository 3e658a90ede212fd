# The trousseau KMS plugin image: one static binary on distroless/static.
# Build: docker build --build-arg VERSION=0.1.0 -t <registry>/trousseau:0.1.0 .
# ghcr.io/trousseau-io/trousseau is where a release would publish it; nothing
# is published yet. The kind appliance builds it and loads it into the nodes.

ARG GO_VERSION=1.26

# Base images are referenced by tag here, not by digest: this repository is
# developed without registry access, so no digest could be looked up and
# verified, and a made-up digest would be worse than none. A release must pin
# both FROM lines as tag@sha256:<digest> (e.g. from `docker buildx imagetools
# inspect`), so a rebuilt tag cannot change what the plugin runs on.
FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so source edits do not re-download them.
COPY go.mod go.sum ./
RUN go mod download
# Only what the binary imports (TestDockerfileCopiesEveryPackageThePluginImports).
COPY plugin/ plugin/
COPY appliance/controlplane/ appliance/controlplane/
# A static binary: no libc in the runtime image, no cgo surprises.
ARG VERSION=dev
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/trousseau ./plugin/cmd/trousseau

# distroless/static has no shell and no package manager. Its nonroot user
# (65532) is the default; the Helm chart runs the container as uid 0 with
# every capability dropped only because the socket directory is a root-owned
# hostPath shared with kube-apiserver (see charts/trousseau/values.yaml).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trousseau /usr/local/bin/trousseau
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trousseau"]
CMD ["serve", "--config", "/etc/trousseau/config/trousseau.yaml"]
