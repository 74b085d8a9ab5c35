#!/usr/bin/env bash
# make_cert.sh DIR - self-signed TLS certificate for the loopback test servers.
#
# Writes DIR/cert.pem and DIR/key.pem (RSA 2048, unencrypted, valid from now for
# 3650 days) for CN=localhost with
#   subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
#   basicConstraints = critical, CA:FALSE   (rustls/webpki rejects a CA cert
#                                            used as a server cert: CaUsedAsEndEntity)
#   keyUsage = digitalSignature, keyEncipherment; extendedKeyUsage = serverAuth
# A client that trusts DIR/cert.pem as its root can verify the server by the
# name "localhost" or the address 127.0.0.1. Prints the cert path.
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 DIR" >&2; exit 64; fi
dir=$1
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 \
    -days 3650 \
    -keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" \
    -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
    -addext "extendedKeyUsage=serverAuth" \
    2>/dev/null
chmod 644 "$dir/key.pem.tmp" "$dir/cert.pem.tmp"   # readable by Debian-exim too
mv -f "$dir/key.pem.tmp" "$dir/key.pem"
mv -f "$dir/cert.pem.tmp" "$dir/cert.pem"
echo "$dir/cert.pem"
