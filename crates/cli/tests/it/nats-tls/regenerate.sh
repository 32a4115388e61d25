#!/usr/bin/env bash
# Regenerates the test PKI of the NATS TLS tests (binary.rs, `nats_bus`): a CA, a server
# certificate for 127.0.0.1 and a client certificate, ECDSA P-256, valid for 100 years.
# Test material only: the keys are public.
set -euo pipefail
cd "$(dirname "$0")"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 36500 -subj "/CN=Fugue NATS test CA" \
  -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name, CN, extended key usage, extra extensions
  openssl req "${ec[@]}" -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
    -days 36500 -out "$1.pem" -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=$3" "$4")
  rm "$1.csr"
}
leaf server 127.0.0.1 serverAuth "subjectAltName=IP:127.0.0.1"
leaf client fugue-node clientAuth "subjectAltName=DNS:fugue-node"
rm ca.key
