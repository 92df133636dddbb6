# pgcloak: build with cgo (the SQL parser), run on a small Debian image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -o /out/pgcloak ./cmd/pgcloak

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 pgcloak
COPY --from=build /out/pgcloak /usr/local/bin/pgcloak
USER pgcloak
EXPOSE 6432
ENTRYPOINT ["pgcloak"]
CMD ["serve", "--config", "/etc/pgcloak/pgcloak.yaml"]
