#!/usr/bin/env sh
# One self-signed certificate naming every service of deploy/compose.yaml (TLS between nodes),
# and deploy/.env with a fresh shared token. Run once from the repository root.
set -eu
cd "$(dirname "$0")"
mkdir -p certs
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=edgeva-cluster" \
  -keyout certs/cluster.key -out certs/cluster.pem \
  -addext "subjectAltName=DNS:cloud,DNS:edge-1,DNS:edge-2,DNS:localhost,IP:127.0.0.1"
chmod 644 certs/cluster.key   # read by the image's unprivileged user; keep the folder private
[ -f .env ] || printf 'EDGEVA_TOKEN=%s\n' "$(openssl rand -hex 24)" > .env
echo "certs/cluster.pem, certs/cluster.key and .env are ready"
